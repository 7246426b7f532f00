"""The recipe's accelerate config, checked before a run starts: the file must be an
accelerate config, and its process count must fit the machine. A run that would fail at
its first training stage, after hours of attribution and profiling, fails at once instead,
with the file and the field named, and nothing in the run folder touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

# accelerate's distributed types that place each process on its own accelerator device.
DEVICE_TYPES = {"MULTI_GPU", "FSDP", "DEEPSPEED", "MEGATRON_LM"}


@dataclass(frozen=True)
class LaunchPlan:
    """What ``accelerate launch`` will start: how many processes, of which kind."""

    config_file: Path
    distributed_type: str
    num_processes: int


def read_accelerate_config(path: str | Path) -> dict[str, Any]:
    """The config file as a mapping; a ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"launcher.accelerate_config: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"launcher.accelerate_config: {path} is not YAML ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"launcher.accelerate_config: {path} is not an accelerate config (a YAML mapping, as "
                          "`accelerate config` writes)")
    return data


def process_count(config: dict[str, Any], extra_args: list[str], path: Path) -> int:
    """``num_processes`` of the file, or of ``--num_processes`` among the launch arguments."""
    count: Any = config.get("num_processes", 1)
    source = f"{path}: num_processes"
    for i, arg in enumerate(extra_args):
        for flag in ("--num_processes", "--num-processes"):
            if arg == flag and i + 1 < len(extra_args):
                count, source = extra_args[i + 1], f"launcher.extra_args {flag}"
            elif arg.startswith(flag + "="):
                count, source = arg.split("=", 1)[1], f"launcher.extra_args {flag}"
    try:
        count = int(count)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {count!r} is not a whole number") from None
    if count < 1:
        raise ConfigError(f"{source}: {count} processes; at least 1")
    return count


def available_processes(distributed_type: str, use_cpu: bool) -> tuple[int, str]:
    """How many processes of this kind the machine can run, and what limits it."""
    import torch

    gpus = torch.cuda.device_count()
    if distributed_type in DEVICE_TYPES and not use_cpu and gpus:
        return gpus, f"{gpus} GPU(s)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores, f"{cores} CPU core(s), no GPU" if not gpus else f"{cores} CPU core(s)"


def check_launch(accelerate_config: str | Path, extra_args: list[str]) -> LaunchPlan:
    """The launch the recipe asks for, refused when this machine cannot run it."""
    path = Path(accelerate_config)
    config = read_accelerate_config(path)
    distributed_type = str(config.get("distributed_type", "NO"))
    use_cpu = bool(config.get("use_cpu", False))
    count = process_count(config, extra_args, path)
    available, limit = available_processes(distributed_type, use_cpu)
    if count > available:
        raise ConfigError(f"{path}: num_processes asks for {count} training processes; this machine can run "
                          f"{available} ({limit}): lower num_processes (or pass --num_processes in "
                          "launcher.extra_args)")
    if distributed_type == "FSDP" and not _has_accelerator():
        raise ConfigError(f"{path}: distributed_type FSDP needs GPUs (accelerate runs FSDP only on accelerator "
                          "devices); on CPU use recipes/accelerate/cpu-ddp.yaml or a DeepSpeed config")
    return LaunchPlan(path, distributed_type, count)


def _has_accelerator() -> bool:
    from ..train.config import accelerator_available

    return accelerator_available()


__all__ = ["LaunchPlan", "check_launch", "read_accelerate_config"]
