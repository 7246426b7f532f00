"""A pipeline arm worker: ``python -m skilldistill.arm_worker`` (see :mod:`skilldistill.subproc`).

``skilldistill run`` with ``jobs > 1`` starts this many workers and hands each an arm run
(select -> format -> train -> evaluate of one arm and seed) at a time. Messages:

- ``("init", {"threads": N})``: torch threads and logging, once;
- ``("arm", payload)`` -> ``("ok", (stages_ran, timings))`` or ``("error", (type, message, traceback))``;
- ``None``: exit.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any


def _init(threads: int | None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["SKILLDISTILL_PROGRESS"] = "lines"  # two live bars from two processes would overwrite each other
    from rich.console import Console
    from rich.logging import RichHandler

    from .progress import NOISY_LOGGERS

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True,
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if threads:
        import torch

        torch.set_num_threads(threads)


def run_arm(payload: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    from rich.console import Console

    from .config import Recipe
    from .pipeline import Pipeline

    recipe = Recipe.model_validate(payload["recipe"])
    pipe = Pipeline(recipe, run_dir=payload["run_dir"], force_from=payload["force_from"],
                    console=Console(stderr=True), show_progress=payload["show_progress"], worker=True)
    arm = next(a for a in recipe.arms if a.name == payload["arm"])
    pipe._arm(arm, payload["seed"], *payload["fingerprints"], pipe._evaluate_config())
    return pipe.ran, pipe.timings


def main() -> None:
    from .subproc import child_channel

    conn = child_channel()
    import signal

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
            _init(payload.get("threads"))
            conn.send(("ready", os.getpid()))
            continue
        try:
            conn.send(("ok", run_arm(payload)))
        except Exception as e:  # the parent re-raises it
            conn.send(("error", (type(e).__name__, str(e), traceback.format_exc())))


if __name__ == "__main__":
    main()
