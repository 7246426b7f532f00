"""The recipe's accelerate config, checked before a run starts: the file must be an
accelerate config, and its process count must fit the machine. A run that would fail at
its first training stage, after hours of attribution and profiling, fails at once instead,
with the file and the field named, and nothing in the run folder touched.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

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


def launch_flag(config: dict[str, Any], extra_args: list[str], key: str, default: Any) -> tuple[Any, str]:
    """A launch setting (``num_processes``, ``num_machines``): the file's, or ``--KEY`` among
    the launch arguments (which win), with where it came from."""
    value, source = config.get(key, default), key
    for i, arg in enumerate(extra_args):
        for flag in (f"--{key}", f"--{key.replace('_', '-')}"):
            if arg == flag and i + 1 < len(extra_args):
                value, source = extra_args[i + 1], f"launcher.extra_args {flag}"
            elif arg.startswith(flag + "="):
                value, source = arg.split("=", 1)[1], f"launcher.extra_args {flag}"
    return value, source


def whole_number(value: Any, source: str, path: Path) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        where = source if source.startswith("launcher.") else f"{path}: {source}"
        raise ConfigError(f"{where}: {value!r} is not a whole number") from None
    if count < 1:
        raise ConfigError(f"{path}: {source} is {count}; at least 1")
    return count


def process_count(config: dict[str, Any], extra_args: list[str], path: Path) -> int:
    """``num_processes`` of the file, or of ``--num_processes`` among the launch arguments."""
    value, source = launch_flag(config, extra_args, "num_processes", 1)
    return whole_number(value, source, path)


class Capacity(NamedTuple):
    """How many training processes of a kind one machine can run, and on what."""

    processes: int
    limit: str  # what limits it, in words: "8 GPU(s)", "2 CPU core(s), no GPU"
    on_gpus: bool  # one process per GPU (launches side by side need GPUs of their own)


def available_processes(distributed_type: str) -> Capacity:
    """How many processes of this kind one machine can run: torchrun types put a process on
    each GPU where there are GPUs (whatever ``use_cpu`` says), else on CPU cores."""
    import torch

    gpus = torch.cuda.device_count()
    if distributed_type in DEVICE_TYPES and gpus:
        return Capacity(gpus, f"{gpus} GPU(s)", True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Capacity(cores, f"{cores} CPU core(s), no GPU" if not gpus else f"{cores} CPU core(s)", False)


def check_launch(accelerate_config: str | Path, extra_args: list[str], *, concurrent: int = 1) -> LaunchPlan:
    """The launch the recipe asks for, refused when accelerate would not run it as asked or
    this machine cannot: ``concurrent`` launches may run at once (arm runs in parallel)."""
    path = Path(accelerate_config)
    config = read_accelerate_config(path)
    distributed_type = str(config.get("distributed_type", "NO"))
    count = process_count(config, extra_args, path)
    machines = whole_number(*launch_flag(config, extra_args, "num_machines", 1), path)
    per_machine = -(-count // machines)
    _refuse_a_single_process_launch(path, distributed_type, count, config, extra_args)
    capacity = available_processes(distributed_type)
    # Launches side by side share the GPUs (each needs its own); on CPU cores they only share time.
    at_once = per_machine * (concurrent if capacity.on_gpus else 1)
    if at_once > capacity.processes:
        together = f" ({concurrent} arm runs at once x {per_machine})" if at_once != per_machine else ""
        raise ConfigError(f"{path}: num_processes asks for {at_once} training processes on this machine{together}; "
                          f"it can run {capacity.processes} ({capacity.limit}): lower num_processes (or pass --num_processes in "
                          "launcher.extra_args), or jobs")
    if distributed_type == "FSDP" and not _has_accelerator():
        raise ConfigError(f"{path}: distributed_type FSDP needs GPUs (accelerate runs FSDP only on accelerator "
                          "devices); on CPU use recipes/accelerate/cpu-ddp.yaml or a DeepSpeed config")
    if distributed_type == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"{path}: distributed_type DEEPSPEED needs DeepSpeed: pip install skilldistill[deepspeed]")
    return LaunchPlan(path, distributed_type, count)


def _refuse_a_single_process_launch(path: Path, distributed_type: str, count: int, config: dict[str, Any],
                                    extra_args: list[str]) -> None:
    """accelerate starts several processes on one machine only through torchrun (the
    MULTI_GPU, FSDP and DeepSpeed types) or mpirun; otherwise, and with ``--cpu``, it runs
    one process whatever ``num_processes`` says."""
    if count <= 1:
        return
    if "--cpu" in extra_args:
        raise ConfigError(f"launcher.extra_args --cpu: accelerate would run 1 process, not {count}; for several "
                          "processes on CPU cores use recipes/accelerate/cpu-ddp.yaml")
    if distributed_type not in DEVICE_TYPES and not config.get("mpirun_config") and not config.get("mpirun_hostfile"):
        raise ConfigError(f"{path}: distributed_type {distributed_type} with num_processes {count}: accelerate "
                          "would run 1 process (several CPU processes need mpirun); use "
                          "recipes/accelerate/cpu-ddp.yaml")


def _has_accelerator() -> bool:
    from ..train.config import accelerator_available

    return accelerator_available()


__all__ = ["Capacity", "LaunchPlan", "available_processes", "check_launch", "read_accelerate_config"]
