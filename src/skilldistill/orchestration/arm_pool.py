"""The parent's side of a parallel run's arm workers (:mod:`skilldistill.orchestration.arm_worker`):
``jobs`` worker processes started at once, tasks handed to free workers in submission order,
their results collected and failures raised with the task's name."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..subproc import Worker, WorkerDied, wait_any
from .recipe import Recipe
from .stage_runner import UpstreamFingerprints

log = logging.getLogger(__name__)

WORKER_MODULE = "skilldistill.orchestration.arm_worker"


@dataclass(frozen=True)
class WorkerTask:
    """A task of an arm worker: the base evaluation (no ``arm``) or one arm run.

    The recipe is pickled as is: a JSON dump would mask inline API keys."""

    recipe: Recipe
    run_dir: str
    force_from: str | None
    show_progress: bool
    upstream: UpstreamFingerprints
    arm: str | None = None
    seed: int | None = None


class ArmPool:
    """``jobs`` arm workers, started at once; tasks go to free workers in submission order.

    ``submit`` never blocks (a task waits in a queue until a worker is free); ``wait``
    collects every result and raises the first failure. Always ``close()`` it.
    """

    def __init__(self, jobs: int, threads: int) -> None:
        self.workers: list[Any] = []
        self.busy: dict[int, str] = {}
        self.queue: list[tuple[str, tuple[str, WorkerTask]]] = []
        self.used: set[int] = set()
        try:
            for k in range(jobs):
                w = Worker.start(WORKER_MODULE, name=f"arm-worker-{k}")
                self.workers.append(w)
                w.send(("init", {"threads": threads}))
        except BaseException:
            self.close()
            raise

    def submit(self, label: str, kind: str, task: WorkerTask) -> None:
        """Queue a task (``kind``: "base" or "arm"); it starts as soon as a worker is free."""
        self.queue.append((label, (kind, task)))
        self._hand_out()

    def _hand_out(self) -> None:
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
                    _raise_task_error(label, *payload)
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


def _raise_task_error(label: str, err_type: str, message: str, tb: str) -> None:
    """A task's failure in the parent: a user error as one line naming the task, a bug with its traceback."""
    log.debug("%s failed in its worker:\n%s", label, tb)
    if err_type in ("ConfigError", "InputError", "TreeError"):
        raise ConfigError(f"{label}: {message}")
    raise RuntimeError(f"{label} failed: {err_type}: {message}\n{tb}")


__all__ = ["WORKER_MODULE", "ArmPool", "WorkerTask"]
