"""``skilldistill train``: fine-tune the student on a formatted dataset (TRL SFTTrainer)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..keyvalue import parse_key_values
from ..train.config import TrainConfig, load_train_config, validate_train_config
from ..train.stage import run_train
from .app import app, console, user_errors
from .options import config_option


def _flag(field: str, *flags: str, help: str | None = None) -> Any:
    """An option for a TrainConfig field that is None unless given: an unset flag leaves the
    field to the --config file, the preset, or the field's default."""
    return config_option(TrainConfig, field, *flags, default=None, help=help)


@app.command("train")
@user_errors
def train_cmd(
    dataset: Path = typer.Argument(..., help="Format-stage folder (train.jsonl or hf/), a .jsonl file, or a datasets folder."),
    model: str | None = _flag("model", "--model", "-m"),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (checkpoints, final/, metrics, loss.png)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML of TrainConfig fields (flags below win)."),
    preset: str | None = _flag("preset", "--preset"),
    lora: bool | None = _flag("lora", "--lora/--full"),
    lora_r: int | None = _flag("lora_r", "--lora-r"),
    lora_alpha: int | None = _flag("lora_alpha", "--lora-alpha"),
    epochs: float | None = _flag("num_train_epochs", "--epochs", help="num_train_epochs."),
    max_steps: int | None = _flag("max_steps", "--max-steps"),
    lr: float | None = _flag("learning_rate", "--lr", help="learning_rate."),
    batch_size: int | None = _flag("per_device_train_batch_size", "--batch-size", help="per_device_train_batch_size."),
    grad_accum: int | None = _flag("gradient_accumulation_steps", "--grad-accum", help="gradient_accumulation_steps."),
    effective_batch: int | None = _flag("effective_batch_size", "--effective-batch"),
    max_length: int | None = _flag("max_length", "--max-length"),
    packing: bool | None = _flag("packing", "--packing/--no-packing"),
    chat_template: str | None = _flag("chat_template", "--chat-template"),
    bf16: bool | None = _flag("bf16", "--bf16/--fp32", help="Precision (default: bf16 when the GPU supports it)."),
    seed: int | None = _flag("seed", "--seed"),
    sft: list[str] = typer.Option([], "--sft", help="Extra SFTConfig field KEY=VALUE (repeatable), e.g. --sft optim=adamw_8bit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard checkpoints of a different config in --out."),
) -> None:
    """Supervised fine-tuning with loss on the assistant turn only; resumes from the last checkpoint."""
    flags = {
        "model": model, "preset": preset, "lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha,
        "num_train_epochs": epochs, "max_steps": max_steps, "learning_rate": lr,
        "per_device_train_batch_size": batch_size, "gradient_accumulation_steps": grad_accum,
        "effective_batch_size": effective_batch, "max_length": max_length, "packing": packing,
        "chat_template": chat_template, "bf16": bf16, "seed": seed,
    }
    flags = {k: v for k, v in flags.items() if v is not None}
    if grad_accum is not None and effective_batch is None:
        flags["effective_batch_size"] = None  # an explicit accumulation beats a preset's effective batch
    if sft:
        flags["sft_overrides"] = parse_key_values(sft, option="--sft")
    if config is not None:
        cfg = load_train_config(config, **flags)
    else:
        cfg = validate_train_config(flags, source="train options")
    final = run_train(dataset, out, cfg, overwrite=overwrite)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under accelerate launch, one summary (from the main process) is enough

    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        import json

        m = json.loads(metrics_path.read_text(encoding="utf-8"))
        table = Table(title=f"train: {cfg.model}", show_header=False)
        table.add_row("examples", f"{m['data']['examples_kept']} (dropped over-long: {m['data']['dropped_overlong']})")
        table.add_row("steps", str(m.get("global_step")))
        table.add_row("loss first / last", f"{m.get('loss_first')} / {m.get('loss_last')}")
        table.add_row("effective batch", str(m.get("effective_batch_size")))
        table.add_row("chat template", str(m.get("chat_template")))
        console.print(table)
    console.print(f"final model: {final}")
