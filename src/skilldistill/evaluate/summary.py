"""The evaluation folder's ``results.json``: per-benchmark accuracy and their mean, written
and read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..errors import InputError


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-benchmark accuracy plus the unweighted mean over benchmarks (the paper's 'avg')."""
    accs = {k: v["accuracy"] for k, v in results.items() if v.get("accuracy") is not None}
    return {"benchmarks": accs, "average": sum(accs.values()) / len(accs) if accs else None}


def write_summary(out_dir: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary = summarize(results)
    write_json(out_dir / "results.json", {"summary": summary, "benchmarks": results})
    return summary


def read_results(eval_dir: str | Path) -> dict[str, Any]:
    """The ``results.json`` summary of an evaluation folder."""
    p = Path(eval_dir) / "results.json"
    if not p.exists():
        raise InputError("no evaluation results", file=p)
    return json.loads(p.read_text())
