"""The training progress bar: transformers' tqdm bar and printed log dicts replaced by one
rich bar (step, total, latest loss), the same look as every other stage."""

from __future__ import annotations

from typing import Any


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

            from ..progress import StageProgress

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
