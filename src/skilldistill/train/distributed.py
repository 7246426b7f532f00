"""Facts about the processes a training run is launched with (``accelerate launch``).

accelerate sets its FSDP mode only for accelerator devices: on a machine without one it
runs an FSDP config as plain data parallel (every process a full copy), without a word.
A run that asked for sharding and silently got replicas is refused here, before any
training file is written.

transformers hands ``ddp_timeout`` to accelerate only on accelerator devices; with
``use_cpu`` its gloo group gets torch's default of 30 minutes. On CPU the group is formed
here first, with the configured timeout, and accelerate takes it as it is.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from ..errors import ConfigError
from .config import accelerator_available


def distributed_type_name(state: Any) -> str:
    """accelerate's name for how the processes share the work (NO, MULTI_CPU, MULTI_GPU,
    DEEPSPEED, FSDP), from a ``PartialState`` or the ``distributed_state`` of training args."""
    kind = getattr(state, "distributed_type", None)
    return str(getattr(kind, "value", kind or "NO"))


def launched_with(kind: str) -> bool:
    """Whether ``accelerate launch`` asked for ``kind`` (``FSDP`` or ``DEEPSPEED``)."""
    return os.environ.get(f"ACCELERATE_USE_{kind}", "false").lower() in ("1", "true", "yes")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_launch() -> None:
    """Refuse a launch that accelerate would not run as asked on this machine."""
    if launched_with("FSDP") and not accelerator_available():
        raise ConfigError(
            "the accelerate config asks for FSDP, but this machine has no GPU: accelerate runs FSDP only on "
            "accelerator devices and would train plain data parallel instead (a full copy per process); "
            "use recipes/accelerate/cpu-ddp.yaml, or DeepSpeed ZeRO, on CPU (docs/train.md, 'Across processes')"
        )


def join_cpu_process_group(timeout_s: int) -> None:
    """Form the gloo process group of a multi-process CPU launch, bounded by ``timeout_s``
    (a collective waits that long for a stalled rank, then fails)."""
    import torch.distributed as dist

    if world_size() <= 1 or accelerator_available() or launched_with("DEEPSPEED"):
        return  # one process, GPUs (transformers passes the timeout), or DeepSpeed's own comm
    if dist.is_available() and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
