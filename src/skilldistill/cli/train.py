"""``skilldistill train``: fine-tune the student on a formatted dataset (TRL SFTTrainer)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from ..errors import ConfigError
from ..train import PRESETS, load_train_config, run_train, validate_train_config
from .app import app, console, user_errors


def _parse_sft(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--sft expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


@app.command("train")
@user_errors
def train_cmd(
    dataset: Path = typer.Argument(..., help="Format-stage folder (train.jsonl or hf/), a .jsonl file, or a datasets folder."),
    model: str | None = typer.Option(None, "--model", "-m", help="Student: hub id, local folder or .gguf file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (checkpoints, final/, metrics, loss.png)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML of TrainConfig fields (flags below win)."),
    preset: str | None = typer.Option(None, "--preset", help=f"Named preset: {', '.join(PRESETS)}."),
    lora: bool | None = typer.Option(None, "--lora/--full", help="LoRA adapter or full fine-tuning."),
    lora_r: int | None = typer.Option(None, "--lora-r", help="LoRA rank."),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", help="LoRA alpha."),
    epochs: float | None = typer.Option(None, "--epochs", help="num_train_epochs."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    lr: float | None = typer.Option(None, "--lr", help="learning_rate."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="per_device_train_batch_size."),
    grad_accum: int | None = typer.Option(None, "--grad-accum", help="gradient_accumulation_steps."),
    effective_batch: int | None = typer.Option(None, "--effective-batch", help="per-device x accumulation x GPUs."),
    max_length: int | None = typer.Option(None, "--max-length", help="Token limit; longer examples are dropped."),
    packing: bool | None = typer.Option(None, "--packing/--no-packing", help="Pack examples into max_length blocks."),
    chat_template: str | None = typer.Option(None, "--chat-template", help="auto | model | chatml | trl | file.jinja."),
    bf16: bool | None = typer.Option(None, "--bf16/--fp32", help="Precision (default: bf16 when the GPU supports it)."),
    seed: int | None = typer.Option(None, "--seed"),
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
        flags["sft_overrides"] = _parse_sft(sft)
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
