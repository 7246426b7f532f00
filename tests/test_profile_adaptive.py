"""Adaptive profiling (profile.adaptive): the round logic on a simulated student with a known
full-pool profile, the stage on real MATH problems (a scripted student, then a real local
model through the CLI), resuming round by round, and the recipe's checks."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from skilldistill.errors import ConfigError
from skilldistill.generate import GenerationConfig
from skilldistill.llm.base import BackendConfig, Completion
from skilldistill.profile import (
    AdaptiveConfig,
    AdaptivePlan,
    ProfileConfig,
    run_profile,
    skill_stats,
)
from skilldistill.profile.adaptive import STOP_BOUND, selection_distribution, total_variation
from skilldistill.profile.simulation import adaptive_items_estimate, simulate_adaptive
from skilldistill.tree import SkillTree
from test_profile import SUBJECT_TO_TOP  # MATH subjects -> skill_mix's top level


# --------------------------------------------------------------------------------------
# the round logic, on a simulated student whose full-pool profile is known
# --------------------------------------------------------------------------------------
def _world(tree: SkillTree, n_items: int, seed: int):
    """Items on the tree's leaves (Zipf popularity), a true accuracy per leaf spread over (0.05, 0.95)."""
    rng = np.random.default_rng(seed)
    leaves = tree.leaves()
    pop = 1.0 / np.arange(1, len(leaves) + 1) ** 1.1
    pop = rng.permutation(pop / pop.sum())
    truth = rng.uniform(0.05, 0.95, size=len(leaves))
    items, rows = [], []
    for i in range(n_items):
        j = int(rng.choice(len(leaves), p=pop))
        c = int(rng.random() < truth[j])
        items.append({"id": f"i{i}", "skills": [list(leaves[j])]})
        rows.append({"id": f"i{i}", "skills": [list(leaves[j])], "n_samples": 1, "n_correct": c})
    return items, rows


def _distribution(rows, tree, keys):
    nodes, overall, _ = skill_stats(rows, tree, prior_strength=4.0)
    by = {tuple(n["path"]): n for n in nodes}
    return selection_distribution(np.array([by[k]["smoothed_accuracy"] for k in keys]), 1.0, 1000.0)


def test_adaptive_rounds_reach_the_bound_on_a_fraction_of_the_pool(skill_mix_path):
    tree = SkillTree.load(skill_mix_path)
    met, shares = 0, []
    for seed in range(3):
        items, rows = _world(tree, 20_000, seed)
        keys = sorted({tuple(c) for it in items for c in it["skills"]})
        full = _distribution(rows, tree, keys)
        plan = AdaptivePlan(items, AdaptiveConfig(tv_bound=0.05), n_samples=1, prior_strength=4.0, tree=tree, seed=seed)
        profiled = simulate_adaptive(plan, rows)
        assert plan.stop_reason == STOP_BOUND and plan.rounds[-1].tv_quantile <= 0.05
        met += float(total_variation(_distribution(profiled, tree, keys), full)) <= 0.05
        shares.append(len(profiled) / len(items))
    assert met >= 2, met  # the bound holds at 90% by the posterior: on this world, on at least 2 of 3 pools
    assert max(shares) < 0.5, shares  # and at well under half the pool's generations


def test_rounds_go_where_the_selection_is_uncertain(skill_mix_path):
    """A leaf near accuracy 0 moves the selection most: after the first round it gets more items
    than a leaf near 1 of the same size."""
    tree = SkillTree.load(skill_mix_path)
    hard, easy, middle = tree.leaves()[0], tree.leaves()[1], tree.leaves()[2]
    items, rows = [], []
    rng = np.random.default_rng(0)
    for leaf, p in ((hard, 0.08), (easy, 0.92), (middle, 0.5)):
        for i in range(400):
            item_id = f"{leaf[-1]}-{i}"
            items.append({"id": item_id, "skills": [list(leaf)]})
            rows.append({"id": item_id, "skills": [list(leaf)], "n_samples": 1, "n_correct": int(rng.random() < p)})
    plan = AdaptivePlan(items, AdaptiveConfig(tv_bound=0.01, round_items=40), n_samples=1, prior_strength=4.0,
                        tree=tree, seed=0)
    plan.first_round()
    a = plan.assess([rows[i] for i in np.flatnonzero(plan.profiled)], np.random.default_rng(0))
    assert a.leaf_error[0] > a.leaf_error[1]
    new = plan.next_round(a)
    took = [sum(1 for i in new if items[i]["skills"][0] == list(leaf)) for leaf in (hard, easy)]
    assert took[0] > took[1] and sum(took) <= 40, took


