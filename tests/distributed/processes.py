"""Finding and ending the processes of an ``accelerate launch`` in tests (torchrun starts its
workers in sessions of their own, so a process group kill does not reach them)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def rank_process(launcher: subprocess.Popen, rank: str, timeout: float = 600):
    """The live ``skilldistill.train`` process of ``rank`` below ``launcher`` (a psutil.Process)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the launch ended before training started"
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == rank and "skilldistill.train" in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} training process appeared")


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and everything below it."""
    import psutil

    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def wait_for_checkpoint(out: Path, step: int, launcher: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``checkpoint-<step>`` of ``out`` is certified (every rank has saved it)."""
    from skilldistill.train.checkpoints import CHECKPOINT_MARKER

    deadline = time.monotonic() + timeout
    while not (out / f"checkpoint-{step}" / CHECKPOINT_MARKER).is_file():
        assert time.monotonic() < deadline and launcher.poll() is None, f"no checkpoint-{step} before the end"
        time.sleep(0.02)
