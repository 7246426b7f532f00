"""Facts about the processes a training run is launched with (``accelerate launch``).

accelerate sets its FSDP mode only for accelerator devices: on a machine without one it
runs an FSDP config as plain data parallel (every process a full copy), without a word.
A run that asked for sharding and silently got replicas is refused here, before the
output folder is touched.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .config import accelerator_available


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
