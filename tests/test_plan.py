"""`skilldistill plan`: the stages a run would go through, their status and estimated cost;
counts checked against what the stages then do (the done-run case is in test_demo_cli)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from skilldistill.cli import app
from skilldistill.orchestration.plan import plan_recipe
from skilldistill.orchestration.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).parent))
from openai_stub import OpenAIStub, pick_listed_skills  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "recipes" / "demo-quick.yaml"


def test_plan_of_a_fresh_demo_run(tmp_path):
    plan = plan_recipe(load_recipe(QUICK), run_dir=tmp_path / "run")
    by = {s.key: s for s in plan.stages}
    assert list(by) == ["corpus", "demo", "annotate", "profile", "evaluate/base",
                        *[f"{k}/{a}/seed0" for a in ("random-plain", "skill-skillaware")
                          for k in ("select", "format", "train", "evaluate")]]
    assert {s.status for s in plan.stages} == {"to run"}
    assert by["corpus"].items == 600 and by["annotate"].items == 600 and by["annotate"].llm_calls == 0
    assert by["profile"].items == 600 and by["profile"].generated_tokens == 600 * 120  # the cap: nothing measured yet
    assert by["evaluate/base"].items == 16 * 8 and by["evaluate/base"].generated_tokens == 128 * 120
    train = by["train/skill-skillaware/seed0"]
    assert train.items == 256 and train.training_tokens > 256 * 5 * 20
    assert plan.totals["gpu_hours"] is None and any("throughputs" in a for a in plan.assumptions)
    assert not (tmp_path / "run").exists()  # a plan writes nothing

    rounds = plan_recipe(load_recipe(QUICK, [
        "arms=[{name: one, select: {strategy: skill}}, {name: loop, rounds: 2, select: {strategy: skill}}]",
        "report.baseline=one", "report.method=one", "loop.profile_sample=100"]),
        run_dir=tmp_path / "run2", settings=None)
    by = {s.key: s for s in rounds.stages}
    r = "rounds/loop/seed0"
    assert [k for k in by if k.startswith(r)] == [f"{r}/round1/{s}" for s in ("select", "format", "train")] + [
        f"{r}/round2/{s}" for s in ("profile", "select", "format", "train")]
    assert by[f"{r}/round1/select"].items == 128 and by[f"{r}/round2/train"].items == 128
    assert by[f"{r}/round2/profile"].items == 100


def test_plan_measures_llm_calls_on_a_sample_and_the_run_agrees(tmp_path):
    with OpenAIStub(responder=pick_listed_skills) as stub:
        sets = ["annotate.backend=openai", "demo.pool_size=200",
                f"annotate.llm={{kind: openai, model: stub-model, base_urls: ['{stub.base_url}'], api_key: x, "
                "max_concurrency: 16}"]
        recipe = load_recipe(QUICK, sets)
        res = CliRunner().invoke(app, ["plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--json",
                                       "--sample-items", "50", "--gen-tokens-per-s", "1000",
                                       "--train-tokens-per-s", "5000", *[x for s in sets for x in ("--set", s)]])
        assert res.exit_code == 0, res.output
        plan = json.loads(res.stdout)
        sampled = len(stub.requests)
        assert 50 <= sampled <= 50 * 8  # the sample's calls, nothing more
        annotate = next(s for s in plan["stages"] if s["key"] == "annotate")
        assert "measured on a sample of 50 items" in " ".join(annotate["notes"])
        assert plan["totals"]["gpu_hours"] > 0 and annotate["gpu_hours"] > 0

        # the real stage on the whole pool: the estimate holds within the sample's error
        from skilldistill.attribution import run_annotate
        from skilldistill.demo.pool import demo_pool
        from skilldistill.tree import SkillTree

        corpus = tmp_path / "corpus.parquet"
        pq.write_table(demo_pool(recipe.demo), corpus)
        summary = run_annotate(corpus, SkillTree.resolve("demo"), tmp_path / "annotate", recipe.annotate,
                               show_progress=False).summary
    assert abs(annotate["llm_calls"] - summary["calls_total"]) <= 0.15 * summary["calls_total"]

    # with --no-sample nothing is sent: the tree's shape (demo tree: 2 inner levels)
    with OpenAIStub(responder=pick_listed_skills) as stub:
        sets[2] = (f"annotate.llm={{kind: openai, model: stub-model, base_urls: ['{stub.base_url}'], api_key: x}}")
        res = CliRunner().invoke(app, ["plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--no-sample", "--json",
                                       *[x for s in sets for x in ("--set", s)]])
        assert res.exit_code == 0, res.output
        assert stub.requests == []
    annotate = next(s for s in json.loads(res.stdout)["stages"] if s["key"] == "annotate")
    assert annotate["llm_calls"] == 2 * 200 and "tree's shape" in " ".join(annotate["notes"])


def test_plan_of_the_paper_recipe_offline(tmp_path):
    """The paper's setup, planned on a machine with no GPU and no hub: nothing loads, nothing is
    downloaded; counts from the recipe, the registry's benchmark sizes and the token caps."""
    from skilldistill.evaluate import BENCHMARKS
    from skilldistill.tree import SkillTree

    recipe = load_recipe(REPO / "recipes" / "qwen3-4b-openmathreasoning.yaml")
    plan = plan_recipe(recipe, run_dir=tmp_path / "run", sample=False,
                       settings=recipe.plan.model_copy(update={"generation_tokens_per_s": 2500.0,
                                                               "training_tokens_per_s": 3000.0}))
    by = {s.key: s for s in plan.stages}
    assert len(by) == 3 + 6 * 4 + 1 and {s.status for s in plan.stages} == {"to run"}  # 6 arms: 4 + 2 baselines
    leaves = SkillTree.resolve("math").leaves()
    per_item = sum(len(c) for c in leaves) / len(leaves)  # one call per inner node on the way
    assert by["annotate"].llm_calls == pytest.approx(100_000 * per_item)
    gen = recipe.profile.generation
    assert by["profile"].items == 100_000 and by["profile"].generated_tokens == 100_000 * gen.n * 8192
    n = {"aime24": 8, "aime25": 8, "amc23": 8, "math_l5": 8, "math500": 1, "olympiadbench": 1}
    sizes = {"aime24": 30, "aime25": 30, "amc23": 40, "math_l5": 134, "math500": 500, "olympiadbench": 581}
    assert set(n) == set(recipe.evaluate.benchmarks) and set(sizes) <= set(BENCHMARKS)
    ev = by["evaluate/skill-skillaware/seed0"]
    assert ev.items == sum(sizes.values()) and ev.generated_tokens == sum(sizes[b] * n[b] for b in n) * 16384
    tr = by["train/skill-skillaware/seed0"]
    assert tr.items == 1000 and tr.training_tokens == 1000 * 5 * 8192  # max_length: an upper bound, stated
    assert any("upper bound" in note for note in tr.notes)
    assert tr.gpu_hours == pytest.approx(1000 * 5 * 8192 / 3000 / 3600)
    full = by["train/full-pool/seed0"]  # the whole pool, the paper's single epoch
    assert full.items == 100_000 and full.training_tokens == 100_000 * 1 * 8192
    assert plan.totals["gpu_hours"] == pytest.approx(sum(s.gpu_hours for s in plan.stages if s.gpu_hours))