def test_the_rounds_are_a_function_of_the_seed_and_the_grades(skill_mix_path):
    tree = SkillTree.load(skill_mix_path)
    items, rows = _world(tree, 3000, 7)
    runs = []
    for seed in (1, 1, 2):
        plan = AdaptivePlan(items, AdaptiveConfig(tv_bound=0.08), n_samples=1, prior_strength=4.0, tree=tree,
                            seed=seed)
        profiled = simulate_adaptive(plan, rows)
        runs.append(([r["id"] for r in profiled], [r.to_json() for r in plan.rounds]))
    assert runs[0] == runs[1] and runs[0][0] != runs[2][0]


def test_raw_accuracy_follows_the_paper_rule(skill_mix_path):
    tree = SkillTree.load(skill_mix_path)
    items, rows = _world(tree, 2000, 3)
    plan = AdaptivePlan(items, AdaptiveConfig(accuracy="raw"), n_samples=1, prior_strength=4.0, tree=tree, seed=0)
    plan.first_round()
    profiled = [rows[i] for i in np.flatnonzero(plan.profiled)]
    a = plan.assess(profiled, np.random.default_rng(0))
    nodes, _, _ = skill_stats(profiled, tree, prior_strength=4.0)
    raw = {tuple(n["path"]): n["accuracy"] for n in nodes}
    expect = selection_distribution(np.array([raw[leaf] for leaf in plan.leaves]), 1.0, 1000.0)
    assert np.allclose(a.pi, expect)


def test_the_estimate_plan_uses_is_the_simulated_run(skill_mix_path):
    tree = SkillTree.load(skill_mix_path)
    items, stop = adaptive_items_estimate(tree, 20_000, 1, AdaptiveConfig(tv_bound=0.05), 4.0)
    assert stop == STOP_BOUND and 118 * 4 < items < 20_000 // 2
    assert adaptive_items_estimate(tree, 20_000, 1, AdaptiveConfig(tv_bound=0.05), 4.0) == (items, stop)
    # a looser bound costs fewer items
    assert adaptive_items_estimate(tree, 20_000, 1, AdaptiveConfig(tv_bound=0.1), 4.0)[0] < items


@pytest.mark.parametrize("field, value", [("tv_bound", 0), ("tv_bound", 1.5), ("confidence", 0.3),
                                          ("posterior_draws", 5), ("initial_per_leaf", 0), ("w_max", float("inf"))])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        AdaptiveConfig(**{field: value})


# --------------------------------------------------------------------------------------
# the stage, on real MATH problems
# --------------------------------------------------------------------------------------


@pytest.fixture()
def math_pool(tmp_path, shared_data, skill_mix_path):
    """240 MATH test problems, each on one leaf of the paper's tree under its subject (two leaves per subject)."""
    tree = SkillTree.load(skill_mix_path)
    by_top: dict[str, list[tuple[str, ...]]] = {}
    for c in tree.leaves():
        by_top.setdefault(c[0], []).append(c)
    rows = [json.loads(line) for line in (shared_data / "corpora" / "math_test" / "test.jsonl").open()][:240]
    table = []
    for i, r in enumerate(rows):
        leaf = by_top[SUBJECT_TO_TOP[r["type"]]][i % 2]
        table.append({"id": f"m{i}", "question": r["problem"], "response": r["solution"], "answer": r["solution"],
                      "skills": [list(leaf)]})
    path = tmp_path / "skills.parquet"
    pq.write_table(pa.Table.from_pylist(table), path)
    return path, table, tree


class GoldForSomeLeaves:
    """A scripted student (unit tests only): right on the items of chosen leaves, a wrong number elsewhere."""

    def __init__(self, table, right_leaves):
        self.by_question = {r["question"].strip(): r for r in table}
        self.right = {tuple(leaf) for leaf in right_leaves}
        self.asked: list[str] = []

    def chat(self, conversations, params, *, on_result=None, progress=None, seeds=None):
        out = []
        for i, conv in enumerate(conversations):
            row = self.by_question[conv[-1]["content"].split("\n\nPlease reason")[0].strip()]
            self.asked.append(row["id"])
            text = row["response"] if tuple(row["skills"][0]) in self.right else "The answer is \\boxed{123456789}."
            comps = [Completion(text, "stop", 10, 20) for _ in range(params.n)]
            out.append(comps)
            if on_result:
                on_result(i, comps)
        return out

    def close(self):
        pass


def _cfg(**adaptive):
    return ProfileConfig(generation=GenerationConfig(backend=BackendConfig(kind="transformers", model="scripted"), n=1,
                                                     max_new_tokens=64),
                         adaptive=AdaptiveConfig(**adaptive), grading_processes=1)


