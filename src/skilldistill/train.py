"""Stage 4b: supervised fine-tuning of the student on a formatted dataset (TRL ``SFTTrainer``).

The loss covers the assistant turn only (skill plan + teacher solution): the chat template
used for training carries ``{% generation %}`` markers, so TRL's ``assistant_only_loss``
masks every system, user and template token. Every training option is an ``SFTConfig``
field (:class:`TrainConfig` maps onto it; ``sft_overrides`` passes anything else through),
so this module is a thin, resumable wrapper around TRL, not a trainer of its own.

Launch (one process: CPU, or one GPU)::

    skilldistill train runs/x/format/skill --model Qwen/Qwen3-4B --out runs/x/train/skill \\
        --preset paper

Several GPUs with accelerate (the same arguments; the configs live in recipes/accelerate)::

    accelerate launch --config_file recipes/accelerate/zero3.yaml -m skilldistill.train \\
        runs/x/format/skill --model Qwen/Qwen3-4B --out runs/x/train/skill --preset paper

    accelerate launch --config_file recipes/accelerate/zero3.yaml $(which skilldistill) train \\
        runs/x/format/skill --model Qwen/Qwen3-4B --out runs/x/train/skill --preset paper

``$(which skilldistill)`` must be the Python console script (under pyenv: ``$(pyenv which
skilldistill)``). ``--num_processes N`` after ``accelerate launch`` changes the GPU count
(the configs say 8); the paper preset keeps the effective batch at 8 by setting the
gradient accumulation to ``8 / (per_device_train_batch_size * N)``. Rerunning the same
command after a crash resumes from the last complete checkpoint in ``--out``; rerunning it
after success does nothing. DeepSpeed configs need ``pip install skilldistill[deepspeed]``.

Outputs in ``--out``: ``checkpoint-<step>/`` (the last ``save_total_limit``), ``final/``
(model + tokenizer, with the training chat template), ``adapter/`` (LoRA only),
``student/`` (a GGUF student, dequantised),
``trainer_state.json``, ``loss.png``, ``metrics.json``, ``train_config.json``,
``manifest.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .artifacts import (
    hash_obj,
    manifest_matches,
    read_json,
    readable_files,
    sha256_file,
    write_json,
    write_manifest,
)
from .errors import ConfigError, InputError
from .progress import library_bars_off

log = logging.getLogger(__name__)

FINAL_DIR = "final"
ADAPTER_DIR = "adapter"
STUDENT_DIR = "student"
TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.json"
TRAINER_STATE = "trainer_state.json"
LOSS_PNG = "loss.png"
ROLES = ("system", "user", "assistant")

# A ChatML template (``<|im_start|>role ... <|im_end|>``, the format of Qwen2.5, Qwen3 and
# SmolLM2) that renders every message verbatim and marks the assistant turn, up to and
# including ``<|im_end|>``, for the loss. Unlike TRL's Qwen3 training template it does not
# move text around ``<think>``, so a skill plan written before ``<think>`` survives; this is
# also how LLaMA-Factory's qwen3 template (the paper's trainer) renders the turn.
CHATML_TRAINING_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# TrainConfig fields that are SFTConfig fields of the same name and meaning.
SFT_FIELDS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "packing",
    "packing_strategy",
    "padding_free",
    "assistant_only_loss",
    "completion_only_loss",
    "gradient_checkpointing",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "logging_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "report_to",
    "dataset_num_proc",
    "train_sampling_strategy",
)

# Fields added after run folders existed, with the default that means the old behaviour: at
# that default they are left out of the stage's fingerprint, so finished stages stay done.
LATER_FIELD_DEFAULTS: dict[str, Any] = {"train_sampling_strategy": "random"}

# The paper's training setup (METHOD.md, stage 4): full fine-tuning, lr 1e-5, cosine,
# warmup 0.1, 5 epochs, effective batch 8, max length 8,192, bf16 (DeepSpeed ZeRO-3 on
# 8 GPUs comes from the accelerate config, not from here).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "lora": False,
        "learning_rate": 1e-5,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "num_train_epochs": 5,
        "per_device_train_batch_size": 1,
        "effective_batch_size": 8,
        "max_length": 8192,
        "bf16": True,
        "gradient_checkpointing": True,
        "assistant_only_loss": True,
    },
}


class TrainConfig(BaseModel):
    """Stage config of ``skilldistill train``. Field names follow TRL's ``SFTConfig``.

    ``preset`` fills every field it names unless the field is given explicitly.
    ``sft_overrides`` is passed to ``SFTConfig`` last, so it wins over the mapped fields.
    """

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(None, description=f"Named preset applied under explicit fields: {', '.join(PRESETS)}.")
    model: str | None = Field(None, description="Student: hub id, local folder, or a .gguf file.")
    gguf_file: str | None = Field(None, description="GGUF file name inside the model folder (model weights are dequantised).")
    chat_template: str = Field(
        "auto",
        description="auto | model | chatml | trl | path to a .jinja file. See docs/train.md.",
    )
    drop_overlong: bool = Field(True, description="Drop examples longer than max_length (else TRL truncates them).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="Weights dtype at load. auto: bfloat16 under DeepSpeed or with LoRA+bf16, else float32."
    )
    attn_implementation: str | None = Field(None, description="e.g. flash_attention_2 (needed for padding_free).")
    trust_remote_code: bool = False
    # LoRA (PEFT)
    lora: bool = Field(False, description="Train a LoRA adapter instead of all weights.")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | str = Field("all-linear", description="Module names, or 'all-linear'.")
    merge_lora: bool = Field(True, description="Write the merged model to final/ (the adapter goes to adapter/).")
    # Batch
    effective_batch_size: int | None = Field(
        None, ge=1, description="per_device * grad_accum * world size; sets gradient_accumulation_steps."
    )
    per_device_train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    train_sampling_strategy: Literal["random", "sequential", "group_by_length", "batch_rebalance"] = Field(
        "random", description="transformers' training sampler. batch_rebalance: each optimizer step keeps its "
        "shuffled examples but splits them into length-sorted micro-batches of variable size (less padding; "
        "needs gradient_accumulation_steps > 1 to gain anything). docs/train.md.")
    # Optimisation (SFTConfig names)
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = Field(0.1, ge=0, description="Below 1: a ratio of the total steps; else a step count.")
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="Stop after this many steps (overrides epochs when > 0).")
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    # Sequences
    max_length: int | None = Field(8192, ge=1)
    packing: bool = False
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "bfd"
    padding_free: bool = False
    assistant_only_loss: bool = True
    completion_only_loss: bool | None = None
    # Precision and memory
    bf16: bool | None = Field(None, description="None: bf16 when a CUDA device supports it, else fp32.")
    gradient_checkpointing: bool = True
    # Logging and checkpoints
    logging_steps: float = 1
    save_strategy: Literal["steps", "epoch", "no"] = "steps"
    save_steps: float = Field(0.1, gt=0, description="Below 1: a ratio of the total steps.")
    save_total_limit: int | None = Field(1, ge=1)
    delete_checkpoints: bool = Field(False, description="Remove checkpoint-*/ once final/ and the manifest are "
                                     "written (nothing is left to resume; full checkpoints of a 4B model are ~45 GB each).")
    report_to: str | list[str] = "none"
    dataset_num_proc: int | None = None
    sft_overrides: dict[str, Any] = Field(default_factory=dict, description="Extra SFTConfig fields, applied last.")

    def fingerprint_dict(self) -> dict[str, Any]:
        """The config as its stage fingerprints it: later fields at their old-behaviour default left out."""
        d = self.model_dump(mode="json")
        return {k: v for k, v in d.items() if not (k in LATER_FIELD_DEFAULTS and v == LATER_FIELD_DEFAULTS[k])}

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
            return {**PRESETS[name], **data}
        return data

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        return cls.model_validate({"preset": name, **overrides})

    # -- mapping onto TRL -------------------------------------------------------------
    def resolve_bf16(self) -> bool:
        cuda_bf16 = _cuda_bf16_available()
        if self.bf16 is None:
            return cuda_bf16
        if self.bf16 and not cuda_bf16:
            raise ConfigError(
                "bf16 is requested but no CUDA device with bf16 support is visible: "
                "set bf16: false (or leave it unset for auto) to train in fp32"
            )
        return self.bf16

    def resolve_dtype(self, bf16: bool) -> str:
        if self.dtype != "auto":
            return self.dtype
        # DeepSpeed keeps fp32 master weights itself; elsewhere fp32 weights + bf16 autocast
        # avoid losing lr-1e-5 updates to bf16 rounding. LoRA trains only small fp32 adapters.
        deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")
        return "bfloat16" if bf16 and (deepspeed or self.lora) else "float32"

    def resolve_grad_accum(self, world_size: int) -> int:
        if self.effective_batch_size is None:
            return self.gradient_accumulation_steps
        per_step = self.per_device_train_batch_size * world_size
        if self.effective_batch_size % per_step:
            raise ConfigError(
                f"effective_batch_size {self.effective_batch_size} is not a multiple of "
                f"per_device_train_batch_size {self.per_device_train_batch_size} x world size {world_size}"
            )
        return self.effective_batch_size // per_step

    def sft_kwargs(self, output_dir: str | Path, *, world_size: int | None = None) -> dict[str, Any]:
        """The keyword arguments of ``SFTConfig`` for this config (``sft_overrides`` last)."""
        world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
        bf16 = self.resolve_bf16()
        kwargs: dict[str, Any] = {name: getattr(self, name) for name in SFT_FIELDS}
        kwargs["gradient_accumulation_steps"] = self.resolve_grad_accum(world_size)
        kwargs["bf16"] = bf16
        kwargs["output_dir"] = str(output_dir)
        kwargs["trust_remote_code"] = self.trust_remote_code
        if not _accelerator_available():
            # Lets transformers form a gloo process group when several CPU processes are launched.
            kwargs["use_cpu"] = True
        init: dict[str, Any] = {"dtype": self.resolve_dtype(bf16)}
        if self.attn_implementation:
            init["attn_implementation"] = self.attn_implementation
        if world_size > 1:
            # One full copy per process (sharded later by FSDP/DeepSpeed); TRL's default
            # device_map="auto" would spread each process's copy over every visible GPU,
            # and TRL only turns it off for DDP and DeepSpeed, not FSDP.
            init["device_map"] = None
        kwargs["model_init_kwargs"] = init
        valid = {f.name for f in dataclasses.fields(_sft_config_cls())}
        overrides = dict(self.sft_overrides)
        kwargs.pop("gradient_checkpointing")
        kwargs.update(checkpointing_kwargs(valid, self.gradient_checkpointing, use_reentrant=self.use_reentrant(),
                                           extra=_pop_checkpointing_kwargs(overrides)))
        if self.save_strategy == "no":
            kwargs.pop("save_steps")
        new_names = "activation_checkpointing" in valid
        if "gradient_checkpointing" in overrides or "activation_checkpointing" in overrides:
            flag = overrides.pop("activation_checkpointing", overrides.pop("gradient_checkpointing", None))
            kwargs.update(checkpointing_kwargs(valid, bool(flag), use_reentrant=self.use_reentrant(),
                                               extra=kwargs.get("activation_checkpointing_kwargs" if new_names
                                                                else "gradient_checkpointing_kwargs")))
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ConfigError(f"sft_overrides: not SFTConfig fields: {', '.join(unknown)}")
        if "output_dir" in overrides:
            raise ConfigError("sft_overrides: output_dir is set by the stage (--out)")
        if "max_length" in overrides:
            # the stage drops over-long examples by train.max_length before TRL sees them; a
            # smaller TRL max_length would cut the rest silently
            raise ConfigError("sft_overrides: max_length is train.max_length (examples longer than it are dropped "
                              "and counted, never cut): set train.max_length instead")
        if isinstance(overrides.get("model_init_kwargs"), dict):
            overrides["model_init_kwargs"] = {**init, **overrides["model_init_kwargs"]}
        kwargs.update(overrides)
        return kwargs

    def use_reentrant(self) -> bool:
        """Reentrant activation checkpointing for LoRA under DeepSpeed ZeRO-3 (frozen, partitioned
        base weights break non-reentrant recomputation: trl#2514, DeepSpeed#4332); else the
        non-reentrant kind transformers defaults to."""
        zero3 = (os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")
                 and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")
        return bool(self.lora and zero3)

    def to_sft_config(self, output_dir: str | Path, *, world_size: int | None = None) -> Any:
        """Build TRL's ``SFTConfig`` from this config."""
        cls = _sft_config_cls()
        try:
            return cls(**self.sft_kwargs(output_dir, world_size=world_size))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid training settings: {e}") from e

    def lora_config(self) -> Any:
        """PEFT ``LoraConfig`` for this config, or None for full fine-tuning."""
        if not self.lora:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )


