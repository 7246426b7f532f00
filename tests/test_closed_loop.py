"""The closed loop (skilldistill.orchestration.closed_loop): budgets per round, earlier selections left out
of selection and profiling, and `rounds: 2` end to end in the quick demo world, resumed after
kill -9 between and inside rounds with the same numbers as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from skilldistill.cli import app
from skilldistill.errors import ConfigError, InputError
from skilldistill.orchestration.loop_config import LoopConfig
from skilldistill.orchestration.recipe import load_recipe
from skilldistill.profile import run_profile
from skilldistill.select import SelectConfig, run_select
from test_profile import ScriptedStudent, _profile_cfg
from test_profile import pool as pool  # noqa: F401  (fixture)
from test_select import small_pool as small_pool  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


def test_round_budgets_equal_slices_or_the_given_list():
    assert LoopConfig().round_budgets(256, 2) == [128, 128]
    assert LoopConfig().round_budgets(256, 3) == [86, 85, 85]  # the remainder to the first rounds
    assert LoopConfig(budgets=[200, 56]).round_budgets(256, 2) == [200, 56]
    with pytest.raises(ValueError, match="sums to 250"):
        LoopConfig(budgets=[200, 50]).round_budgets(256, 2)
    with pytest.raises(ValueError, match="3 entries for 2 rounds"):
        LoopConfig(budgets=[1, 1, 254]).round_budgets(256, 2)
    with pytest.raises(ValueError, match="cannot give each of 3 rounds"):
        LoopConfig().round_budgets(2, 3)


def test_later_rounds_train_at_the_scaled_learning_rate_and_round_one_is_unchanged(tmp_path):
    from skilldistill.orchestration.loop_rounds import run_rounds
    from skilldistill.orchestration.pipeline import Pipeline
    from skilldistill.orchestration.stage_runner import UpstreamFingerprints

    loop_arm = "arms=[{name: one, select: {strategy: skill}}, {name: loop, rounds: 3, select: {strategy: skill}}]"

    def train_configs(*overrides):
        recipe = load_recipe(REPO / "recipes" / "demo-quick.yaml",
                             [loop_arm, "report.method=one", "report.baseline=one", *overrides])
        pipe = Pipeline(recipe, run_dir=tmp_path / "run", show_progress=False)
        seen = {}

        def record_step(key, kind, config, upstream, fn, done_marker="manifest.json"):
            seen[key] = config
            return f"fp-{key}"

        pipe.step = record_step
        arm = recipe.arm("loop")
        run_rounds(pipe, arm, 0, recipe.arm_select(arm, 0), recipe.arm_format(arm),
                   UpstreamFingerprints(student="s", demo=None, annotate="a", profile="p"))
        return {k.split("/")[3]: v for k, v in seen.items() if k.endswith("/train")}

    lr = load_recipe(REPO / "recipes" / "demo-quick.yaml").train.learning_rate
    default = train_configs()
    assert [default[r]["learning_rate"] for r in ("round1", "round2", "round3")] == [lr, lr, lr]
    scaled = train_configs("loop.later_rounds_lr_scale=0.25")
    assert [scaled[r]["learning_rate"] for r in ("round1", "round2", "round3")] == [lr, lr * 0.25, lr * 0.25]
    assert scaled["round1"] == default["round1"]  # round 1's fingerprint, hence its finished stage, is kept
    with pytest.raises(ConfigError, match="later_rounds_lr_scale"):
        load_recipe(REPO / "recipes" / "demo-quick.yaml", ["loop.later_rounds_lr_scale=0"])


def test_recipe_rounds_are_checked_at_load(tmp_path):
    demo = REPO / "recipes" / "demo-quick.yaml"
    loop_arm = "arms=[{name: one, select: {strategy: skill}}, {name: loop, rounds: 2, select: {strategy: skill}}]"
    recipe = load_recipe(demo, [loop_arm, "report.method=one", "report.baseline=one"])
    assert [recipe.arm_rounds(a) for a in recipe.arms] == [1, 2]
    assert recipe.one_shot == "one"
    assert load_recipe(demo).one_shot is None  # no closed-loop arm: nothing to compare
    with pytest.raises(ConfigError, match="loop.budgets sums to 100"):
        load_recipe(demo, [loop_arm, "report.baseline=one", "report.method=one", "loop.budgets=[50, 50]"])
    with pytest.raises(ConfigError, match="report.one_shot 'loop' runs more than one round"):
        load_recipe(demo, [loop_arm, "report.baseline=one", "report.method=one", "report.one_shot=loop"])
    with pytest.raises(ConfigError, match="rounds"):
        load_recipe(demo, ["rounds=0"])


def test_select_never_reselects_an_earlier_selection(tmp_path, small_pool):  # noqa: F811
    pool_path, prof = small_pool
    run_select(pool_path, tmp_path / "r1", SelectConfig(strategy="skill", budget=150, seed=0), profile_json=prof)
    second = run_select(pool_path, tmp_path / "r2", SelectConfig(strategy="skill", budget=150, seed=0,
                                                                 exclude_selections=[str(tmp_path / "r1")]),
                        profile_json=prof)
    ids1 = set(pq.read_table(tmp_path / "r1" / "selection.parquet").column("id").to_pylist())
    ids2 = set(pq.read_table(tmp_path / "r2" / "selection.parquet").column("id").to_pylist())
    assert len(ids1) == 150 == len(ids2) and not ids1 & ids2
    assert second.report["pool"]["earlier_selections"] == {"files": 1, "items": 150}
    assert second.report["pool"]["eligible"] == 250
    # the pool runs dry: only what is left, and the report says so
    third = run_select(pool_path, tmp_path / "r3", SelectConfig(strategy="random", budget=150, seed=0,
                                                                exclude_selections=[str(tmp_path / "r1" / "selection.parquet"),
                                                                                    str(tmp_path / "r2")]))
    assert third.n_selected == 100
    with pytest.raises(InputError, match="earlier selection not found"):
        run_select(pool_path, tmp_path / "r4", SelectConfig(strategy="random", budget=5,
                                                            exclude_selections=[str(tmp_path / "nope")]))


def test_cli_exclude_selection(tmp_path, small_pool):  # noqa: F811
    pool_path, prof = small_pool
    runner = CliRunner()
    a = runner.invoke(app, ["select", str(pool_path), "--out", str(tmp_path / "a"), "--profile", str(prof), "-n", "40"])
    assert a.exit_code == 0, a.output
    b = runner.invoke(app, ["select", str(pool_path), "--out", str(tmp_path / "b"), "--profile", str(prof), "-n", "40",
                            "--exclude-selection", str(tmp_path / "a")])
    assert b.exit_code == 0, b.output
    ids = [set(pq.read_table(tmp_path / d / "selection.parquet").column("id").to_pylist()) for d in "ab"]
    assert not ids[0] & ids[1] and len(ids[1]) == 40
    bad = runner.invoke(app, ["select", str(pool_path), "--out", str(tmp_path / "c"), "--exclude-selection",
                              str(tmp_path / "missing.parquet"), "--strategy", "random"])
    assert bad.exit_code == 2 and "missing.parquet" in bad.output


def test_profile_leaves_out_the_items_trained_on(tmp_path, pool):  # noqa: F811
    path, table, tree = pool
    student = ScriptedStudent({r["question"].strip(): (r["id"], r["response"]) for r in table}, set())
    sel = tmp_path / "sel"
    sel.mkdir()
    pq.write_table(pq.read_table(path).slice(0, 10), sel / "selection.parquet")
    res = run_profile(path, tmp_path / "p", _profile_cfg(exclude_selections=[str(sel)]), tree=tree, backend=student,
                      show_progress=False)
    profiled = set(pq.read_table(tmp_path / "p" / "profile.parquet").column("id").to_pylist())
    assert res.counts["items_left_out_as_trained_on"] == 8  # m5-7 and m5-8 have no gold: never profiled
    assert profiled == {f"m5-{i}" for i in range(10, 30)}


# -- end to end ------------------------------------------------------------------------
LOOP_ARGS = [
    "--set", "arms=[{name: closed-loop, rounds: 2, select: {strategy: skill}, format: {style: skill-aware}}]",
    "--set", "demo.pool_size=200", "--set", "demo.eval_per_leaf=2", "--set", "select.budget=32",
    "--set", "train.num_train_epochs=1", "--set", "loop.profile_sample=80", "--set", "jobs=1",
    "--set", "report.baseline=closed-loop", "--set", "report.method=closed-loop",
]


def _run(run_dir: Path, *, kill_when: str | None = None, timeout: float = 600) -> tuple[int, str]:
    """`skilldistill run` on the quick world with one closed-loop arm; with ``kill_when``, kill -9
    as soon as that stage is recorded in pipeline_state.json."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "skilldistill.cli", "run", str(REPO / "recipes" / "demo-quick.yaml"),
           "--run-dir", str(run_dir), *LOOP_ARGS]
    log = run_dir.with_suffix(".log")
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        t0 = time.time()
        while proc.poll() is None and time.time() - t0 < timeout:
            if kill_when and kill_when in _stages(run_dir):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            raise AssertionError(f"timed out: {log.read_text()[-3000:]}")
    return proc.returncode, log.read_text()


