"""The train stage of a run: in this process, or in a fresh ``accelerate launch`` process group
(the recipe's ``launcher`` section: multi-GPU training, with the GPU memory of this process's
profiling and evaluation engines out of its way).

Under ``accelerate launch`` every process's output goes to ``launch.log`` beside the
stage's output; a launch that fails stops the run with one line naming the arm, the exit
status and that log. torchrun ends the other processes as soon as one dies, and a
collective waits at most ``train.ddp_timeout`` seconds for a process that stalls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..artifacts import write_text
from ..errors import ConfigError
from ..subproc import descendant_pids
from .launch_config import read_accelerate_config
from .stage_runner import StageRunner

LAUNCH_LOG = "launch.log"


def train_stage(run: StageRunner, data_key: str, out_key: str, cfg: Any, clean: bool, *, label: str) -> None:
    """Train on the formatted examples in ``data_key`` into ``out_key`` (``clean``: start over)."""
    launcher = run.recipe.launcher
    if launcher.accelerate_config is None:
        from ..train import run_train

        run_train(run.path(data_key), run.path(out_key), cfg, overwrite=clean, progress=run.show_progress, label=label)
        return
    cmd = accelerate_command(run, data_key, out_key, cfg, clean)
    log_path = run.path(out_key, LAUNCH_LOG)
    run.console.print(f"[dim]$ {' '.join(cmd)}[/dim]\n[dim]train {label}: accelerate launch, log {log_path}[/dim]")
    code = launch(cmd, log_path)
    if code != 0:
        raise ConfigError(f"train {label}: accelerate launch {exit_status(code)}; see {log_path} "
                          "(a rerun resumes from the last complete checkpoint)")


def launch(cmd: list[str], log_path: Path) -> int:
    """Run ``cmd`` with its output appended to ``log_path``; its exit code.

    torchrun starts each worker in a session of its own, so ending this process would leave
    them training (holding GPUs and the stage's lock). Whatever stops the wait (an error, a
    SIGTERM from the pipeline stopping its arm workers, Ctrl-C) stops the launch first.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log, _sigterm_raises():
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            return agent.wait()
        except BaseException:
            stop_launch(agent)
            raise


def stop_launch(agent: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM to the launcher (torchrun ends its workers itself); after ``grace_s``, SIGKILL
    to it and to every process it started."""
    workers = descendant_pids(agent.pid)
    if agent.poll() is None:
        agent.terminate()
        try:
            agent.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    for pid in [agent.pid, *workers, *descendant_pids(agent.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        agent.wait(timeout=5)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a launch runs in the main thread, SIGTERM raises SystemExit (so the launch is
    stopped on the way out) instead of ending the process on the spot."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(code: int) -> str:
    """``exited with status 1`` / ``was killed by signal 9 (SIGKILL)``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-code} ({name})"
    return f"exited with status {code}"


def rendezvous_port_args(accelerate_config: str | Path, extra_args: list[str]) -> list[str]:
    """``--main_process_port`` on a free port for a one-machine launch that names none: arm
    runs training at once (``jobs`` > 1) would otherwise all take torchrun's 29500."""
    if any(a.startswith(("--main_process_port", "--main-process-port")) for a in extra_args):
        return []
    config = read_accelerate_config(accelerate_config)
    if config.get("main_process_port") is not None or int(config.get("num_machines", 1) or 1) > 1:
        return []
    return ["--main_process_port", str(free_port())]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_command(run: StageRunner, data_key: str, out_key: str, cfg: Any, clean: bool) -> list[str]:
    """``accelerate launch ... -m skilldistill.train`` of one training stage, its config written
    beside its output (``pipeline_train_config.yaml``)."""
    launcher = run.recipe.launcher
    cfg_path = run.path(out_key, "pipeline_train_config.yaml")
    write_text(cfg_path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launcher.accelerate_config),
            *launcher.extra_args, *rendezvous_port_args(launcher.accelerate_config, launcher.extra_args),
            "-m", "skilldistill.train", str(run.path(data_key)),
            "--out", str(run.path(out_key)), "--config", str(cfg_path), *(["--overwrite"] if clean else [])]


__all__ = ["LAUNCH_LOG", "accelerate_command", "exit_status", "launch", "train_stage"]
