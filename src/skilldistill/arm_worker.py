"""Pipeline arm workers: ``python -m skilldistill.arm_worker`` (see :mod:`skilldistill.subproc`).

``skilldistill run`` with ``jobs > 1`` starts this many workers when it starts (their
imports of torch, transformers and TRL overlap the run's first stages) and hands each a
task at a time: the base model's evaluation as soon as the base student exists, then the
arm runs (select -> format -> train -> evaluate of one arm and seed). Messages:

- ``("init", {"threads": N})`` -> ``("ready", pid)``: torch threads, logging, imports; once;
- ``("arm", payload)`` or ``("base", payload)`` -> ``("ok", (stages_ran, timings))`` or
  ``("error", (type, message, traceback))``;
- ``None``: exit.

:class:`ArmPool` is the parent's side.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)


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
    # What every task needs, imported while the parent runs the first stages (transformers
    # and TRL load lazily: naming the classes is what imports them, about 4 s here).
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    from trl import SFTTrainer  # noqa: F401

    from . import evaluate, pipeline, train  # noqa: F401
    from .llm import hf_backend  # noqa: F401


def run_task(kind: str, payload: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    from rich.console import Console

    from .config import Recipe
    from .pipeline import Pipeline

    recipe = Recipe.model_validate(payload["recipe"])
    pipe = Pipeline(recipe, run_dir=payload["run_dir"], force_from=payload["force_from"],
                    console=Console(stderr=True), show_progress=payload["show_progress"], worker=True)
    if kind == "base":
        pipe._evaluate_base(*payload["fingerprints"], pipe._evaluate_config())
    else:
        arm = next(a for a in recipe.arms if a.name == payload["arm"])
        pipe._arm(arm, payload["seed"], *payload["fingerprints"], pipe._evaluate_config())
    return pipe.ran, pipe.timings


class ArmPool:
    """``jobs`` arm workers, started at once; tasks go to free workers in submission order.

    ``submit`` never blocks (a task waits in a queue until a worker is free); ``wait``
    collects every result and raises the first failure. Always ``close()`` it.
    """

    def __init__(self, jobs: int, threads: int) -> None:
        from .subproc import Worker

        self.workers: list[Any] = []
        self.busy: dict[int, str] = {}
        self.queue: list[tuple[str, tuple[str, dict[str, Any]]]] = []
        self.used: set[int] = set()
        try:
            for k in range(jobs):
                w = Worker.start("skilldistill.arm_worker", name=f"arm-worker-{k}")
                self.workers.append(w)
                w.send(("init", {"threads": threads}))
        except BaseException:
            self.close()
            raise

    def submit(self, label: str, kind: str, payload: dict[str, Any]) -> None:
        self.queue.append((label, (kind, payload)))
        self._hand_out()

    def _hand_out(self) -> None:
        from .subproc import WorkerDied

        for k, w in enumerate(self.workers):
            if k in self.busy or not self.queue:
                continue
            label, msg = self.queue.pop(0)
            try:
                w.send(msg)
            except WorkerDied as e:
                raise ConfigError(f"{label}: {e} before it started; rerun to resume") from None
            self.busy[k] = label
            self.used.add(k)

    def wait(self) -> tuple[list[str], dict[str, float]]:
        """Run every submitted task to its end: (stages run, their wall times)."""
        from .subproc import WorkerDied, wait_any

        ran: list[str] = []
        timings: dict[str, float] = {}
        while self.busy:
            for w in wait_any([self.workers[k] for k in self.busy]):
                k = self.workers.index(w)
                try:
                    kind, payload = w.recv()
                except WorkerDied as e:
                    raise ConfigError(f"{self.busy[k]}: {e}; rerun to resume") from None
                if kind == "ready":  # its init finished; the task sent after it comes next
                    continue
                label = self.busy.pop(k)
                if kind == "error":
                    err_type, message, tb = payload
                    log.debug("%s failed in its worker:\n%s", label, tb)
                    if err_type in ("ConfigError", "InputError", "TreeError"):
                        raise ConfigError(f"{label}: {message}")
                    raise RuntimeError(f"{label} failed: {err_type}: {message}\n{tb}")
                stages, times = payload
                ran += stages
                timings.update(times)
                self._hand_out()
        return ran, timings

    def close(self) -> None:
        # A worker that ran tasks exits on the message; one still busy (after a failure
        # elsewhere) or never used (everything was up to date) is stopped at once.
        for k, w in enumerate(self.workers):
            w.close(timeout=10 if k in self.used and k not in self.busy else 0)


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
            conn.send(("ok", run_task(kind, payload)))
        except Exception as e:  # the parent re-raises it
            conn.send(("error", (type(e).__name__, str(e), traceback.format_exc())))


if __name__ == "__main__":
    main()