def test_the_stage_profiles_in_rounds_and_records_why_it_stopped(tmp_path, math_pool):
    path, table, tree = math_pool
    leaves = sorted({tuple(r["skills"][0]) for r in table})
    student = GoldForSomeLeaves(table, leaves[::2])
    out = tmp_path / "profile"
    res = run_profile(path, out, _cfg(tv_bound=0.1, initial_per_leaf=3, round_items=12), tree=tree, backend=student,
                      show_progress=False)
    doc = json.loads((out / "adaptive.json").read_text())
    assert doc["stop_reason"] in ("bound met", "every item profiled") and doc["bound_met"]
    assert len(doc["rounds"]) >= 2 and doc["rounds"][0]["items_added"] == 3 * len(leaves)
    assert doc["items_profiled"] == res.counts["items_profiled"] == len(set(student.asked)) == len(student.asked)
    assert doc["items_profiled"] < len(table)  # part of the pool
    per_leaf = {leaf["leaf"]: leaf["items_profiled"] for leaf in doc["leaves"]}
    assert sum(per_leaf.values()) == doc["items_profiled"] and min(per_leaf.values()) >= 3
    assert all(leaf["stopped_because"] for leaf in doc["leaves"])
    # the profile is what selection reads: the right leaves at 1 raw, the others at 0
    sp = json.loads((out / "skill_profile.json").read_text())
    raw = {tuple(n["path"]): n["accuracy"] for n in sp["nodes"] if n["is_leaf"] and n["graded"]}
    assert {raw[leaf] for leaf in leaves[::2]} == {1.0} and {raw[leaf] for leaf in leaves[1::2]} == {0.0}
    assert sp["sample"]["adaptive"]["stop_reason"] == doc["stop_reason"] and sp["sample"]["n_pool"] == len(table)
    gens = pq.read_table(out / "generations.parquet")
    assert gens.num_rows == doc["items_profiled"]
    # a finished run is not redone; a run whose manifest is gone replays its rounds from the log
    before = (out / "generations.jsonl").read_bytes()
    again = run_profile(path, out, _cfg(tv_bound=0.1, initial_per_leaf=3, round_items=12), tree=tree,
                        backend=student, show_progress=False)
    assert again.skipped and len(student.asked) == doc["items_profiled"]
    (out / "manifest.json").unlink()
    run_profile(path, out, _cfg(tv_bound=0.1, initial_per_leaf=3, round_items=12), tree=tree, backend=student,
                show_progress=False)
    assert len(student.asked) == doc["items_profiled"]  # nothing asked twice
    assert (out / "generations.jsonl").read_bytes() == before
    assert json.loads((out / "adaptive.json").read_text()) == doc


def test_a_run_killed_between_rounds_resumes_the_same_rounds(tmp_path, math_pool):
    path, table, tree = math_pool
    leaves = sorted({tuple(r["skills"][0]) for r in table})
    cfg = _cfg(tv_bound=0.1, initial_per_leaf=3, round_items=12)
    whole = GoldForSomeLeaves(table, leaves[::3])
    run_profile(path, tmp_path / "whole", cfg, tree=tree, backend=whole, show_progress=False)

    class DiesInRoundThree(GoldForSomeLeaves):
        calls = 0

        def chat(self, *a, **kw):
            DiesInRoundThree.calls += 1
            if DiesInRoundThree.calls == 3:
                raise KeyboardInterrupt  # as a kill between rounds two and three
            return super().chat(*a, **kw)

    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_profile(path, out, cfg, tree=tree, backend=DiesInRoundThree(table, leaves[::3]), show_progress=False)
    assert len(json.loads((out / "adaptive.json").read_text())["rounds"]) == 2 and not (out / "manifest.json").exists()
    resumed = GoldForSomeLeaves(table, leaves[::3])
    run_profile(path, out, cfg, tree=tree, backend=resumed, show_progress=False)
    done_before = set(pq.read_table(out / "generations.parquet").column("id").to_pylist()) - set(resumed.asked)
    assert len(done_before) > 0 and not set(resumed.asked) & done_before  # rounds one and two not asked again
    a, b = (json.loads((d / "adaptive.json").read_text()) for d in (tmp_path / "whole", out))
    assert a == b


def test_sample_and_adaptive_together_are_refused():
    with pytest.raises(ValidationError, match="sample and adaptive"):
        ProfileConfig(generation=GenerationConfig(backend=BackendConfig(kind="transformers", model="m")), sample=10,
                      adaptive=AdaptiveConfig())


