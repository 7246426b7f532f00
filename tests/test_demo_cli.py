"""`skilldistill demo --quick`, end to end, as a new user runs it (what CI runs): the verdict,
the demo's own target checks, reproducibility across runs, and a cached second run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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
    assert "one seed per arm" in summary["verdict"]["text"]
    assert "Indicative only (--quick): 2 arms x 1 seed(s), 8 held-out problems per leaf" in " ".join(out.split())
    assert "(6 arms x 3 seeds, 24 held-out problems per leaf) gives the verdict" in " ".join(out.split())
    assert summary["weak_skill_gains"]["definition"].startswith("the world's 6 weak leaves")
    html = (tmp_path / "a" / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Attribution accuracy" in html and "Demo targets" in html
    acc = json.loads((tmp_path / "a" / "annotate" / "attribution_accuracy.json").read_text())
    assert acc["top_level_first_chain_hit"] > acc["top_level_random_rate"]  # attribution beats chance
    state = json.loads((tmp_path / "a" / "pipeline_state.json").read_text())["stages"]
    assert len(state) == 13
    print(f"demo --quick wall time: {wall:.0f}s")
    _plan_agrees_with_the_run(tmp_path / "a")

    # a second run from scratch gives the same numbers, to the last digit
    second = _demo(tmp_path / "b")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "b" / "report" / "summary.json").read_text())
    assert _numbers(again) == _numbers(summary)

    # and a rerun finds every stage up to date (no timing assertion: see bench/)
    cached = _demo(tmp_path / "a", timeout=300)
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert "(0 stages ran)" in cached.stderr + cached.stdout


def _plan_agrees_with_the_run(run_dir):
    """`skilldistill plan` on the finished run: every stage done, its counts the run's own;
    a changed training setting makes exactly the training and evaluation of the arms stale."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    import skilldistill
    from skilldistill.cli import app

    recipe = Path(skilldistill.__file__).parent / "recipes" / "demo-quick.yaml"  # what `demo --quick` runs
    quick = ["plan", str(recipe), "--run-dir", str(run_dir), "--json"]
    res = CliRunner().invoke(app, quick)
    assert res.exit_code == 0, res.output
    by = {s["key"]: s for s in json.loads(res.stdout)["stages"]}
    assert len(by) == 13 and {s["status"] for s in by.values()} == {"done"}
    assert by["annotate"]["items"] == json.loads((run_dir / "annotate" / "summary.json").read_text())["items"]
    gens = pq.read_table(run_dir / "profile" / "generations.parquet").column("completion_tokens").to_pylist()
    assert by["profile"]["items"] == len(gens) and abs(by["profile"]["generated_tokens"] - sum(gens)) < 1e-6 * sum(gens)
    for arm in ("random-plain", "skill-skillaware"):
        t = by[f"train/{arm}/seed0"]
        manifest = json.loads((run_dir / "train" / arm / "seed0" / "manifest.json").read_text())
        mean = json.loads((run_dir / "format" / arm / "seed0" / "report.json").read_text())["tokens"]["mean"]
        assert t["items"] == manifest["counts"]["examples"] and t["training_tokens"] == pytest.approx(t["items"] * 5 * mean)
        ev = json.loads((run_dir / "evaluate" / arm / "seed0" / "demo_eval" / "results.json").read_text())
        e = by[f"evaluate/{arm}/seed0"]
        assert e["items"] == ev["n_problems"] and e["generated_tokens"] == pytest.approx(ev["n_problems"] * ev["mean_completion_tokens"])
    res = CliRunner().invoke(app, [*quick, "--set", "train.learning_rate=0.002"])
    by = {s["key"]: s for s in json.loads(res.stdout)["stages"]}
    stale = {k: s["reason"] for k, s in by.items() if s["status"] != "done"}
    assert stale == {**{f"train/{a}/seed0": "its settings changed" for a in ("random-plain", "skill-skillaware")},
                     **{f"evaluate/{a}/seed0": "an input stage changed" for a in ("random-plain", "skill-skillaware")}}


def test_baselines_add_the_fields_arms_and_leave_the_default_demo_alone(tmp_path):
    from skilldistill.cli.demo import demo_recipe
    from skilldistill.orchestration.plan import plan_recipe

    default, with_baselines = demo_recipe(False, []), demo_recipe(False, [], baselines=True)
    names = [a.name for a in with_baselines.arms]
    assert names == [a.name for a in default.arms] + ["length-plain", "diversity-plain", "loss-plain", "less-plain"]
    assert with_baselines.report.method == default.report.method and with_baselines.baseline == default.baseline
    strategies = {a.name: with_baselines.arm_select(a, 0) for a in with_baselines.arms}
    assert [strategies[n].strategy for n in names[-4:]] == ["length", "diversity", "loss", "less"]
    assert strategies["loss-plain"].loss_model == "demo:student"  # resolved to the built student at run time
    assert strategies["less-plain"].less_model == "demo:student"
    assert strategies["less-plain"].example == with_baselines.arm_format(with_baselines.arm("less-plain")).example_format()
    # the default demo's stages are the same stages either way: a --baselines run only adds arms
    keys = {s.key for s in plan_recipe(default, run_dir=tmp_path / "a", sample=False).stages}
    more = {s.key for s in plan_recipe(with_baselines, run_dir=tmp_path / "a", sample=False).stages}
    assert keys < more and {k.split("/")[1] for k in more - keys if k.count("/") == 2} == set(names[-4:])
