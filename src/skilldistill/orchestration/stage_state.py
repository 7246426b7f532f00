"""The run folder's ``pipeline_state.json``: per stage, the fingerprint it finished with (or
the attempt running), and what a rerun must do with a stage given that record.

A stage being run is recorded as ``{"running": fingerprint, "clean": bool}`` until it
finishes, so the state file never vouches for files the stage is about to rewrite, and a
stage killed before its clean restart wiped its old output still wipes it when rerun.
"""

from __future__ import annotations

import fcntl
import math
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..errors import InputError
from ..json_files import load_json

STATE_FILE = "pipeline_state.json"
# what to do with a damaged state file: without it every stage reruns, resuming from its own logs
_FIX = "delete it and rerun: every stage then runs again, resuming from its own logs"


def read_state(run_dir: Path) -> dict[str, Any]:
    """The state file of ``run_dir`` (``{}`` when there is none yet). A damaged one (not
    JSON, not an object, stages that are no records) raises :class:`InputError` naming it."""
    path = run_dir / STATE_FILE
    if not path.exists():
        return {}
    state = load_json(path, fix=_FIX)
    _check_state(state, path)
    return state


def _check_state(state: Any, path: Path) -> None:
    """The shape every reader of the state relies on: an object, ``stages`` an object of records."""
    if not isinstance(state, dict):
        raise InputError(f"not a JSON object (got {type(state).__name__}); {_FIX}", file=path)
    stages = state.get("stages", {})
    if not isinstance(stages, dict):
        raise InputError(f"not an object of stage records; {_FIX}", file=path, field="stages")
    for key, entry in stages.items():
        if not isinstance(entry, dict):
            raise InputError(f"not a stage record (got {entry!r:.40}); {_FIX}", file=path, field=f"stages.{key}")
        wall = entry.get("wall_time_s")
        if wall is not None and (isinstance(wall, bool) or not isinstance(wall, int | float) or not math.isfinite(wall)):
            raise InputError(f"not a number of seconds (got {wall!r:.40}); {_FIX}", file=path,
                             field=f"stages.{key}.wall_time_s")


def record_stage(run_dir: Path, key: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    """Record a stage in the state file (``None``: forget it) and return the whole state.
    Arm workers write it too: under a lock, re-read, merged, rewritten atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f".{STATE_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = read_state(run_dir)
            stages = current.setdefault("stages", {})
            if entry is None:
                stages.pop(key, None)
            else:
                stages[key] = entry
            write_json(run_dir / STATE_FILE, current)
            return current
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def must_clean(prev: dict[str, Any], fp: str) -> bool:
    """Whether a stage must discard its old output: it finished, or was last started,
    with another fingerprint, or an interrupted attempt was itself a clean restart."""
    if "running" in prev:
        return bool(prev.get("clean")) or prev["running"] != fp
    return bool(prev) and prev.get("fingerprint") != fp


def stage_status(prev: dict[str, Any], fp: str, config_hash: str, forced: bool, marker: Path) -> dict[str, str]:
    """What a run would do with a stage: done / to run / stale (and why)."""
    if forced:
        return {"status": "stale", "reason": "forced by --from"}
    if not prev:
        return {"status": "to run", "reason": "never finished"}
    if "running" in prev:
        how = "restarts clean" if must_clean(prev, fp) else "resumes"
        return {"status": "to run", "reason": f"interrupted before it finished: {how}"}
    if prev.get("fingerprint") == fp:
        if marker.exists():
            return {"status": "done", "reason": f"finished {prev.get('finished_at', '')}".strip()}
        return {"status": "stale", "reason": f"its done-marker {marker.name} is missing"}
    if prev.get("config_hash") and prev["config_hash"] != config_hash:
        return {"status": "stale", "reason": "its settings changed"}
    if prev.get("config_hash"):
        return {"status": "stale", "reason": "an input stage changed"}
    return {"status": "stale", "reason": "its settings or an input stage changed"}


__all__ = ["STATE_FILE", "must_clean", "read_state", "record_stage", "stage_status"]
