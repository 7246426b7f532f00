"""Recipes and `skilldistill run`: validation, overrides, skipping finished stages, reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from skilldistill.demo.attribution_score import attribution_accuracy
from skilldistill.errors import ConfigError
from skilldistill.orchestration.arm_runs import run_arm
from skilldistill.orchestration.pipeline import Pipeline
from skilldistill.orchestration.recipe import apply_overrides, load_recipe
from skilldistill.orchestration.stage_runner import UpstreamFingerprints

REPO = Path(__file__).resolve().parents[1]
RECIPES = [REPO / "recipes" / n for n in ("demo.yaml", "demo-quick.yaml", "qwen3-4b-openmathreasoning.yaml", "qwen3-8b-openmathreasoning.yaml")]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    r = load_recipe(path)
    assert len(r.arms) >= 2 and r.baseline in [a.name for a in r.arms]
    for arm in r.arms:
        for seed in r.seeds:
            assert r.arm_select(arm, seed).seed == seed


def test_paper_recipe_settings():
    r = load_recipe(REPO / "recipes" / "qwen3-4b-openmathreasoning.yaml")
    assert r.select.budget == 1000 and r.select.w_max == 1000 and r.select.temperature == 1.0
    assert (r.select.accuracy, r.select.unprofiled_leaves) == ("raw", "exclude")  # the paper's rule exactly
    assert r.annotate.temperature == 0.3 and r.annotate.llm.model == "Qwen/Qwen2.5-32B-Instruct"
    assert r.profile.generation.temperature == 0.6 and r.profile.generation.max_new_tokens == 8192
    assert r.profile.generation.backend.model == "Qwen/Qwen3-4B"
    train = r.arm_train(r.arms[0], 0, "Qwen/Qwen3-4B")
    assert (train.learning_rate, train.num_train_epochs, train.max_length) == (1e-5, 5, 8192)
    gen = r.generation_for_eval("runs/x/final")
    assert gen.max_new_tokens == 16384 and gen.backend.model == "runs/x/final" and gen.backend.kind == "vllm"
    ev = r.evaluate_config()
    assert ev.benchmarks == ["aime24", "aime25", "amc23", "math_l5", "math500", "olympiadbench"]
    assert [ev.n_for(b) for b in ev.benchmarks] == [8, 8, 8, 8, 1, 1]  # the authors' samples per benchmark
    assert {(a.select["strategy"], a.format["style"]) for a in r.arms} == {
        ("random", "plain"), ("random", "skill-aware"), ("skill", "plain"), ("skill", "skill-aware"),
        ("difficulty", "plain"), ("all", "plain")}  # with the paper's difficulty and full-pool baselines
    full = r.arm("full-pool")
    assert r.arm_train(full, 0, "Qwen/Qwen3-4B").num_train_epochs == 1  # the paper's single epoch
    # the authors' evaluation (eval_checkpoints.py): instruction first, "Question: ...",
    # temperature 0.6, top_p unset, 16,384 new tokens; the same user turn in training
    authors = "{instruction}\n\nQuestion: {question}"
    assert gen.prompt_template == authors and gen.temperature == 0.6 and gen.top_p == 1.0
    assert gen.user_prompt("What is 1+1?").endswith("\\boxed{}.\n\nQuestion: What is 1+1?")
    assert r.format.prompt_template == authors
    # every arm trains on its full budget; checkpoints go once final/ is written
    assert r.select.max_tokens == 8192 and train.delete_checkpoints
    # the accelerate config is found beside the recipe, wherever the run starts
    assert r.launcher.accelerate_config == str(REPO / "recipes" / "accelerate" / "zero3.yaml")
    r8 = load_recipe(REPO / "recipes" / "qwen3-8b-openmathreasoning.yaml")
    assert (r8.student.data_parallel_size, r8.student.tensor_parallel_size) == (8, 1)


def test_select_measures_lengths_in_each_arms_own_format(tmp_path):
    r = load_recipe(REPO / "recipes" / "qwen3-4b-openmathreasoning.yaml")
    pipe = Pipeline(r, run_dir=tmp_path)
    for arm in r.arms:
        sel = r.arm_select(arm, 0)
        assert sel.max_tokens == 8192
    seen = {}

    def fake_step(key, kind, config, upstream, fn, done_marker="manifest.json"):
        seen[key] = config
        raise StopIteration

    pipe.step = fake_step
    for arm in r.arms:
        with pytest.raises(StopIteration):
            run_arm(pipe, arm, 0, UpstreamFingerprints(annotate="a", profile="p", student="s", demo=None), None)
    styles = {k.split("/")[1]: v["example"]["style"] for k, v in seen.items()}
    assert styles == {"random-plain": "plain", "random-skillaware": "skill-aware", "skill-plain": "plain",
                      "skill-skillaware": "skill-aware", "difficulty-plain": "plain", "full-pool": "plain"}
    assert all(v["tokenizer"] == "Qwen/Qwen3-4B" for v in seen.values())


def test_unknown_keys_and_bad_values_are_named(tmp_path):
    data = yaml.safe_load((REPO / "recipes" / "demo-quick.yaml").read_text())
    data["select"]["budgett"] = 5
    data["train"]["learning_rate"] = -1
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    assert "select.budgett: unknown key" in str(e.value) and "train.learning_rate" in str(e.value)
    assert str(p) in str(e.value)


def test_overrides():
    data = {"a": {"b": 1}, "arms": [{"name": "x", "select": {}}]}
    out = apply_overrides(data, ["a.b=2", "arms.0.select.budget=64", "a.c=[1, 2]"])
    assert out == {"a": {"b": 2, "c": [1, 2]}, "arms": [{"name": "x", "select": {"budget": 64}}]}
    assert data["a"]["b"] == 1  # not mutated
    with pytest.raises(ConfigError):
        apply_overrides(data, ["arms.3.name=y"])
    with pytest.raises(ConfigError):
        apply_overrides(data, ["novalue"])
    grown = apply_overrides(data, ["arms.+={name: y, rounds: 2}", "arms.1.select={strategy: skill}"])
    assert grown["arms"] == [{"name": "x", "select": {}}, {"name": "y", "rounds": 2, "select": {"strategy": "skill"}}]
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides(data, ["arms.+.name=y"])  # "+" appends only as the last key


def test_demo_closed_loop_flag_adds_the_arm_and_its_comparison():
    from skilldistill.cli.demo import demo_recipe

    plain = demo_recipe(False, [])
    assert [a.name for a in plain.arms] == ["random-plain", "random-skillaware", "skill-plain", "skill-skillaware"]
    assert plain.one_shot is None
    loop = demo_recipe(False, ["select.budget=128"], closed_loop=True)
    assert [a.name for a in loop.arms][-1] == "closed-loop" and loop.arm_rounds(loop.arms[-1]) == 2
    assert loop.one_shot == "skill-skillaware" and loop.loop.profile_sample == 600
    # the levers the development split favoured against forgetting (bench/closed_loop_forgetting.py)
    assert loop.loop.replay and loop.loop.later_rounds_lr_scale == 0.3
    assert loop.select.budget == 128  # the user's --set still applies
    # the four arms' stages keep their fingerprints: runs/demo gains the arm without retraining
    assert [a.model_dump() for a in loop.arms[:4]] == [a.model_dump() for a in plain.arms]
    with pytest.raises(ConfigError, match="--closed-loop runs with the full demo only: it compares"):
        demo_recipe(True, [], closed_loop=True)


def test_from_train_reruns_the_later_rounds_profiles_of_a_closed_loop(tmp_path):
    from skilldistill.cli.demo import demo_recipe

    recipe = demo_recipe(False, [], closed_loop=True)
    for force_from, forced in (("select", True), ("train", True), ("evaluate", False)):
        planned = {s["key"]: s for s in Pipeline(recipe, run_dir=tmp_path, force_from=force_from).plan()}
        round2 = planned["rounds/closed-loop/seed0/round2/profile"]
        assert (round2["reason"] == "forced by --from") is forced, force_from
        assert planned["profile"]["reason"] != "forced by --from"  # the base student's profile stays


def test_new_train_fields_at_their_default_leave_fingerprints_alone():
    from skilldistill.train import TrainConfig

    assert "train_sampling_strategy" not in TrainConfig().fingerprint_dict()
    assert TrainConfig(train_sampling_strategy="batch_rebalance").fingerprint_dict()["train_sampling_strategy"] == \
        "batch_rebalance"
    # ddp_timeout changes how long a stalled rank is waited for, never what is learnt: raising it
    # after a timeout must resume the same checkpoints, so it is never fingerprinted.
    assert TrainConfig(ddp_timeout=600).fingerprint_dict() == TrainConfig().fingerprint_dict()
    assert set(TrainConfig().model_dump()) - set(TrainConfig().fingerprint_dict()) == {"train_sampling_strategy",
                                                                                      "ddp_timeout"}


def test_attribution_accuracy(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({
        "skills": [[["A", "a"]], [["A", "a"], ["B", "b"]], [["B", "c"]], []],
        "true_skills": [[["A", "a"]], [["A", "a"]], [["A", "b"]], [["B", "b"]]],
    })
    pq.write_table(t, tmp_path / "s.parquet")
    acc = attribution_accuracy(tmp_path / "s.parquet")
    assert acc["items"] == 4
    assert acc["leaf_exact_set"] == pytest.approx(1 / 4)
    assert acc["leaf_precision"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert acc["leaf_recall"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert acc["top_level_exact_set"] == pytest.approx(1 / 4)
    assert acc["top_level_majority_rate"] == pytest.approx(3 / 4) and acc["top_level_random_rate"] == 0.5


def test_a_stage_killed_before_its_clean_restart_wiped_still_restarts_clean(tmp_path):
    """A stage rerun because its settings changed discards its old output (clean). If it dies
    before doing so, the rerun must still discard it: generation logs are keyed by settings
    a retrained model at the same path matches, so resuming would report the old model."""
    pipe = Pipeline(load_recipe(REPO / "recipes" / "demo-quick.yaml"), run_dir=tmp_path)
    calls: list[bool] = []

    def finish(clean: bool) -> None:
        calls.append(clean)
        (tmp_path / "evaluate" / "x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "evaluate" / "x" / "manifest.json").write_text("{}")

    def die(clean: bool) -> None:
        calls.append(clean)
        raise KeyboardInterrupt  # killed before the wipe

    step = lambda cfg, fn: pipe.step("evaluate/x", "evaluate", cfg, [], fn)  # noqa: E731
    step({"lr": 1}, finish)
    with pytest.raises(KeyboardInterrupt):
        step({"lr": 2}, die)  # settings changed: a clean restart, interrupted
    assert pipe.state["stages"]["evaluate/x"]["clean"] is True
    planned = Pipeline(pipe.recipe, run_dir=tmp_path)
    planned.dry_run = True
    planned.step("evaluate/x", "evaluate", {"lr": 2}, [], finish)
    assert planned.planned[0]["status"] == "to run"
    assert planned.planned[0]["reason"] == "interrupted before it finished: restarts clean"
    step({"lr": 2}, finish)
    assert calls == [False, True, True]  # the rerun still starts clean
    step({"lr": 2}, finish)
    assert calls == [False, True, True]  # and is then up to date
    # an interrupted attempt that resumed resumes again, unless the settings changed since
    (tmp_path / "evaluate" / "x" / "manifest.json").unlink()  # done-marker gone: a resume
    with pytest.raises(KeyboardInterrupt):
        step({"lr": 2}, die)
    assert calls[-1] is False and pipe.state["stages"]["evaluate/x"] == {
        "running": pipe.state["stages"]["evaluate/x"]["running"], "clean": False}
    fresh = Pipeline(pipe.recipe, run_dir=tmp_path)
    fresh.step("evaluate/x", "evaluate", {"lr": 3}, [], finish)
    assert calls[-1] is True
    fresh.step("evaluate/x", "evaluate", {"lr": 3}, [], finish)
    assert len(calls) == 5  # up to date


TINY = [
    "demo.pool_size=60", "demo.eval_per_leaf=1",
    "demo.student.base_examples=48", "demo.student.epochs=1", "demo.student.hidden_size=32",
    "demo.student.num_layers=1", "demo.student.intermediate_size=64", "demo.student.tokenizer_texts=200",
    "demo.student.vocab_size=320", "demo.student.batch_size=16",
    "profile.generation.max_new_tokens=24", "select.budget=8", "train.num_train_epochs=1",
]


@pytest.mark.slow
def test_pipeline_runs_skips_and_reruns_downstream_only(tmp_path, monkeypatch):
    import skilldistill.orchestration.arm_pool as arm_pool

    pools: list[int] = []  # the worker processes each run started (jobs: 2 in demo-quick)

    class CountedPool(arm_pool.ArmPool):
        def __init__(self, jobs: int, **kw):
            pools.append(jobs)
            super().__init__(jobs, **kw)

    monkeypatch.setattr(arm_pool, "ArmPool", CountedPool)
    recipe = load_recipe(REPO / "recipes" / "demo-quick.yaml", TINY)
    run_dir = tmp_path / "run"
    first = Pipeline(recipe, run_dir=run_dir, show_progress=False)
    first.run()
    stages = {"corpus", "demo", "annotate", "profile", "evaluate/base"} | {
        f"{s}/{a}/seed0" for s in ("select", "format", "train", "evaluate") for a in ("random-plain", "skill-skillaware")}
    assert set(first.ran) == stages
    assert (run_dir / "report" / "report.html").exists()
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert set(summary["benchmarks"]["arms"]) == {"base", "random-plain", "skill-skillaware"}
    assert (run_dir / "annotate" / "attribution_accuracy.json").exists()
    unreadable = [str(f.relative_to(run_dir)) for f in run_dir.rglob("*") if f.is_file() and (f.stat().st_mode & 0o044) != 0o044]
    assert unreadable == []  # every artifact 0644 like any file a user writes (atomic writes start 0600)

    assert pools == [2]
    again = Pipeline(recipe, run_dir=run_dir, show_progress=False)
    again.run()
    assert again.ran == []  # everything up to date
    assert pools == [2]  # and no worker was started for it

    changed = load_recipe(REPO / "recipes" / "demo-quick.yaml", [*TINY, "arms.1.select.budget=10"])
    third = Pipeline(changed, run_dir=run_dir, show_progress=False)
    third.run()
    assert set(third.ran) == {f"{s}/skill-skillaware/seed0" for s in ("select", "format", "train", "evaluate")}
    assert pools == [2]  # one arm run to do: in this process
    import pyarrow.parquet as pq

    assert pq.read_table(run_dir / "select" / "skill-skillaware" / "seed0" / "selection.parquet").num_rows == 10
    assert pq.read_table(run_dir / "select" / "random-plain" / "seed0" / "selection.parquet").num_rows == 8

    forced = Pipeline(changed, run_dir=run_dir, force_from="evaluate", show_progress=False)
    forced.run()
    assert set(forced.ran) == {"evaluate/base", "evaluate/random-plain/seed0", "evaluate/skill-skillaware/seed0"}
    assert pools == [2, 2]  # --from evaluate: both arm runs to do, in workers