def _stages(run_dir: Path) -> dict:
    """The finished stages (a stage being run is recorded as {"running": ..., "clean": ...})."""
    try:
        stages = json.loads((run_dir / "pipeline_state.json").read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return {}
    return {k: v for k, v in stages.items() if "running" not in v}


R = "rounds/closed-loop/seed0"


@pytest.mark.slow
def test_two_rounds_end_to_end_resume_after_kill_between_and_inside_rounds(tmp_path):
    straight = tmp_path / "straight"
    rc, out = _run(straight)
    assert rc == 0, out[-3000:]
    stages = _stages(straight)
    expected = {f"{R}/round1/{s}" for s in ("select", "format", "train")} | {
        f"{R}/round2/{s}" for s in ("profile", "select", "format", "train")} | {"evaluate/closed-loop/seed0"}
    assert expected <= set(stages)
    ids = [set(pq.read_table(straight / R / f"round{k}" / "select" / "selection.parquet").column("id").to_pylist())
           for k in (1, 2)]
    assert len(ids[0]) == len(ids[1]) == 16 and not ids[0] & ids[1]  # never an item twice
    profiled = set(pq.read_table(straight / R / "round2" / "profile" / "profile.parquet").column("id").to_pylist())
    assert not profiled & ids[0] and len(profiled) == 80  # the trained student profiled on items it did not see
    m2 = json.loads((straight / R / "round2" / "train" / "manifest.json").read_text())
    assert m2["config"]["model"] == str((straight / R / "round1" / "train" / "final").resolve())  # continues
    summary = json.loads((straight / "report" / "summary.json").read_text())
    loop = summary["closed_loop"]["arms"]["closed-loop"]
    assert loop["rounds_done"] == [2] and loop["selected_per_round"] == [16, 16]
    assert sum(sum(row["budget"]) for row in loop["leaves"]) >= 32  # multi-skill items count under each leaf
    assert "## Closed loop" in (straight / "report" / "report.md").read_text()
    assert "closed loop closed-loop" in out

    # kill -9 between rounds, then inside round 2, then finish: nothing finished is redone
    resumed = tmp_path / "resumed"
    rc, _ = _run(resumed, kill_when=f"{R}/round1/train")
    assert rc == -signal.SIGKILL
    rc, _ = _run(resumed, kill_when=f"{R}/round2/profile")
    assert rc == -signal.SIGKILL
    done_before = dict(_stages(resumed))
    rc, out = _run(resumed)
    assert rc == 0, out[-3000:]
    for key in (f"{R}/round1/train", f"{R}/round2/profile"):
        assert f"✓ {key}: up to date" in out
        assert _stages(resumed)[key] == done_before[key]
    assert f"▶ {R}/round2/train" in out
    a = json.loads((straight / "evaluate" / "closed-loop" / "seed0" / "results.json").read_text())
    b = json.loads((resumed / "evaluate" / "closed-loop" / "seed0" / "results.json").read_text())
    numbers = ("accuracy", "per_sample_accuracy", "pass_at_n", "per_skill", "mean_completion_tokens")
    # the same numbers as the uninterrupted run (decoding names the run folder's model path)
    assert {k: a["benchmarks"]["demo_eval"][k] for k in numbers} == {k: b["benchmarks"]["demo_eval"][k] for k in numbers}
