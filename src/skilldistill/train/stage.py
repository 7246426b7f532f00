"""``skilldistill train``: fine-tune the student on a formatted dataset, resumably.

:func:`run_train` checks whether the folder is already complete, builds the trainer,
trains (from the last complete checkpoint, if any), saves the model on every process, then
the main process merges a LoRA adapter and writes the records (trainer state, loss plot,
metrics, manifest).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from ..artifacts import locked_stage, manifest_matches, readable_files, write_json, write_manifest
from ..progress import library_bars_off
from .checkpoints import check_resumable, delete_checkpoints, last_complete_checkpoint
from .config import TrainConfig
from .data import dataset_hash, resolve_dataset
from .distributed import launched_with, world_size
from .lora import merge_lora
from .metrics import training_metrics
from .outputs import (
    ADAPTER_DIR,
    FINAL_DIR,
    LOSS_PNG,
    METRICS,
    TRAINER_STATE,
)
from .plot import plot_loss
from .trainer import TrainSetup, build_trainer

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainRun:
    """What the steps of :func:`run_train` hand on: the run's folder and config, the trainer
    once built, and what training returned."""

    out_dir: Path
    config: TrainConfig
    started: float
    setup: TrainSetup | None = None
    resumed_from: Path | None = None
    result: Any = None

    @property
    def final_dir(self) -> Path:
        return self.out_dir / FINAL_DIR

    @property
    def save_dir(self) -> Path:
        """Where the trainer saves: the adapter, when it is merged into final/ afterwards."""
        return self.out_dir / ADAPTER_DIR if self.merges_adapter else self.final_dir

    @property
    def merges_adapter(self) -> bool:
        return self.config.lora and self.config.merge_lora


@locked_stage("train", main_rank_only=True)
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
    checkpoints left by a different config (otherwise that is an error). Under
    ``accelerate launch`` only the main process (rank 0) holds the folder's lock.
    """
    run = TrainRun(out_dir=Path(out_dir), config=config, started=time.time())
    if not overwrite and _is_complete(run, dataset_path):
        log.info("train: %s is complete for this config and data; nothing to do", run.out_dir)
        return run.final_dir
    run.setup = build_trainer(dataset_path, run.out_dir, config, overwrite=overwrite, progress=progress, label=label)
    _train(run)
    _save_model(run)
    if run.setup.is_main:  # one process writes the folder's files
        _merge_adapter(run)
        _write_records(run)
        _delete_checkpoints(run)
    run.setup.trainer.accelerator.wait_for_everyone()
    return run.final_dir



def _is_complete(run: TrainRun, dataset_path: str | Path) -> bool:
    """final/ exists and the manifest matches this config and this dataset."""
    if not run.final_dir.is_dir():
        return False
    src, kind = resolve_dataset(dataset_path)
    return manifest_matches(run.out_dir, config=run.config.fingerprint_dict(),
                            inputs={"dataset": dataset_hash(src, kind)})


def _train(run: TrainRun) -> None:
    run.resumed_from = last_complete_checkpoint(run.out_dir)
    if run.resumed_from is not None:
        check_resumable(run.resumed_from, world_size=world_size(), deepspeed=launched_with("DEEPSPEED"))
        log.info("train: resuming from %s", run.resumed_from)
    resume = str(run.resumed_from) if run.resumed_from else None
    run.result = run.setup.trainer.train(resume_from_checkpoint=resume)


def _save_model(run: TrainRun) -> None:
    """Every rank takes part in saving (ZeRO-3 gathers the sharded weights)."""
    setup = run.setup
    if setup.inference_chat_template:
        setup.tokenizer.chat_template = setup.inference_chat_template
    with library_bars_off():  # "Writing model shards" is one bar line per save: noise in a log
        setup.trainer.save_model(str(run.save_dir))
    setup.trainer.accelerator.wait_for_everyone()


def _merge_adapter(run: TrainRun) -> None:
    if run.merges_adapter:
        merge_lora(run.setup.model_path, run.save_dir, run.final_dir, run.setup.tokenizer,
                   dtype=run.setup.args.model_init_kwargs["dtype"], trust_remote_code=run.config.trust_remote_code)


def _write_records(run: TrainRun) -> None:
    """trainer_state.json, loss.png, metrics.json, then manifest.json (last: the run is done)."""
    setup, config, out_dir = run.setup, run.config, run.out_dir
    state = setup.trainer.state
    state.save_to_json(str(out_dir / TRAINER_STATE))
    readable_files(run.final_dir)
    plot_loss(state.log_history, out_dir / LOSS_PNG, title=f"{config.model} ({setup.chat_template_name} template)")
    write_json(out_dir / METRICS, training_metrics(
        run.result.metrics, state, setup.args, resumed_from=run.resumed_from,
        chat_template=setup.chat_template_name, lora=config.lora, data_stats=setup.data_stats,
    ))
    write_manifest(
        out_dir,
        config=config.fingerprint_dict(),
        inputs=setup.inputs,
        counts={
            "examples": setup.data_stats["examples_kept"],
            "dropped_overlong": setup.data_stats["dropped_overlong"],
            "steps": state.global_step,
        },
        wall_time_s=round(time.time() - run.started, 2),
        dataset=str(setup.dataset_file),
        final=str(run.final_dir),
        chat_template=setup.chat_template_name,
    )
    log.info("train: wrote %s", run.final_dir)


def _delete_checkpoints(run: TrainRun) -> None:
    if run.config.delete_checkpoints:
        delete_checkpoints(run.out_dir)
        log.info("train: removed the checkpoints (delete_checkpoints)")
