"""`skilldistill demo --quick`, end to end, as a new user runs it (what CI runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_demo_quick_end_to_end_then_cached(tmp_path):
    run_dir = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "140"}
    cmd = [sys.executable, "-m", "skilldistill.cli", "demo", "--quick", "--run-dir", str(run_dir)]
    t0 = time.time()
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.time() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stderr + first.stdout
    assert "random-plain" in out and "skill-skillaware" in out and "report.html" in out
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    arms = summary["benchmarks"]["arms"]
    assert set(arms) == {"base", "random-plain", "skill-skillaware"}
    assert all(0.0 <= arms[a]["demo_eval"]["mean"] <= 1.0 for a in arms)
    html = (run_dir / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Attribution accuracy" in html
    acc = json.loads((run_dir / "annotate" / "attribution_accuracy.json").read_text())
    assert acc["top_level_first_chain_hit"] > acc["top_level_random_rate"]  # attribution beats chance
    state = json.loads((run_dir / "pipeline_state.json").read_text())["stages"]
    assert len(state) == 13
    print(f"demo --quick wall time: {wall:.0f}s")

    # the second run finds every stage up to date (no timing assertion: see bench/)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(0 stages ran)" in second.stderr + second.stdout
