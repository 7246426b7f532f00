"""`skilldistill demo --quick`, end to end, as a new user runs it (what CI runs): the verdict,
the demo's own target checks, reproducibility across runs, and a cached second run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest


def _demo(run_dir, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    cmd = [sys.executable, "-m", "skilldistill.cli", "demo", "--quick", "--run-dir", str(run_dir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _numbers(summary: dict) -> dict:
    """Every measured number of a report summary (timings left out: they vary)."""
    return {k: summary[k] for k in ("verdict", "benchmarks", "per_skill", "weak_skill_gains", "selection", "emphasis",
                                    "n_needed")}


@pytest.mark.slow
def test_demo_quick_end_to_end_reproducible_then_cached(tmp_path):
    t0 = time.time()
    first = _demo(tmp_path / "a")
    wall = time.time() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stderr + first.stdout
    assert "random-plain" in out and "skill-skillaware" in out and "report.html" in out
    assert "Verdict:" in out and "paired-bootstrap interval" in out
    assert "the demo's claims, measured on this run" in out
    assert "the packaged one" in out  # the shipped base student, not a build
    summary = json.loads((tmp_path / "a" / "report" / "summary.json").read_text())
    arms = summary["benchmarks"]["arms"]
    assert set(arms) == {"base", "random-plain", "skill-skillaware"}
    assert all(0.0 <= arms[a]["demo_eval"]["mean"] <= 1.0 for a in arms)
    assert arms["base"]["demo_eval"]["mean"] > 0.5  # a student well above chance
    ci = arms["skill-skillaware"]["demo_eval"]["ci"]
    assert ci["low"] <= ci["delta"] <= ci["high"] and ci["n_problems"] == 128
    assert summary["verdict"]["method"] == "skill-skillaware" and summary["verdict"]["baseline"] == "random-plain"
    assert summary["weak_skill_gains"]["definition"].startswith("the world's 6 weak leaves")
    html = (tmp_path / "a" / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Attribution accuracy" in html and "Demo targets" in html
    acc = json.loads((tmp_path / "a" / "annotate" / "attribution_accuracy.json").read_text())
    assert acc["top_level_first_chain_hit"] > acc["top_level_random_rate"]  # attribution beats chance
    state = json.loads((tmp_path / "a" / "pipeline_state.json").read_text())["stages"]
    assert len(state) == 13
    print(f"demo --quick wall time: {wall:.0f}s")

    # a second run from scratch gives the same numbers, to the last digit
    second = _demo(tmp_path / "b")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "b" / "report" / "summary.json").read_text())
    assert _numbers(again) == _numbers(summary)

    # and a rerun finds every stage up to date (no timing assertion: see bench/)
    cached = _demo(tmp_path / "a", timeout=300)
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert "(0 stages ran)" in cached.stderr + cached.stdout
