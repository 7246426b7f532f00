"""Pipeline arm workers: ``python -m skilldistill.orchestration.arm_worker`` (see :mod:`skilldistill.subproc`).

``skilldistill run`` with ``jobs > 1`` starts this many workers when it starts (their
imports of torch, transformers and TRL overlap the run's first stages) and hands each a
task at a time: the base model's evaluation as soon as the base student exists, then the
arm runs (select -> format -> train -> evaluate of one arm and seed). Messages:

- ``("init", {"threads": N})`` -> ``("ready", pid)``: torch threads, logging, imports; once;
- ``("arm", task)`` or ``("base", task)`` (a :class:`~skilldistill.orchestration.arm_pool.WorkerTask`)
  -> ``("ok", (stages_ran, timings))`` or ``("error", (type, message, traceback))``;
- ``None``: exit.

:class:`~skilldistill.orchestration.arm_pool.ArmPool` is the parent's side.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from typing import TYPE_CHECKING

# Nothing heavy at module level: the channel to the parent must be set up (stdout pointed
# at stderr) before any library is imported that may print.
from ..subproc import child_channel

if TYPE_CHECKING:
    from .arm_pool import WorkerTask


def prepare_worker(threads: int | None) -> None:
    """Environment, logging and torch threads of a worker, and the imports every task needs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["SKILLDISTILL_PROGRESS"] = "lines"  # two live bars from two processes would overwrite each other
    from rich.console import Console
    from rich.logging import RichHandler

    from ..progress import NOISY_LOGGERS

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True,
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if threads:
        import torch

        torch.set_num_threads(threads)
    # What every task needs, imported while the parent runs the first stages (transformers
    # and TRL load lazily: naming the classes is what imports them, about 4 s here; the
    # stage packages load their code on first use of a name, so naming it imports it).
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    from trl import SFTTrainer  # noqa: F401

    from ..evaluate import run_evaluate  # noqa: F401
    from ..llm import hf_backend  # noqa: F401
    from ..train import run_train  # noqa: F401
    from . import arm_runs, pipeline  # noqa: F401


def run_task(kind: str, task: WorkerTask) -> tuple[list[str], dict[str, float]]:
    """One task in this worker: (the stages it ran, their wall times)."""
    from rich.console import Console

    from .arm_runs import evaluate_base, run_arm
    from .pipeline import Pipeline

    recipe = task.recipe
    pipe = Pipeline(recipe, run_dir=task.run_dir, force_from=task.force_from,
                    console=Console(stderr=True), show_progress=task.show_progress, worker=True)
    if kind == "base":
        evaluate_base(pipe, task.upstream, pipe.evaluate_config())
    else:
        arm = next(a for a in recipe.arms if a.name == task.arm)
        assert task.seed is not None
        run_arm(pipe, arm, task.seed, task.upstream, pipe.evaluate_config())
    return pipe.ran, pipe.timings


def main() -> None:
    conn = child_channel()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the workers
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        kind, payload = msg
        if kind == "init":
            prepare_worker(payload.get("threads"))
            conn.send(("ready", os.getpid()))
            continue
        try:
            conn.send(("ok", run_task(kind, payload)))
        except Exception as e:  # the parent re-raises it
            conn.send(("error", (type(e).__name__, str(e), traceback.format_exc())))


if __name__ == "__main__":
    main()
