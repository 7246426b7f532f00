"""Training checkpoints: which one a resume may use, and how one becomes usable.

transformers writes ``checkpoint-N/`` in place, each process its own files (the main
process the weights, optimizer and trainer state; every rank its RNG state, and under
DeepSpeed its optimizer shard), with no barrier before the main process writes
``trainer_state.json``. A process killed while the others save can leave a folder that
looks finished and is not. So a checkpoint counts only once every process has finished
saving it: after a barrier, the main process writes ``skilldistill_checkpoint.json``
listing the folder's files and sizes, and only then removes older checkpoints (TRL's own
rotation is off: it deletes the previous checkpoint before the new one is certified).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from ..artifacts import read_json, write_json
from ..errors import ConfigError
from .distributed import distributed_type_name

log = logging.getLogger(__name__)

CHECKPOINT_MARKER = "skilldistill_checkpoint.json"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Every ``checkpoint-*`` folder in ``out_dir``, complete or not."""
    return [p for p in out_dir.glob("checkpoint-*") if p.is_dir()] if out_dir.is_dir() else []


def delete_checkpoints(out_dir: Path) -> None:
    for checkpoint in list_checkpoints(out_dir):
        shutil.rmtree(checkpoint, ignore_errors=True)


def checkpoint_files(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``folder`` but the marker."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != CHECKPOINT_MARKER}


def mark_complete(folder: Path, *, step: int, world_size: int, distributed_type: str) -> None:
    """Certify ``folder``: every process has saved its part (call after a barrier)."""
    write_json(folder / CHECKPOINT_MARKER, {"step": step, "world_size": world_size,
                                            "distributed_type": distributed_type,
                                            "files": checkpoint_files(folder)})


def check_resumable(folder: Path, *, world_size: int, deepspeed: bool) -> None:
    """Refuse a resume that would fail inside DeepSpeed on every rerun: its optimizer shards
    are per process (a different process count cannot load them), and a DDP checkpoint has
    none to load."""
    marker = read_json(folder / CHECKPOINT_MARKER)
    saved_type = marker.get("distributed_type", "NO")
    saved_world = marker.get("world_size", 1)
    if deepspeed and saved_type != "DEEPSPEED":
        why = f"it was saved without DeepSpeed ({saved_type}), and this launch uses DeepSpeed"
    elif deepspeed and saved_world != world_size:
        why = f"its DeepSpeed state is sharded over {saved_world} processes, and this launch has {world_size}"
    elif not deepspeed and saved_type == "DEEPSPEED":
        why = "it was saved by DeepSpeed, and this launch does not use DeepSpeed"
    else:
        return
    raise ConfigError(f"{folder} cannot be resumed: {why}; launch as it was saved, or start over "
                      "(--overwrite; in a recipe: --from train)")


def incomplete_reason(folder: Path) -> str | None:
    """Why ``folder`` is not a checkpoint to resume from; None when it is one."""
    marker = folder / CHECKPOINT_MARKER
    if not marker.is_file():
        return f"no {CHECKPOINT_MARKER} (its processes did not all finish saving)"
    try:
        listed = read_json(marker)["files"]
    except (ValueError, KeyError, TypeError):
        return f"{CHECKPOINT_MARKER} is unreadable"
    present = checkpoint_files(folder)
    changed = sorted(name for name, size in listed.items() if present.get(name) != size)
    if changed:
        return f"{len(changed)} file(s) missing or changed since it was certified, e.g. {changed[0]}"
    return None


def complete_checkpoints(out_dir: str | Path) -> list[Path]:
    """The certified checkpoints in ``out_dir``, oldest first."""
    found = []
    for folder in list_checkpoints(Path(out_dir)):
        match = CHECKPOINT_NAME.fullmatch(folder.name)
        if match is None:
            continue
        reason = incomplete_reason(folder)
        if reason is None:
            found.append((int(match.group(1)), folder))
        else:
            log.warning("skipping incomplete checkpoint %s: %s", folder, reason)
    return [folder for _, folder in sorted(found)]


def last_complete_checkpoint(out_dir: str | Path) -> Path | None:
    """The highest certified ``checkpoint-N``: the one a resume starts from."""
    complete = complete_checkpoints(out_dir)
    return complete[-1] if complete else None


def rotate_checkpoints(out_dir: Path, keep: int | None, *, newest: Path) -> None:
    """Keep the ``keep`` newest certified checkpoints (``newest`` among them); remove the
    older ones and any uncertified folder older than ``newest``."""
    newest_step = int(CHECKPOINT_NAME.fullmatch(newest.name).group(1))
    complete = complete_checkpoints(out_dir)
    kept = set(complete[-keep:]) if keep and keep > 0 else set(complete)  # <= 0: keep all, as transformers
    for folder in list_checkpoints(out_dir):
        match = CHECKPOINT_NAME.fullmatch(folder.name)
        if match is None or folder in kept or int(match.group(1)) > newest_step:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def checkpoint_marker_callback(keep: int | None) -> Any:
    """A transformers ``TrainerCallback`` that certifies each checkpoint once every process
    has saved it, then rotates (imports transformers lazily)."""
    from transformers import TrainerCallback

    class CertifyCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            from accelerate import PartialState

            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            partial = PartialState()
            partial.wait_for_everyone()  # every rank's RNG state / optimizer shard is on disk
            if partial.is_main_process and folder.is_dir():
                mark_complete(folder, step=state.global_step, world_size=partial.num_processes,
                              distributed_type=distributed_type_name(partial))
                rotate_checkpoints(Path(args.output_dir), keep, newest=folder)
            partial.wait_for_everyone()
            return control

    return CertifyCheckpoint()
