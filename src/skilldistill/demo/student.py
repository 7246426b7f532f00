"""The demo student: a real tokenizer and a tiny Qwen3-style causal LM, trained on CPU.

``build_base_student(out_dir, seed)`` makes the demo's "base model" once and caches it:

1. trains a byte-level BPE tokenizer (digits always split into single characters, so
   arithmetic is learnable) on generated demo text, wraps it as a
   ``PreTrainedTokenizerFast`` with ChatML special tokens and a chat template whose
   assistant turn sits inside ``{% generation %}`` markers (TRL's ``assistant_only_loss``);
2. builds a randomly initialised Qwen3 causal LM of well under a million parameters;
3. fine-tunes it with TRL's ``SFTTrainer`` (assistant-only loss) on a *skewed* mix of demo
   problems: the leaves in ``weak_leaves`` get ``weak_weight`` times the share of the
   others, so the base model is strong on most skills and weak on a known few.

The result is an ordinary Hugging Face model folder (``config.json``, weights, tokenizer
files, ``chat_template.jinja``) that ``AutoModelForCausalLM``/``AutoTokenizer`` load, plus
``manifest.json``; a second call with the same config and seed returns it at once.

Example::

    from skilldistill.demo.student import build_base_student
    path = build_base_student("runs/demo/base_student", seed=0)   # ~3.5 CPU-minutes, 1 thread
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import (
    hash_obj,
    manifest_matches,
    read_json,
    readable_files,
    write_json,
    write_manifest,
)
from ..train.templates import CHATML_TRAINING_TEMPLATE
from .generator import (
    GENERATOR_VERSION,
    SKILLS,
    generate_corpus,
    generate_eval_set,
    generate_problems,
    skewed_weights,
)
from .student_config import StudentConfig

log = logging.getLogger(__name__)

BOS, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [BOS, IM_START, IM_END]

# ChatML, with the assistant content and its end-of-turn token inside generation markers
# so ``return_assistant_tokens_mask`` (TRL ``assistant_only_loss=True``) trains exactly the
# answer and the stop token.
# The ChatML training template (assistant turn inside {% generation %} markers) is the
# one the train stage uses for ChatML students: the demo student is trained the same way.
CHAT_TEMPLATE = CHATML_TRAINING_TEMPLATE


# StudentConfig (the recipe's demo.student) is in .student_config, light for the recipe.


# ----------------------------------------------------------------------- tokenizer
def tokenizer_corpus(n: int, seed: int) -> list[str]:
    """Text the tokenizer learns from: questions, solutions, skill plans of the demo world."""
    from ..tree import SkillTree

    rows = generate_corpus(n, seed=seed, as_table=False)
    rows += generate_eval_set(2, seed=seed, as_table=False)
    texts = [r["question"] + "\n" + r["response"] for r in rows]
    # skill-aware targets start with a plan "Skills:\nDomain->Leaf": cover those words too
    chains = ["->".join(c) for c in SkillTree.bundled("demo").leaves()]
    texts += ["Skills:\n" + c for c in chains] * 4
    texts += ["<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_start|>system\n"] * 50
    return texts


def train_tokenizer(texts: Sequence[str], vocab_size: int = 768):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with single-digit tokens and ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # digits first become single characters, then the byte-level split (GPT-2 regex)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=BOS,
        unk_token=None,
        model_max_length=1024,
        padding_side="left",  # generation pads on the left
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ---------------------------------------------------------------------------- model
def make_model(tokenizer: Any, cfg: StudentConfig, seed: int = 0):
    """A randomly initialised Qwen3 causal LM sized by ``cfg``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.hidden_size // cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        rope_theta=10000.0,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    return model


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------ training
def to_messages(question: str, response: str, prompt_template: str = "{question}") -> list[dict]:
    return [
        {"role": "user", "content": prompt_template.format(question=question)},
        {"role": "assistant", "content": response},
    ]


