"""The run folder's ``pipeline_state.json``: per stage, the fingerprint it finished with (or
the attempt running), and what a rerun must do with a stage given that record.

A stage being run is recorded as ``{"running": fingerprint, "clean": bool}`` until it
finishes, so the state file never vouches for files the stage is about to rewrite, and a
stage killed before its clean restart wiped its old output still wipes it when rerun.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from ..artifacts import read_json, write_json

STATE_FILE = "pipeline_state.json"


def read_state(run_dir: Path) -> dict[str, Any]:
    """The state file of ``run_dir`` (``{}`` when there is none yet)."""
    path = run_dir / STATE_FILE
    return read_json(path) if path.exists() else {}


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