def test_adaptive_unset_leaves_the_profile_fingerprint_alone():
    cfg = ProfileConfig(generation=GenerationConfig(backend=BackendConfig(kind="transformers", model="m")))
    assert "adaptive" not in cfg.fingerprint_dict()
    assert cfg.fingerprint_dict() == {k: v for k, v in cfg.model_dump(mode="json").items() if k != "adaptive"}
    with_adaptive = cfg.model_copy(update={"adaptive": AdaptiveConfig()})
    assert with_adaptive.fingerprint_dict()["adaptive"]["tv_bound"] == 0.05


# --------------------------------------------------------------------------------------
# the recipe and the CLI
# --------------------------------------------------------------------------------------
def test_the_recipe_aims_adaptive_profiling_at_its_selection(tmp_path):
    from skilldistill.orchestration.recipe import load_recipe

    r = load_recipe("recipes/demo-quick.yaml", ["profile.adaptive={tv_bound: 0.04}", "select.temperature=2",
                                                "select.accuracy=raw"])
    assert (r.profile.adaptive.tv_bound, r.profile.adaptive.temperature, r.profile.adaptive.accuracy) == (0.04, 2, "raw")
    with pytest.raises(ConfigError, match=re.escape("profile.adaptive: arm 'skill-skillaware' sets "
                                                    "select.correct_portion")):
        load_recipe("recipes/demo-quick.yaml", ["profile.adaptive={}", "arms.1.select.correct_portion=0.2"])


@pytest.mark.slow
def test_cli_profiles_adaptively_with_a_real_local_model(tmp_path, math_pool, tiny_chat_model_dir):
    from skilldistill.cli import app

    path, table, _ = math_pool
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "profile", str(path), "--out", str(out), "--model", str(tiny_chat_model_dir), "--backend", "transformers",
        "--device", "cpu", "--max-new-tokens", "4", "--adaptive", "--tv-bound", "0.2", "--initial-per-leaf", "2",
        "--round-items", "8", "--grading-processes", "1",
    ])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "adaptive.json").read_text())
    assert doc["tv_bound"] == 0.2 and doc["rounds"] and doc["items_profiled"] < len(table)
    assert "adaptive profiling:" in result.output and doc["stop_reason"] in result.output
    assert pq.read_table(out / "generations.parquet").num_rows == doc["items_profiled"]


def test_plan_shows_profiling_both_ways_and_the_efficient_recipe_meets_its_target(tmp_path):
    from skilldistill.orchestration.plan import plan_recipe
    from skilldistill.orchestration.recipe import load_recipe

    def totals(name, overrides=()):
        recipe = load_recipe(f"recipes/{name}.yaml", list(overrides))
        settings = recipe.plan.model_copy(update={"generation_tokens_per_s": 2500, "training_tokens_per_s": 3000})
        return plan_recipe(recipe, run_dir=tmp_path / name, settings=settings, sample=False)

    import yaml

    # the efficient recipe runs the method's four arms, without the paper's baseline rows: compare like with like
    with open("recipes/qwen3-4b-openmathreasoning.yaml", encoding="utf-8") as f:
        four = yaml.safe_load(f)["arms"][:4]
    efficient_arms = load_recipe("recipes/qwen3-4b-openmathreasoning-efficient.yaml").arms
    assert [a.model_dump(exclude_defaults=True) for a in efficient_arms] == four
    efficient = totals("qwen3-4b-openmathreasoning-efficient")
    faithful = totals("qwen3-4b-openmathreasoning", ["arms=" + json.dumps(four)])
    f, e = faithful.totals, efficient.totals
    # the faithful recipe profiles the whole pool, and plan says what adaptive would cost
    (prof,) = [s for s in faithful.stages if s.kind == "profile"]
    assert prof.items == 100_000 and prof.profiling_alternative["items"] < 10_000
    assert f["gpu_hours_other_way"] < f["gpu_hours"] and f["profile_gpu_hours"] > 0.6 * f["gpu_hours"]
    # the efficient one profiles adaptively: the same estimate, and at most 0.4x the faithful recipe's GPU-hours
    (eprof,) = [s for s in efficient.stages if s.kind == "profile"]
    assert eprof.items == prof.profiling_alternative["items"]
    assert eprof.profiling_alternative["items"] == 100_000
    assert e["gpu_hours"] <= 0.4 * f["gpu_hours"], (e["gpu_hours"], f["gpu_hours"])
    assert e["gpu_hours"] == pytest.approx(f["gpu_hours_other_way"])
    assert any("simulated on a pool of the same size" in a for a in efficient.assumptions)
