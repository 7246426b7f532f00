"""What an evaluation ran with: the model, decoding, library versions and source commit
(recorded in every benchmark's results), and the benchmark files' hashes (for manifests)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from ..artifacts import library_versions, sha256_file
from ..benchmarks import get_spec
from ..rows import list_local_files
from .config import EvaluateConfig


def git_commit() -> str | None:
    """The commit of the skilldistill source tree, when it is a git checkout."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_info_for(model: str, decoding: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "decoding": decoding, "versions": library_versions(), "git_commit": git_commit()}


def benchmark_inputs(config: EvaluateConfig) -> dict[str, str]:
    """Hashes of the local benchmark files (for stage manifests)."""
    out = {}
    for name in config.benchmarks:
        spec = get_spec(name, custom=name in config.files)
        path = config.files.get(name) or (
            str(Path(config.data_dir) / (spec.local_name or spec.name)) if config.data_dir else None
        )
        if path and Path(path).exists():
            for f in list_local_files(Path(path)):
                out[str(f)] = sha256_file(f)
        else:
            out[name] = spec.hf_id
    return out
