"""The config of ``skilldistill train``: :class:`TrainConfig`, its presets, reading it from
YAML, and its mapping onto TRL's ``SFTConfig``.

Light: importing it loads pydantic and the standard library only; torch and TRL are
imported when a method needs them (the hardware probes and ``SFTConfig`` itself).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config_types import BOOL_FOR_NUMBER, bools_read_as_numbers
from ..errors import ConfigError

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
    "ddp_timeout",
)

# Fields added after run folders existed, with the default that means the old behaviour: at
# that default they are left out of the stage's fingerprint, so finished stages stay done.
LATER_FIELD_DEFAULTS: dict[str, Any] = {"train_sampling_strategy": "random"}

# Fields that change how a run waits or reports, never what it learns: never fingerprinted, so
# changing one (raising ddp_timeout after a run timed out) resumes the same checkpoints.
OPERATIONAL_FIELDS = frozenset({"ddp_timeout"})

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
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
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
    max_length: int | None = Field(8192, ge=1, description="Token limit; longer examples are dropped.")
    packing: bool = Field(False, description="Pack examples into max_length blocks.")
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "bfd"
    padding_free: bool = False
    assistant_only_loss: bool = True
    completion_only_loss: bool | None = None
    # Precision and memory
    bf16: bool | None = Field(None, description="None: bf16 when a CUDA device supports it, else fp32. true on a "
                              "machine without an accelerator: CPU autocast (slow; for checking the path).")
    gradient_checkpointing: bool = True
    # Logging and checkpoints
    logging_steps: float = 1
    save_strategy: Literal["steps", "epoch", "no"] = "steps"
    save_steps: float = Field(0.1, gt=0, description="Below 1: a ratio of the total steps.")
    save_total_limit: int | None = Field(1, ge=1)
    delete_checkpoints: bool = Field(False, description="Remove checkpoint-*/ once final/ and the manifest are "
                                     "written (nothing is left to resume; full checkpoints of a 4B model are ~45 GB each).")
    report_to: str | list[str] = "none"
    ddp_timeout: int = Field(1800, ge=1, description="Seconds a collective (all-reduce, barrier) waits for the other "
                             "processes before the run fails: bounds the hang when a rank stalls under accelerate "
                             "launch (transformers' default, 1800).")
    dataset_num_proc: int | None = None
    sft_overrides: dict[str, Any] = Field(default_factory=dict, description="Extra SFTConfig fields, applied last.")

    def fingerprint_dict(self) -> dict[str, Any]:
        """The config as its stage fingerprints it: later fields at their old-behaviour default and
        operational fields left out."""
        d = self.model_dump(mode="json")
        return {k: v for k, v in d.items() if k not in OPERATIONAL_FIELDS
                and not (k in LATER_FIELD_DEFAULTS and v == LATER_FIELD_DEFAULTS[k])}

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
        """bf16 as asked (None: when a CUDA device supports it). On a machine without an
        accelerator bf16 runs under CPU autocast, so the paper preset's precision path is
        exercised before it meets a GPU; an accelerator without bf16 is an error."""
        cuda_bf16 = cuda_bf16_available()
        if self.bf16 is None:
            return cuda_bf16
        if self.bf16 and not cuda_bf16 and accelerator_available():
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

    def model_init_kwargs(self, bf16: bool, world_size: int) -> dict[str, Any]:
        """``SFTConfig.model_init_kwargs``: how TRL loads the student."""
        init: dict[str, Any] = {"dtype": self.resolve_dtype(bf16)}
        if self.attn_implementation:
            init["attn_implementation"] = self.attn_implementation
        if world_size > 1:
            # One full copy per process (sharded later by FSDP/DeepSpeed); TRL's default
            # device_map="auto" would spread each process's copy over every visible GPU,
            # and TRL only turns it off for DDP and DeepSpeed, not FSDP.
            init["device_map"] = None
        return init

    def sft_kwargs(self, output_dir: str | Path, *, world_size: int | None = None) -> dict[str, Any]:
        """The keyword arguments of ``SFTConfig`` for this config (``sft_overrides`` last)."""
        world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
        bf16 = self.resolve_bf16()
        kwargs: dict[str, Any] = {name: getattr(self, name) for name in SFT_FIELDS}
        kwargs["gradient_accumulation_steps"] = self.resolve_grad_accum(world_size)
        kwargs["bf16"] = bf16
        kwargs["output_dir"] = str(output_dir)
        kwargs["trust_remote_code"] = self.trust_remote_code
        if not accelerator_available():
            # Lets transformers form a gloo process group when several CPU processes are launched.
            kwargs["use_cpu"] = True
        init = self.model_init_kwargs(bf16, world_size)
        kwargs["model_init_kwargs"] = init
        valid = {f.name for f in dataclasses.fields(sft_config_class())}
        overrides = dict(self.sft_overrides)
        kwargs.pop("gradient_checkpointing")
        kwargs.update(checkpointing_kwargs(valid, self.gradient_checkpointing, use_reentrant=self.use_reentrant(),
                                           extra=pop_checkpointing_kwargs(overrides)))
        if self.save_strategy == "no":
            kwargs.pop("save_steps")
        new_names = "activation_checkpointing" in valid
        if "gradient_checkpointing" in overrides or "activation_checkpointing" in overrides:
            flag = overrides.pop("activation_checkpointing", overrides.pop("gradient_checkpointing", None))
            kwargs.update(checkpointing_kwargs(valid, bool(flag), use_reentrant=self.use_reentrant(),
                                               extra=kwargs.get("activation_checkpointing_kwargs" if new_names
                                                                else "gradient_checkpointing_kwargs")))
        check_sft_overrides(overrides, valid)
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
        cls = sft_config_class()
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


def check_sft_overrides(overrides: dict[str, Any], sft_fields: set[str]) -> None:
    """Refuse ``sft_overrides`` that are no ``SFTConfig`` field or that the stage sets itself."""
    unknown = sorted(set(overrides) - sft_fields)
    if unknown:
        raise ConfigError(f"sft_overrides: not SFTConfig fields: {', '.join(unknown)}")
    if "output_dir" in overrides:
        raise ConfigError("sft_overrides: output_dir is set by the stage (--out)")
    if "max_length" in overrides:
        # the stage drops over-long examples by train.max_length before TRL sees them; a
        # smaller TRL max_length would cut the rest silently
        raise ConfigError("sft_overrides: max_length is train.max_length (examples longer than it are dropped "
                          "and counted, never cut): set train.max_length instead")


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


def pop_checkpointing_kwargs(overrides: dict[str, Any]) -> dict[str, Any] | None:
    """A user's checkpointing kwargs from ``sft_overrides`` under either name (removed there)."""
    got = None
    for name in ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"):
        if name in overrides:
            value = overrides.pop(name)
            got = {**(got or {}), **(value or {})}
    return got


def build_sft_config(sft_kwargs: dict[str, Any]) -> Any:
    """TRL's ``SFTConfig`` from its keyword arguments; what it refuses is a ConfigError."""
    try:
        return sft_config_class()(**sft_kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid training settings: {e}") from e


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
        cfg = TrainConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or 'the top level'}: {err['msg']}"
                 + (f" (got the boolean {str(err['input']).lower()})" if isinstance(err.get("input"), bool) else "")
                 for err in e.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None
    bad = bools_read_as_numbers(data, cfg)  # `epochs: true` would train one epoch
    if bad:
        raise ConfigError(f"{source}: " + "; ".join(f"{k}: {BOOL_FOR_NUMBER}" for k in bad))
    return cfg


# -- what TRL and the hardware offer (imported when asked, so this module stays light) --------
def sft_config_class() -> Any:
    """TRL's ``SFTConfig`` class."""
    from trl import SFTConfig

    return SFTConfig


def accelerator_available() -> bool:
    """A CUDA, MPS or XPU device is visible to torch."""
    import torch

    xpu = getattr(torch, "xpu", None)
    return bool(
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (xpu is not None and xpu.is_available())
    )


def cuda_bf16_available() -> bool:
    """A CUDA device with bf16 support is visible to torch."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
