"""The demo's attribution sources (demo.attribution: embedding | seed-labels | true): the recipe
setting, the arms `skilldistill demo` adds, the seed labels, and the table of what each source buys."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.cli.demo import demo_recipe
from skilldistill.demo.attribution_sources import SourceArm, source_rows, weak_budget_share
from skilldistill.demo.seed_labels import write_seed_labels
from skilldistill.errors import ConfigError
from skilldistill.orchestration.pipeline import Pipeline
from skilldistill.orchestration.recipe import load_recipe
from test_pipeline import TINY

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "recipes" / "demo-quick.yaml"


def test_the_demos_attribution_source_sets_the_annotate_backend():
    assert load_recipe(QUICK).annotate.backend == "embedding"
    truth = load_recipe(QUICK, ["demo.attribution=true"])  # YAML's unquoted true names the source
    assert (truth.demo.attribution, truth.annotate.backend, truth.annotate.labels.label_field) == \
        ("true", "labels", "true_skills")
    with pytest.raises(ConfigError, match="demo.attribution: Input should be 'embedding', 'seed-labels' or 'true'"):
        load_recipe(QUICK, ["demo.attribution=oracle"])


def test_the_source_leaves_the_generated_files_fingerprints_alone(tmp_path):
    def fingerprints(*overrides):
        recipe = load_recipe(QUICK, [*TINY, *overrides])
        return {st["key"]: st["fingerprint"] for st in Pipeline(recipe, run_dir=tmp_path, show_progress=False).plan()}

    default, truth = fingerprints(), fingerprints("demo.attribution=true", "demo.seed_label_share=0.3")
    assert default["corpus"] == truth["corpus"] and default["demo"] == truth["demo"]
    assert default["evaluate/base"] == truth["evaluate/base"]
    assert default["annotate"] != truth["annotate"]


def test_the_full_demo_adds_skill_plain_under_each_other_source():
    plain = demo_recipe(False, [])
    names = [a.name for a in demo_recipe(False, [], attribution_sources=True).arms]
    assert names == [a.name for a in plain.arms] + ["skill-plain-seed-labels", "skill-plain-true"]
    truth = demo_recipe(False, ["demo.attribution=true"], attribution_sources=True)
    assert [a.name for a in truth.arms][-2:] == ["skill-plain-embedding", "skill-plain-seed-labels"]
    assert truth.arm_annotate(truth.arm("skill-plain-embedding")).backend == "embedding"


def test_seed_labels_are_a_seeded_share_of_the_pool_with_its_true_chains(tmp_path):
    from skilldistill.demo.generator import generate_corpus

    corpus = tmp_path / "corpus.parquet"
    pq.write_table(generate_corpus(200, seed=3), corpus)
    n = write_seed_labels(corpus, tmp_path / "a", 0.1, seed=0)
    rows = [json.loads(line) for line in (tmp_path / "a" / "seed_labels.jsonl").read_text().splitlines()]
    assert n == len(rows) == 20
    truth = {r["id"]: ["->".join(c) for c in r["true_skills"]] for r in pq.read_table(corpus).to_pylist()}
    assert all(r["skills"] == truth[r["id"]] for r in rows)
    write_seed_labels(corpus, tmp_path / "b", 0.1, seed=0)
    write_seed_labels(corpus, tmp_path / "c", 0.1, seed=1)
    same, other = ((tmp_path / d / "seed_labels.jsonl").read_text() for d in ("b", "c"))
    assert same == (tmp_path / "a" / "seed_labels.jsonl").read_text() and other != same


def test_budget_on_weak_leaves_counts_the_true_skills_of_the_selected_items(tmp_path):
    sel = tmp_path / "selection.parquet"
    pq.write_table(pa.table({"true_skills": [[["A", "weak"]], [["A", "strong"], ["B", "weak2"]], [["B", "strong"]],
                                             [["A", "strong"]]]}), sel)
    assert weak_budget_share(sel, {"A->weak", "B->weak2"}) == 0.5
    summary = {"weak_skill_gains": {"by_arm": {"x": {"weak": 0.1, "weak_ci": {"low": 0.02, "high": 0.2}}}}}
    acc = tmp_path / "annotate"
    acc.mkdir()
    (acc / "attribution_accuracy.json").write_text(json.dumps({"leaf_precision": 0.64, "leaf_recall": 0.74}))
    (row,) = source_rows([SourceArm("x", "embedding", acc, [sel, tmp_path / "missing.parquet"])], summary,
                         {"A->weak", "B->weak2"})
    assert row == {"arm": "x", "source": "embedding", "leaf_precision": 0.64, "leaf_recall": 0.74,
                   "weak_budget_share": 0.5, "seeds": 1, "weak_gain": 0.1,
                   "weak_gain_ci": {"low": 0.02, "high": 0.2}}


@pytest.mark.slow
def test_a_demo_run_reports_what_each_attribution_source_buys(tmp_path):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    arms = [{"name": "random-plain", "select": {"strategy": "random"}, "format": {"style": "plain"}},
            {"name": "skill-plain", "select": {"strategy": "skill"}, "format": {"style": "plain"}},
            {"name": "skill-plain-true", "annotate": {"backend": "labels", "labels": {"label_field": "true_skills"}},
             "select": {"strategy": "skill"}, "format": {"style": "plain"}}]
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(QUICK), "--run-dir", str(run_dir), *[
        x for s in [*TINY, f"arms={json.dumps(arms)}", "report.method=skill-plain", "jobs=1"] for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    rows = {r["arm"]: r for r in json.loads((run_dir / "report" / "attribution_sources.json").read_text())["rows"]}
    assert [(a, r["source"]) for a, r in rows.items()] == [("random-plain", "random"), ("skill-plain", "embedding"),
                                                          ("skill-plain-true", "true")]
    assert rows["skill-plain-true"]["leaf_precision"] == rows["skill-plain-true"]["leaf_recall"] == 1.0
    embedding = json.loads((run_dir / "annotate" / "attribution_accuracy.json").read_text())
    assert rows["skill-plain"]["leaf_precision"] == embedding["leaf_precision"] < 1.0
    assert all(0 <= r["weak_budget_share"] <= 1 and r["seeds"] == 1 for r in rows.values())
    assert rows["random-plain"]["leaf_precision"] is None  # it reads no attribution
    assert "Attribution sources" in (run_dir / "report" / "report.md").read_text()
    assert "what better attribution buys" in result.output and "skill-plain-true" in result.output