def sft_train(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict]],
    out_dir: str | Path,
    *,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    seed: int,
    warmup_ratio: float = 0.05,
    weight_decay: float = 0.0,
    max_length: int = 256,
    scheduler: str = "cosine",
    adam_beta2: float = 0.999,
    show_progress: bool = False,
    lora: dict | None = None,
    scheduler_kwargs: dict | None = None,
):
    """TRL ``SFTTrainer`` with assistant-only loss, tuned for a tiny model on CPU.

    ``lora``: PEFT ``LoraConfig`` fields (e.g. ``{"r": 16, "lora_alpha": 32}``) to train an
    adapter instead of every weight; the returned model is merged.

    Returns the trained model (also left in memory; nothing is saved here).
    """
    from datasets import Dataset
    from transformers.utils import logging as hf_logging
    from trl import SFTTrainer

    from ..progress import library_bars_off
    from ..train.callbacks import use_rich_progress

    hf_logging.set_verbosity_error()
    args = sft_config(out_dir, epochs=epochs, learning_rate=learning_rate, scheduler=scheduler,
                      scheduler_kwargs=scheduler_kwargs, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                      adam_beta2=adam_beta2, batch_size=batch_size, max_length=max_length,
                      logging_steps=max(1, min(10, int(len(conversations) * epochs / batch_size) // 4)), seed=seed)
    dataset = Dataset.from_dict({"messages": [list(c) for c in conversations]})
    peft_config = lora_config(lora)
    with library_bars_off():
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config)

    use_rich_progress(trainer, enabled=show_progress, description="demo student: base training")
    trainer.train()
    model = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
    return model, trainer.state


def sft_config(out_dir: str | Path, *, epochs: float, learning_rate: float, scheduler: str,
               scheduler_kwargs: dict | None, warmup_ratio: float, weight_decay: float, adam_beta2: float,
               batch_size: int, max_length: int, logging_steps: int, seed: int) -> Any:
    """TRL's ``SFTConfig`` of :func:`sft_train`: assistant-only loss, CPU, no checkpoints saved."""
    import dataclasses

    from trl import SFTConfig

    from ..train.config import checkpointing_kwargs

    return SFTConfig(
        output_dir=str(out_dir),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=dict(scheduler_kwargs or {}),
        warmup_steps=warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=weight_decay,
        adam_beta2=adam_beta2,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1,
        max_length=max_length,
        assistant_only_loss=True,
        packing=False,
        # TRL turns checkpointing on by default: pure cost on a tiny model (field name per transformers)
        **checkpointing_kwargs({f.name for f in dataclasses.fields(SFTConfig)}, False, use_reentrant=False),
        bf16=False,
        fp16=False,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=logging_steps,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        # random batches: length-grouped ones (less padding) learned far slower here
        disable_tqdm=True,  # our rich bar replaces tqdm (use_rich_progress)
        dataset_num_proc=None,
    )


def lora_config(lora: dict | None) -> Any:
    """PEFT's ``LoraConfig`` for ``lora`` fields (None: every weight trains)."""
    if not lora:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", bias="none",
                      **{"lora_dropout": 0.0, **lora})


def _with_plan(problem: Any, share: float, seed: int, index: int) -> str:
    """The response, prefixed with its skill plan for a seeded ``share`` of the mix."""
    if share <= 0 or random.Random(f"plan-{seed}-{index}").random() >= share:
        return problem.response
    from ..format.config import ExampleFormat
    from ..format.examples import assistant_target

    return assistant_target(problem.response, problem.skills, ExampleFormat(style="skill-aware", instruction=None))


def base_training_problems(cfg: StudentConfig, seed: int):
    """The skewed mix the base student learns from (train split, its own random stream)."""
    weights = skewed_weights(cfg.weak_weight, weak=cfg.weak_leaves)
    return generate_problems(cfg.base_examples, seed=10_000 + seed, split="train",
                             leaf_weights=weights, skill_counts=cfg.skill_counts)


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


@dataclass
class BaseTraining:
    """The demo student before and after its base training, carried between the build's steps."""

    tokenizer: Any
    model: Any
    problems: list[Any]
    conversations: list[list[dict]]
    state: Any = None  # the trainer's state once trained


def build_base_student(
    out_dir: str | Path,
    seed: int = 0,
    config: StudentConfig | dict | None = None,
    *,
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Build (or reuse) the demo's uneven base model in ``out_dir``; returns the folder.

    The folder is a normal Hugging Face model dir. It is rebuilt only when its
    ``manifest.json`` is missing or its config/seed differ (or ``force``). The build
    happens in a temporary sibling folder renamed into place, so a crash leaves no
    half-written model behind.
    """
    cfg = config if isinstance(config, StudentConfig) else StudentConfig(**(config or {}))
    out_dir = Path(out_dir)
    inputs = {"generator": GENERATOR_VERSION, "seed": str(seed)}
    manifest_config = cfg.model_dump(mode="json")
    if not force and manifest_matches(out_dir, config=manifest_config, inputs=inputs):
        return out_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _set_threads(cfg.threads)
    t0 = time.perf_counter()
    tmp = _fresh_folder(out_dir.with_name(f".{out_dir.name}.building"))
    base = untrained_student(cfg, seed, show_progress=show_progress)
    log.info("demo student: base training on %d problems (%.2fM params)", len(base.problems), n_params(base.model) / 1e6)
    train_base_student(base, cfg, seed, tmp / "trainer", show_progress=show_progress)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    save_student(base, tmp)
    write_base_training(base, cfg, tmp)
    write_manifest(tmp, config=manifest_config, inputs=inputs,
                   counts={"examples": len(base.problems), "params": n_params(base.model),
                           "steps": base.state.global_step}, wall_time_s=round(time.perf_counter() - t0, 2),
                   files=_file_hashes(tmp))
    readable_files(tmp)
    _replace_folder(tmp, out_dir)
    return out_dir


def _fresh_folder(folder: Path) -> Path:
    """``folder``, emptied (a build a crash left half-written is discarded)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _replace_folder(src: Path, dst: Path) -> None:
    """Move the finished ``src`` into place at ``dst`` (an old ``dst`` is removed first)."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def untrained_student(cfg: StudentConfig, seed: int, *, show_progress: bool = True) -> BaseTraining:
    """The tokenizer, the randomly initialised model and the skewed mix it will learn from
    (in this order: each draws from its own seeded stream)."""
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..progress import StageProgress

    with StageProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                       disable=not show_progress, transient=True) as progress:
        progress.add_task("demo student: tokenizer and model", total=None)
        tokenizer = train_tokenizer(tokenizer_corpus(cfg.tokenizer_texts, seed), cfg.vocab_size)
        model = make_model(tokenizer, cfg, seed=seed)
        problems = base_training_problems(cfg, seed)
        conversations = [to_messages(p.question, _with_plan(p, cfg.plan_share, seed, i), cfg.prompt_template)
                         for i, p in enumerate(problems)]
    return BaseTraining(tokenizer, model, problems, conversations)


def train_base_student(base: BaseTraining, cfg: StudentConfig, seed: int, trainer_dir: Path, *,
                       show_progress: bool = True) -> None:
    """Fine-tune the untrained model on its skewed mix (``base.model`` and ``base.state`` are the result)."""
    base.model, base.state = sft_train(
        base.model, base.tokenizer, base.conversations, trainer_dir,
        epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
        seed=seed, warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_length=cfg.max_length, scheduler=cfg.lr_scheduler, adam_beta2=cfg.adam_beta2,
        scheduler_kwargs=cfg.lr_scheduler_kwargs,
        show_progress=show_progress,
    )


def save_student(base: BaseTraining, folder: Path) -> None:
    """The model, its generation config and the tokenizer as a Hugging Face model folder."""
    from ..progress import library_bars_off

    with library_bars_off():
        base.model.save_pretrained(folder)
        base.tokenizer.save_pretrained(folder)
    base.model.generation_config.save_pretrained(folder)


def write_base_training(base: BaseTraining, cfg: StudentConfig, folder: Path) -> None:
    """``base_training.json``: leaf counts of the skewed mix, size, steps and loss."""
    leaf_counts: dict[str, int] = {s.name: 0 for s in SKILLS}
    for p in base.problems:
        for chain in p.skills:
            leaf_counts["->".join(chain)] += 1
    losses = [h["loss"] for h in base.state.log_history if "loss" in h]
    write_json(folder / "base_training.json", {
        "examples": len(base.problems),
        "leaf_counts": leaf_counts,
        "weak_leaves": cfg.weak_leaves,
        "params": n_params(base.model),
        "steps": base.state.global_step,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "problems_hash": hash_obj([p.question for p in base.problems]),
    })


# The files that make up a student folder, hashed into its manifest and checked at load.
STUDENT_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "base_training.json")


def _file_hashes(folder: Path) -> dict[str, str]:
    from ..artifacts import sha256_file

    return {name: sha256_file(folder / name) for name in STUDENT_FILES if (folder / name).exists()}


def verify_student(folder: str | Path) -> None:
    """Raise unless every file the manifest lists is present with the recorded hash."""
    from ..errors import InputError

    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise InputError("no manifest.json: not a built demo student", file=folder)
    recorded = read_json(manifest_path).get("files") or {}
    if "model.safetensors" not in recorded:
        raise InputError("the manifest records no file hashes", file=manifest_path, field="files")
    actual = _file_hashes(folder)
    bad = sorted(n for n, h in recorded.items() if actual.get(n) != h)
    if bad:
        raise InputError(f"files differ from the manifest's hashes: {', '.join(bad)}", file=folder)


def shipped_student_dir() -> Path:
    """Where the package keeps its prebuilt base student (package data)."""
    return Path(__file__).resolve().parent / "base_student"


def shipped_student(config: StudentConfig | dict | None = None, seed: int = 0) -> Path | None:
    """The packaged base student, when it was built from exactly this config and seed."""
    cfg = config if isinstance(config, StudentConfig) else StudentConfig(**(config or {}))
    folder = shipped_student_dir()
    inputs = {"generator": GENERATOR_VERSION, "seed": str(seed)}
    if manifest_matches(folder, config=cfg.model_dump(mode="json"), inputs=inputs):
        return folder
    return None


def install_base_student(
    out_dir: str | Path,
    seed: int = 0,
    config: StudentConfig | dict | None = None,
    *,
    force: bool = False,
    show_progress: bool = True,
) -> tuple[Path, str]:
    """The base student in ``out_dir``: a copy of the packaged one when its config and seed
    match (its file hashes checked), else built here. Returns (folder, "shipped" | "built")."""
    cfg = config if isinstance(config, StudentConfig) else StudentConfig(**(config or {}))
    out_dir = Path(out_dir)
    src = None if force else shipped_student(cfg, seed)
    if src is None:
        return build_base_student(out_dir, seed, cfg, force=force, show_progress=show_progress), "built"
    verify_student(src)
    if (out_dir / "manifest.json").exists() and read_json(out_dir / "manifest.json") == read_json(src / "manifest.json"):
        try:
            verify_student(out_dir)
            return out_dir, "shipped"
        except Exception:  # a damaged copy: replace it below
            pass
    tmp = out_dir.with_name(f".{out_dir.name}.copying")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    readable_files(tmp)  # copytree keeps the package files' modes
    verify_student(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("demo student: using the packaged base student (built from this config and seed)")
    return out_dir, "shipped"


def base_training_info(model_dir: str | Path) -> dict:
    """What ``build_base_student`` recorded: leaf counts of the skewed mix, params, loss."""
    return read_json(Path(model_dir) / "base_training.json")


# ---------------------------------------------------------------------- inference
def load_student(model_dir: str | Path):
    """(model, tokenizer) from a student folder, model in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    return model, tokenizer


def greedy_generate(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 64,
    prompt_template: str = "{question}",
    show_progress: bool = False,
) -> list[str]:
    """Greedy answers of a (small) student to ``questions``: a quick look without the pipeline.

    Sorted by prompt length into batches so little padding is computed.
    """
    import torch

    from ..progress import StageProgress

    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt_template.format(question=q)}],
            tokenize=False, add_generation_prompt=True,
        )
        for q in questions
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    with StageProgress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("generating", total=len(prompts))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                out[i] = text
            progress.advance(task, len(idx))
    return out
