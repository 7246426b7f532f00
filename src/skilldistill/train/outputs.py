"""The output folder of ``skilldistill train``: its file names, its checkpoints (the one to
resume from, removing them) and the run record that keeps a rerun from resuming the
checkpoints of another config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..artifacts import hash_obj, read_json, write_json
from ..errors import ConfigError
from .checkpoints import list_checkpoints

FINAL_DIR = "final"
ADAPTER_DIR = "adapter"
STUDENT_DIR = "student"
TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.json"
TRAINER_STATE = "trainer_state.json"
LOSS_PNG = "loss.png"


def guard_output_dir(out_dir: Path, run_record: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse to resume checkpoints of another config; forget a stale manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = out_dir / TRAIN_CONFIG
    previous = read_json(record_path) if record_path.is_file() else None
    stale = previous is not None and hash_obj(previous) != hash_obj(run_record)
    if overwrite or stale:
        checkpoints = list_checkpoints(out_dir)
        if checkpoints and not overwrite:
            raise ConfigError(
                f"{out_dir} holds checkpoints of a different config or dataset ({TRAIN_CONFIG}); "
                "use another --out, or --overwrite to discard them"
            )
        for p in checkpoints:
            shutil.rmtree(p)
        for name in (FINAL_DIR, ADAPTER_DIR, STUDENT_DIR):
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
    # A rerun is not complete until it writes a new manifest.
    (out_dir / "manifest.json").unlink(missing_ok=True)
    write_json(record_path, run_record)