def test_plan_counts_only_the_sample_for_the_distilled_backend(tmp_path):
    sets = ["annotate.backend=distilled", "demo.pool_size=200", "annotate.distilled.sample_size=50",
            "annotate.llm={kind: openai, model: stub-model, base_urls: ['http://127.0.0.1:9/v1'], api_key: x}"]
    res = CliRunner().invoke(app, ["plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--no-sample", "--json",
                                   *[x for s in sets for x in ("--set", s)]])
    assert res.exit_code == 0, res.output
    annotate = next(s for s in json.loads(res.stdout)["stages"] if s["key"] == "annotate")
    assert annotate["items"] == 200 and annotate["llm_calls"] == 2 * 50  # the demo tree's 2 inner levels x the sample
    assert "distilled: the LLM labels a sample of 50 items" in " ".join(annotate["notes"])


def test_plan_counts_no_sample_for_distilled_from_labels_and_one_call_less_per_anchored_item(tmp_path):
    llm = "annotate.llm={kind: openai, model: stub-model, base_urls: ['http://127.0.0.1:9/v1'], api_key: x}"

    def annotate(*sets):
        res = CliRunner().invoke(app, ["plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--no-sample", "--json",
                                       *[x for s in ["demo.pool_size=200", *sets] for x in ("--set", s)]])
        assert res.exit_code == 0, res.output
        return next(s for s in json.loads(res.stdout)["stages"] if s["key"] == "annotate")

    labels = annotate("annotate.backend=distilled", "annotate.distilled.train_labels=labels.jsonl")
    assert labels["llm_calls"] == 0 and "no LLM calls" in " ".join(labels["notes"])
    walked = annotate("annotate.backend=openai", llm)
    anchored = annotate("annotate.backend=openai", llm, "annotate.anchor.label_field=subject")
    assert walked["llm_calls"] == 2 * 200 and anchored["llm_calls"] == 1 * 200  # the demo tree: 2 inner levels
    assert "anchored walk" in " ".join(anchored["notes"])
