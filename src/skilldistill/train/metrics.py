"""What ``metrics.json`` records about a finished training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .distributed import distributed_type_name


def first_loss(history: list[dict[str, Any]]) -> float | None:
    return next((h["loss"] for h in history if "loss" in h), None)


def last_loss(history: list[dict[str, Any]]) -> float | None:
    return next((h["loss"] for h in reversed(history) if "loss" in h), None)


def training_metrics(result_metrics: dict[str, Any], trainer_state: Any, args: Any, *, resumed_from: Path | None,
                     chat_template: str, lora: bool, data_stats: dict[str, Any]) -> dict[str, Any]:
    """The trainer's own metrics, then the batch, precision, template, loss and data of the run."""
    history = trainer_state.log_history
    return {
        **result_metrics,
        "global_step": trainer_state.global_step,
        "resumed_from": str(resumed_from) if resumed_from else None,
        "world_size": args.world_size,
        "distributed_type": distributed_type_name(getattr(args, "distributed_state", None)),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "bf16": args.bf16,
        "dtype": args.model_init_kwargs["dtype"],
        "chat_template": chat_template,
        "lora": lora,
        "loss_first": first_loss(history),
        "loss_last": last_loss(history),
        "data": data_stats,
    }