def checkpointing_kwargs(sft_fields: set[str], enabled: bool, *, use_reentrant: bool,
                         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Activation-checkpointing fields of ``SFTConfig`` for the installed transformers.

    transformers 5.23 renamed ``gradient_checkpointing(_kwargs)`` to
    ``activation_checkpointing(_kwargs)`` (the old names warn; 5.19-5.22 know only them), so
    the field is detected, not the version, and only one pair is set. The flag is always
    explicit (TRL's default of True warns on 5.23+). When enabled, the kwargs dict is never
    empty and always says ``use_reentrant``: on 5.23+ both names then share this one dict,
    so TRL's in-place switch to reentrant checkpointing for PEFT + ZeRO-3 reaches what the
    Trainer reads (with an empty dict TRL makes a new one under the old name, and it is lost).
    """
    new = "activation_checkpointing" in sft_fields
    flag, kw = (("activation_checkpointing", "activation_checkpointing_kwargs") if new
                else ("gradient_checkpointing", "gradient_checkpointing_kwargs"))
    out: dict[str, Any] = {flag: bool(enabled)}
    if enabled:
        out[kw] = {"use_reentrant": bool(use_reentrant), **(extra or {})}
    return out


def _pop_checkpointing_kwargs(overrides: dict[str, Any]) -> dict[str, Any] | None:
    """A user's checkpointing kwargs from ``sft_overrides`` under either name (removed there)."""
    got = None
    for name in ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"):
        if name in overrides:
            value = overrides.pop(name)
            got = {**(got or {}), **(value or {})}
    return got


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a TrainConfig from YAML/JSON (a bare mapping, or one under a ``train:`` key)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of TrainConfig fields")
    if set(data) == {"train"} and isinstance(data["train"], dict):
        data = data["train"]
    return validate_train_config({**data, **overrides}, source=str(path))


def validate_train_config(data: dict[str, Any], *, source: str = "train config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or 'the top level'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


# -- dataset ---------------------------------------------------------------------------
def resolve_dataset(path: str | Path) -> tuple[Path, str]:
    """The file or folder to read and its kind (``jsonl`` or ``hf``).

    Accepts a ``.jsonl`` file, a ``datasets.save_to_disk`` folder, or a format-stage folder
    (its ``train.jsonl`` first, else its ``hf/``).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix != ".jsonl":
            raise InputError("expected a .jsonl file or a dataset folder", file=path)
        return path, "jsonl"
    if path.is_dir():
        if (path / "train.jsonl").is_file():
            return path / "train.jsonl", "jsonl"
        if _is_hf_dir(path):
            return path, "hf"
        if _is_hf_dir(path / "hf"):
            return path / "hf", "hf"
        raise InputError("no train.jsonl, hf/ or datasets folder here", file=path)
    raise InputError("no such file or folder", file=path)


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def dataset_hash(path: Path, kind: str) -> str:
    if kind == "jsonl":
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("cache-"))
    return hash_obj({str(p.relative_to(path)): sha256_file(p) for p in files})


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"id", "messages"}`` from a jsonl file or a datasets folder, validated."""
    src, kind = resolve_dataset(path)
    rows: list[dict[str, Any]] = []
    if kind == "jsonl":
        with open(src, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"not valid JSON: {e.msg}", file=src, row=line_no) from None
                rows.append(_validate_row(obj, src, line_no))
    else:
        from datasets import DatasetDict, load_from_disk

        ds = load_from_disk(str(src), keep_in_memory=True)
        if isinstance(ds, DatasetDict):
            if "train" not in ds:
                raise InputError(f"dataset dict has no 'train' split (splits: {', '.join(ds)})", file=src)
            ds = ds["train"]
        if "messages" not in ds.column_names:
            raise InputError("no 'messages' column", file=src, field="messages")
        for i, obj in enumerate(ds):
            rows.append(_validate_row(obj, src, i + 1))
    if not rows:
        raise InputError("the dataset has no examples", file=src)
    return rows


def _validate_row(obj: Any, src: Path, row: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object", file=src, row=row)
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("expected a non-empty list of messages", file=src, row=row, field="messages")
    clean = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputError(
                f"message {j}: expected role in {ROLES}, got {m.get('role') if isinstance(m, dict) else m!r}",
                file=src, row=row, field="messages",
            )
        if not isinstance(m.get("content"), str):
            raise InputError(f"message {j}: content must be a string", file=src, row=row, field="messages")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "assistant":
        raise InputError("the last message must be the assistant turn", file=src, row=row, field="messages")
    return {"id": str(obj.get("id", row)), "messages": clean}


# -- chat template -----------------------------------------------------------------------
def has_generation_markers(template: str | None) -> bool:
    return bool(template) and re.search(r"\{%-?\s*generation\s*-?%\}", template) is not None


def is_chatml(tokenizer: Any) -> bool:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    vocab = tokenizer.get_vocab()
    return bool(template) and "<|im_start|>" in template and "<|im_start|>" in vocab and "<|im_end|>" in vocab


_CHATML_SYSTEM = re.compile(r"^<\|im_start\|>system\n(.*?)<\|im_end\|>\n", re.S)


def implicit_system_prompt(tokenizer: Any) -> str | None:
    """The system turn a ChatML model's own template inserts when a conversation has none
    (SmolLM2: "You are a helpful AI assistant named SmolLM...", Qwen2.5: "You are Qwen...").

    The ChatML training template does not invent one, so training conversations get it
    explicitly (:func:`with_implicit_system`): the trained text is then what the model's
    own template renders, at training and at inference alike.
    """
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if not own or "<|im_start|>" not in own:
        return None
    marker = "\u2063probe\u2063"  # text no template writes by itself
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False)
    except Exception:  # a template that needs more than a user turn: no default to copy
        return None
    m = _CHATML_SYSTEM.match(text)
    if m and marker not in m.group(1):
        return m.group(1)
    return None


def with_implicit_system(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """``messages`` with ``system`` as a first system turn when they have none."""
    if not system or (messages and messages[0].get("role") == "system"):
        return messages
    return [{"role": "system", "content": system}, *messages]


def resolve_chat_template(tokenizer: Any, spec: str = "auto") -> tuple[str, str]:
    """The training chat template (with generation markers) and a name saying where it came from.

    - ``model``: the tokenizer's own template (must carry ``{% generation %}`` markers);
    - ``chatml``: :data:`CHATML_TRAINING_TEMPLATE` (ChatML tokenizers: Qwen2.5, Qwen3, SmolLM2);
    - ``trl``: the training template TRL ships for this model family
      (``trl.chat_template_utils.get_training_chat_template``: Qwen3, Llama 3, Gemma, Phi, ...);
    - a path to a ``.jinja`` file;
    - ``auto``: ``model`` if it has markers, else ``chatml`` for a ChatML tokenizer, else ``trl``.
    """
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if spec == "auto":
        if has_generation_markers(own):
            return own, "model"
        if is_chatml(tokenizer):
            return CHATML_TRAINING_TEMPLATE, "chatml"
        return resolve_chat_template(tokenizer, "trl")
    if spec == "model":
        if not own:
            raise ConfigError("the tokenizer has no chat template; use chat_template: chatml, trl or a .jinja file")
        if not has_generation_markers(own):
            raise ConfigError(
                "the tokenizer's chat template has no {% generation %} markers, so assistant-only loss "
                "cannot find the assistant turn; use chat_template: auto, chatml, trl or a .jinja file"
            )
        return own, "model"
    if spec == "chatml":
        if not is_chatml(tokenizer):
            raise ConfigError("chat_template: chatml needs a tokenizer with <|im_start|> and <|im_end|> tokens")
        return CHATML_TRAINING_TEMPLATE, "chatml"
    if spec == "trl":
        from trl.chat_template_utils import get_training_chat_template

        if not own:
            raise ConfigError("the tokenizer has no chat template for TRL to patch")
        try:
            patched = get_training_chat_template(tokenizer)
        except ValueError as e:
            raise ConfigError(
                f"TRL ships no training template for this model's chat template ({e}); "
                "use chat_template: chatml (ChatML models) or a .jinja file with {% generation %} markers"
            ) from None
        return (patched or own), "trl"
    path = Path(spec)
    if path.suffix in (".jinja", ".j2"):
        if not path.is_file():
            raise ConfigError(f"chat template file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if not has_generation_markers(text):
            raise ConfigError(f"{path}: no {{% generation %}} markers around the assistant turn")
        return text, str(path)
    raise ConfigError(f"chat_template: expected auto, model, chatml, trl or a .jinja path, got {spec!r}")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def prepare_examples(
    rows: list[dict[str, Any]],
    tokenizer: Any,
    chat_template: str,
    *,
    max_length: int | None,
    drop_overlong: bool,
    assistant_only_loss: bool = True,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Render every example with the training template; check it; drop the over-long ones.

    Raises ConfigError when the template loses assistant text (e.g. TRL's Qwen3 template
    keeps only what follows ``<think>``, which drops a skill plan written before it) or
    marks no assistant token. Returns the kept rows and statistics.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from .progress import StageProgress

    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    lengths: list[int] = []
    assistant_tokens = 0
    with StageProgress(
        TextColumn("[bold]tokenizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not progress, transient=True,
    ) as bar:
        task = bar.add_task("tokenize", total=len(rows))
        for row in rows:
            enc = tokenizer.apply_chat_template(
                row["messages"], chat_template=chat_template, tokenize=True, return_dict=True,
                return_assistant_tokens_mask=assistant_only_loss,
            )
            ids = list(enc["input_ids"])
            if assistant_only_loss:
                mask = list(enc["assistant_masks"])
                if not any(mask):
                    raise ConfigError(f"example {row['id']!r}: the chat template marks no assistant token")
                rendered = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
                assistant_tokens += sum(mask)
            else:
                rendered = tokenizer.decode(ids)
            rendered_sq = _squash(rendered)
            for msg in row["messages"]:
                if msg["role"] == "assistant" and _squash(msg["content"]) not in rendered_sq:
                    raise ConfigError(
                        f"example {row['id']!r}: the chat template does not render the assistant turn "
                        "verbatim, so part of it would never be trained (a skill plan before <think> is "
                        "dropped by templates that keep only the text around the think block). "
                        "Use chat_template: chatml (ChatML models) or a .jinja template that renders "
                        f"message content as is. Rendered: {rendered[:200]!r}"
                    )
            if max_length is not None and len(ids) > max_length and drop_overlong:
                dropped.append({"id": row["id"], "tokens": len(ids)})
            else:
                kept.append(row)
                lengths.append(len(ids))
            bar.advance(task)
    stats = {
        "examples_read": len(rows),
        "examples_kept": len(kept),
        "dropped_overlong": len(dropped),
        "dropped_overlong_examples": dropped,
        "tokens_total": sum(lengths),
        "tokens_max": max(lengths) if lengths else 0,
        "tokens_mean": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "assistant_tokens": assistant_tokens if assistant_only_loss else None,
    }
    return kept, stats


# -- the stage -----------------------------------------------------------------------------
def last_complete_checkpoint(out_dir: str | Path) -> Path | None:
    """The highest ``checkpoint-N`` that holds ``trainer_state.json`` (written last)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    found = []
    for p in out_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir():
            if (p / TRAINER_STATE).is_file():
                found.append((int(m.group(1)), p))
            else:
                log.warning("skipping incomplete checkpoint %s (no %s)", p, TRAINER_STATE)
    return max(found)[1] if found else None


def _checkpoints(out_dir: Path) -> list[Path]:
    return [p for p in out_dir.glob("checkpoint-*") if p.is_dir()] if out_dir.is_dir() else []


@dataclasses.dataclass
class TrainSetup:
    """Everything :func:`run_train` trains with: the TRL trainer and what was decided for it."""

    trainer: Any
    args: Any
    tokenizer: Any
    chat_template_name: str
    data_stats: dict[str, Any]
    dataset_file: Path
    inputs: dict[str, str]
    is_main: bool
    model_path: str
    inference_chat_template: str | None = None  # saved with final/


def build_trainer(
    dataset_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    label: str | None = None,
) -> TrainSetup:
    """Load, check and tokenize the data, then build TRL's ``SFTTrainer`` (no training yet)."""
    if not config.model:
        raise ConfigError("train: no student model given (model / --model)")
    out_dir = Path(out_dir)
    src, kind = resolve_dataset(dataset_path)
    inputs = {"dataset": dataset_hash(src, kind)}
    rows = load_conversations(src)
    # Fail on bad settings before loading anything heavy.
    sft_kwargs = config.sft_kwargs(out_dir, world_size=int(os.environ.get("WORLD_SIZE", "1")))
    if config.padding_free and not config.packing:
        if not config.drop_overlong and config.max_length is not None:
            raise ConfigError("padding_free without packing cannot truncate: keep drop_overlong on")
        # Over-long examples are dropped below, so TRL has nothing left to truncate.
        sft_kwargs["max_length"] = None
    try:
        args = _sft_config_cls()(**sft_kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid training settings: {e}") from e
    is_main = args.process_index == 0

    from accelerate import PartialState

    if is_main:
        _guard_output_dir(out_dir, {"config": config.fingerprint_dict(), "inputs": inputs}, overwrite=overwrite)
    PartialState().wait_for_everyone()

    model_path = _student_path(config, out_dir, is_main=is_main)
    tokenizer = _load_tokenizer(model_path, config)
    own_template = tokenizer.chat_template
    template, template_name = resolve_chat_template(tokenizer, config.chat_template)
    if template_name == "chatml":
        # Train on the text the model's own template renders (its default system turn
        # included), so final/ can keep that template: the base and the trained model are
        # then prompted identically at evaluation, and as in training.
        system = implicit_system_prompt(tokenizer)
        rows = [{**r, "messages": with_implicit_system(r["messages"], system)} for r in rows]
    tokenizer.chat_template = template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kept, data_stats = prepare_examples(
        rows, tokenizer, template, max_length=config.max_length, drop_overlong=config.drop_overlong,
        assistant_only_loss=config.assistant_only_loss, progress=progress and is_main,
    )
    if not kept:
        raise InputError(
            f"every example is longer than max_length {config.max_length} tokens", file=src, field="messages"
        )
    if data_stats["dropped_overlong"]:
        log.warning("train: dropped %d of %d examples over %s tokens", data_stats["dropped_overlong"],
                    data_stats["examples_read"], config.max_length)

    from datasets import Dataset

    train_dataset = Dataset.from_list([{"messages": r["messages"]} for r in kept])
    # prepare_examples' bar already covered tokenizing; TRL's pass and the weight loading stay quiet.
    quiet = library_bars_off() if Path(str(model_path)).is_dir() else contextlib.nullcontext()
    with quiet:
        trainer = _sft_trainer_class()(
            model=model_path,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=config.lora_config(),
        )
    use_rich_progress(trainer, enabled=progress and is_main, description=f"train {label}" if label else "train")
    # What final/ is saved with: the model's own template where training used an equivalent
    # one (chatml / trl); an explicitly given template file stays.
    inference_template = own_template if (own_template and template_name in ("chatml", "trl")) else template
    return TrainSetup(trainer, args, tokenizer, template_name, data_stats, src, inputs, is_main, model_path,
                      inference_template)


def _sft_trainer_class() -> type:
    """TRL's ``SFTTrainer``, with ``batch_rebalance`` shuffling by the run's seed.

    transformers builds its ``BatchRebalanceSampler`` with the sampler's default seed (42)
    whatever ``args.seed`` says (its ``RandomSampler`` follows ``args.seed``), so runs that
    differ only in their seed would see their examples in one order. The sampler gets
    ``args.data_seed`` (else ``args.seed``), as the random sampler's order does.
    """
    from trl import SFTTrainer

    try:
        from transformers.trainer_pt_utils import BatchRebalanceSampler
    except ImportError:  # a transformers without it has no batch_rebalance to seed
        BatchRebalanceSampler = None

    class SeededSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if BatchRebalanceSampler is not None and isinstance(sampler, BatchRebalanceSampler):
                sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return sampler

    return SeededSFTTrainer


def use_rich_progress(trainer: Any, *, enabled: bool = True, description: str = "train") -> None:
    """Swap transformers' tqdm bar and its printed log dicts for one rich progress bar
    (step, total, latest loss), the same look as every other stage."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if enabled:
        trainer.add_callback(RichProgressCallback(description))


def _rich_progress_callback_class():
    from transformers import TrainerCallback

    class _RichProgressCallback(TrainerCallback):
        def __init__(self, description: str = "train") -> None:
            self.description = description
            self._progress = None
            self._task = None

        def on_train_begin(self, args, state, control, **kwargs):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from .progress import StageProgress

            self._progress = StageProgress(TextColumn(f"[bold]{self.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("steps {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                      transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=state.max_steps, completed=state.global_step,
                                                 loss="", unit="steps")

        def on_step_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.update(self._task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self._progress is not None and logs and "loss" in logs:
                self._progress.update(self._task, loss=f"loss {float(logs['loss']):.3f}",
                                      status=f"loss {float(logs['loss']):.3f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    return _RichProgressCallback


def RichProgressCallback(description: str = "train") -> Any:  # noqa: N802 (a class, built lazily)
    """A transformers ``TrainerCallback`` drawing a rich progress bar (imports transformers lazily)."""
    return _rich_progress_callback_class()(description)


def run_train(
    dataset_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    label: str | None = None,
) -> Path:
    """Fine-tune ``config.model`` on a formatted dataset; return the path of the final model.

    Resumes from the last complete checkpoint in ``out_dir``; returns at once when the
    stage already finished with the same config and data. ``overwrite`` discards
    checkpoints left by a different config (otherwise that is an error).
    """
    from .artifacts import FolderLock

    if int(os.environ.get("RANK", "0")) != 0:  # under accelerate launch the main process holds the folder
        return _run_train_unlocked(dataset_path, out_dir, config, overwrite=overwrite, progress=progress, label=label)
    with FolderLock(out_dir, what="train"):
        return _run_train_unlocked(dataset_path, out_dir, config, overwrite=overwrite, progress=progress, label=label)


def _run_train_unlocked(
    dataset_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    label: str | None = None,
) -> Path:
    """Fine-tune ``config.model`` on a formatted dataset; return the path of the final model.

    Resumes from the last complete checkpoint in ``out_dir``; returns at once when the
    stage already finished with the same config and data. ``overwrite`` discards
    checkpoints left by a different config (otherwise that is an error).
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    final_dir = out_dir / FINAL_DIR
    cfg_json = config.fingerprint_dict()
    if not overwrite and final_dir.is_dir():
        src, kind = resolve_dataset(dataset_path)
        if manifest_matches(out_dir, config=cfg_json, inputs={"dataset": dataset_hash(src, kind)}):
            log.info("train: %s is complete for this config and data; nothing to do", out_dir)
            return final_dir

    setup = build_trainer(dataset_path, out_dir, config, overwrite=overwrite, progress=progress, label=label)
    trainer, args = setup.trainer, setup.args
    resume = last_complete_checkpoint(out_dir)
    if resume is not None:
        log.info("train: resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # Every rank takes part in saving (ZeRO-3 gathers the sharded weights).
    if setup.inference_chat_template:
        setup.tokenizer.chat_template = setup.inference_chat_template
    save_dir = out_dir / ADAPTER_DIR if (config.lora and config.merge_lora) else final_dir
    with library_bars_off():  # "Writing model shards" is one bar line per save: noise in a log
        trainer.save_model(str(save_dir))
    trainer.accelerator.wait_for_everyone()
    if setup.is_main:
        if config.lora and config.merge_lora:
            _merge_lora(setup.model_path, save_dir, final_dir, setup.tokenizer,
                        dtype=args.model_init_kwargs["dtype"], trust_remote_code=config.trust_remote_code)
        trainer.state.save_to_json(str(out_dir / TRAINER_STATE))
        readable_files(final_dir)
        history = trainer.state.log_history
        plot_loss(history, out_dir / LOSS_PNG, title=f"{config.model} ({setup.chat_template_name} template)")
        data_stats = setup.data_stats
        metrics = {
            **result.metrics,
            "global_step": trainer.state.global_step,
            "resumed_from": str(resume) if resume else None,
            "world_size": args.world_size,
            "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "bf16": args.bf16,
            "dtype": args.model_init_kwargs["dtype"],
            "chat_template": setup.chat_template_name,
            "lora": config.lora,
            "loss_first": _first_loss(history),
            "loss_last": _last_loss(history),
            "data": data_stats,
        }
        write_json(out_dir / METRICS, metrics)
        write_manifest(
            out_dir,
            config=cfg_json,
            inputs=setup.inputs,
            counts={
                "examples": data_stats["examples_kept"],
                "dropped_overlong": data_stats["dropped_overlong"],
                "steps": trainer.state.global_step,
            },
            wall_time_s=round(time.time() - t0, 2),
            dataset=str(setup.dataset_file),
            final=str(final_dir),
            chat_template=setup.chat_template_name,
        )
        log.info("train: wrote %s", final_dir)
        if config.delete_checkpoints:
            for ckpt in _checkpoints(out_dir):
                shutil.rmtree(ckpt, ignore_errors=True)
            log.info("train: removed the checkpoints (delete_checkpoints)")
    trainer.accelerator.wait_for_everyone()
    return final_dir


def _guard_output_dir(out_dir: Path, run_record: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse to resume checkpoints of another config; forget a stale manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = out_dir / TRAIN_CONFIG
    previous = read_json(record_path) if record_path.is_file() else None
    stale = previous is not None and hash_obj(previous) != hash_obj(run_record)
    if overwrite or stale:
        checkpoints = _checkpoints(out_dir)
        if checkpoints and not overwrite:
            raise ConfigError(
                f"{out_dir} holds checkpoints of a different config or dataset ({TRAIN_CONFIG}); "
                "use another --out, or --overwrite to discard them"
            )
        for p in checkpoints:
            shutil.rmtree(p)
        for name in (FINAL_DIR, ADAPTER_DIR, STUDENT_DIR):
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
    # A rerun is not complete until it writes a new manifest.
    (out_dir / "manifest.json").unlink(missing_ok=True)
    write_json(record_path, run_record)


def _load_tokenizer(model_path: str, config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load the tokenizer of {config.model!r}: {e}") from e


def _model_location(config: TrainConfig) -> tuple[str, str | None]:
    path = Path(config.model or "")
    if config.gguf_file is None and path.suffix.lower() == ".gguf" and path.is_file():
        return str(path.parent), path.name
    return str(config.model), config.gguf_file


def _student_path(config: TrainConfig, out_dir: Path, *, is_main: bool) -> str:
    """The folder or hub id training loads. A GGUF student is dequantised once into ``student/``."""
    spec, gguf = _model_location(config)
    if not gguf:
        return spec
    target = out_dir / STUDENT_DIR
    if is_main and not (target / "config.json").is_file():
        from .llm.gguf import dequantize_to_folder

        log.info("train: converting %s/%s to a plain checkpoint in %s", spec, gguf, target)
        try:
            dequantize_to_folder(spec, gguf, target)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the GGUF student {spec}/{gguf}: {e}") from e
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    return str(target)


def _merge_lora(base_path: str, adapter_dir: Path, final_dir: Path, tokenizer: Any, *, dtype: str,
                trust_remote_code: bool) -> None:
    """Base + adapter -> one plain model in ``final/``, loadable by any inference engine."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype),
                                                trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = final_dir.with_name(f".{final_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with library_bars_off():
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp.rename(final_dir)


def _first_loss(history: list[dict[str, Any]]) -> float | None:
    return next((h["loss"] for h in history if "loss" in h), None)


def _last_loss(history: list[dict[str, Any]]) -> float | None:
    return next((h["loss"] for h in reversed(history) if "loss" in h), None)


def plot_loss(history: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Training loss per logged step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts import atomic_path

    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if points:
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, lw=1.2, color="#1f77b4", label="training loss")
        if len(points) >= 10:
            k = max(2, len(points) // 20)
            smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
            ax.plot(steps, smooth, lw=2, color="#d62728", label=f"mean of {k} steps")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title or "training loss", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _sft_config_cls() -> Any:
    from trl import SFTConfig

    return SFTConfig


def _accelerator_available() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return bool(
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (xpu is not None and xpu.is_available())
    )


def _cuda_bf16_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def main(argv: list[str] | None = None) -> None:
    """``python -m skilldistill.train ARGS`` == ``skilldistill train ARGS`` (for accelerate launch -m)."""
    import sys

    from .cli import app

    app(args=["train", *(sys.argv[1:] if argv is None else argv)], prog_name="skilldistill")


if __name__ == "__main__":
    main()


__all__ = [
    "CHATML_TRAINING_TEMPLATE",
    "PRESETS",
    "TrainConfig",
    "last_complete_checkpoint",
    "load_conversations",
    "load_train_config",
    "plot_loss",
    "prepare_examples",
    "resolve_chat_template",
    "resolve_dataset",
    "TrainSetup",
    "build_trainer",
    "run_train",
]
