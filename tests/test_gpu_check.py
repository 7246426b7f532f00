"""scripts/gpu-check, run here with --cpu: the same checks as on a GPU machine (bf16 under CPU
autocast, two processes over gloo, evaluation with the transformers backend)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_passes_on_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu-check"), "--cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = [line.split(":")[0] for line in lines if line.startswith(("PASS", "FAIL"))]
    assert checks == ["PASS environment", "PASS train, one process, bf16", "PASS train, two processes, ddp",
                      "PASS evaluate with the transformers backend", "PASS time"]
    assert lines[-1] == "gpu-check: 5 passed, 0 failed"
    assert (tmp_path / "one-process" / "final" / "model.safetensors").is_file()
