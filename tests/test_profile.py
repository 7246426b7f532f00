"""Profiling: Beta smoothing and intervals, roll-up over the skill tree, stratified
sampling, and the whole stage on real MATH-500 items with the paper's skill tree."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from skilldistill.errors import ConfigError, InputError
from skilldistill.generate import GenerationConfig
from skilldistill.llm.base import BackendConfig, Completion
from skilldistill.profile import (
    ProfileConfig,
    beta_posterior,
    beta_ppf,
    betainc,
    run_profile,
    skill_stats,
    stratified_sample,
    tree_from_chains,
)
from skilldistill.tree import SkillTree

SUBJECT_TO_TOP = {
    "Prealgebra": "Pre-Algebra", "Algebra": "Algebra", "Intermediate Algebra": "Inter-Algebra",
    "Geometry": "Geometry understanding", "Number Theory": "Number Theory", "Precalculus": "Precalculus",
    "Counting & Probability": "Probability",
}


# --------------------------------------------------------------------------------------
# Beta posterior
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [(1, 1), (0.5, 3.5), (3.2, 0.8), (12, 40), (400, 900), (50000.5, 30000.5)])
def test_beta_quantiles_match_scipy(a, b):
    stats = pytest.importorskip("scipy.stats")
    for q in (0.025, 0.5, 0.975):
        assert beta_ppf(q, a, b) == pytest.approx(stats.beta.ppf(q, a, b), abs=1e-7)
    for x in (0.01, 0.3, 0.62, 0.99):
        assert betainc(a, b, x) == pytest.approx(stats.beta.cdf(x, a, b), abs=1e-9)


def test_smoothing_shrinks_small_skills_toward_the_parent():
    mean3, lo3, hi3 = beta_posterior(3, 3, prior_mean=0.4, prior_strength=4)
    assert mean3 == pytest.approx((4 * 0.4 + 3) / (4 + 3))  # 3/3 correct is not taken at face value
    assert 0.4 < mean3 < 1 and lo3 < mean3 < hi3
    mean_big, lo_big, hi_big = beta_posterior(3000, 3000, prior_mean=0.4, prior_strength=4)
    assert mean_big > 0.998 and hi_big - lo_big < 0.01  # lots of data: the prior barely matters
    assert beta_posterior(0, 0, prior_mean=0.3, prior_strength=4)[0] == pytest.approx(0.3)  # no data: the parent
    assert beta_posterior(2, 5, prior_mean=0.9, prior_strength=0)[0] == pytest.approx(0.4)  # k=0: raw accuracy
    assert beta_posterior(5, 5, prior_mean=0.5, prior_strength=0) == (1.0, 1.0, 1.0)


# --------------------------------------------------------------------------------------
# roll-up over the tree
# --------------------------------------------------------------------------------------
def test_counts_roll_up_and_an_item_counts_once_per_node(skill_mix_path):
    tree = SkillTree.load(skill_mix_path)
    alg = [c for c in tree.leaves() if c[0] == "Algebra"]
    nt = [c for c in tree.leaves() if c[0] == "Number Theory"]
    rows = [
        {"skills": [list(alg[0]), list(alg[1])], "n_samples": 2, "n_correct": 2},  # two leaves, one parent
        {"skills": [list(alg[0])], "n_samples": 2, "n_correct": 0},
        {"skills": [list(nt[0]), ["Algebra", "not a skill"]], "n_samples": 2, "n_correct": 1},
        {"skills": [], "n_samples": 2, "n_correct": 1},
    ]
    nodes, overall, unknown = skill_stats(rows, tree, prior_strength=4)
    by = {n["chain"]: n for n in nodes}
    assert unknown == 1
    assert (by["Algebra"]["graded"], by["Algebra"]["correct"]) == (4, 2)  # not 6/4: item 1 counted once
    assert (by["->".join(alg[0])]["graded"], by["->".join(alg[0])]["correct"]) == (4, 2)
    assert (by["->".join(alg[1])]["graded"], by["->".join(alg[1])]["accuracy"]) == (2, 1.0)
    assert (by["Number Theory"]["graded"], by["Number Theory"]["correct"]) == (2, 1)
    assert overall["graded"] == 8 and overall["correct"] == 4
    assert len(nodes) == len(tree) - 1 and sum(n["is_leaf"] for n in nodes) == 118
    empty = by["->".join(alg[5])]
    assert empty["graded"] == 0 and empty["accuracy"] is None
    assert empty["smoothed_accuracy"] == pytest.approx(by["Algebra"]["smoothed_accuracy"])  # no data: the parent
    # shrinkage is toward the parent's smoothed accuracy
    leaf1 = by["->".join(alg[1])]
    parent = by["Algebra"]["smoothed_accuracy"]
    assert leaf1["smoothed_accuracy"] == pytest.approx((4 * parent + 2) / (4 + 2))
    assert leaf1["ci_low"] < leaf1["smoothed_accuracy"] < leaf1["ci_high"] < 1
    assert set(nodes[0]) == {"path", "chain", "depth", "is_leaf", "graded", "correct", "accuracy",
                             "smoothed_accuracy", "ci_low", "ci_high"}


def test_tree_from_chains_marks_leaves():
    t = tree_from_chains([["A", "x"], ["A", "y", "deep"], ["B"]], source="test")
    assert sorted(t.leaves()) == [("A", "x"), ("A", "y", "deep"), ("B",)]


# --------------------------------------------------------------------------------------
# stratified sample
# --------------------------------------------------------------------------------------
def test_stratified_sample_keeps_every_leaf_and_its_share():
    items = []
    for i in range(200):
        leaf = "big" if i < 150 else ("mid" if i < 190 else "small")
        items.append({"id": str(i), "skills": [["T", leaf]] + ([["T", "small"]] if i == 0 else [])})
    items += [{"id": "none", "skills": []}]
    sample, per_leaf = stratified_sample(items, 20, seed=3)
    assert len(sample) == 20 and len({s["id"] for s in sample}) == 20
    assert per_leaf["T->small"] >= 1 and per_leaf["(no skill)"] >= 1
    assert 13 <= per_leaf["T->big"] <= 16 and 3 <= per_leaf["T->mid"] <= 5
    assert stratified_sample(items, 20, seed=3) == (sample, per_leaf)  # seeded
    assert stratified_sample(items, 20, seed=4)[0] != sample
    everything, _ = stratified_sample(items, 500)
    assert len(everything) == len(items)
    # one big leaf and nine small ones, n = 10: one each (the big leaf's share is given back),
    # not 9 of the big leaf and one of the alphabetically first small leaf
    items = [{"id": f"a{i}", "skills": [["A", "a"]]} for i in range(1000)]
    items += [{"id": f"s{k}-{j}", "skills": [["S", f"s{k}"]]} for k in range(9) for j in range(2)]
    _, per_leaf = stratified_sample(items, 10, seed=0)
    assert per_leaf == {"A->a": 1, **{f"S->s{k}": 1 for k in range(9)}}


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------
class ScriptedStudent:
    """A test double of a student: answers with the gold solution for chosen questions and
    with a wrong boxed number otherwise, so the expected profile is known exactly."""

    name = "scripted"

    def __init__(self, solutions: dict[str, str], correct_ids: set[str], model: str = "scripted"):
        self.solutions, self.correct_ids, self.model = solutions, correct_ids, model
        self.calls = 0

    def chat(self, conversations, params, *, on_result=None, progress=None, seeds=None):
        self.calls += 1
        out = []
        for i, conv in enumerate(conversations):
            question = conv[-1]["content"].split("\n\nPlease reason")[0]
            item_id, solution = self.solutions[question]
            text = f"<think>working</think>{solution}" if item_id in self.correct_ids else "<think>hmm</think>\\boxed{-987654}"
            comps = [Completion(text, "stop", 10, 20) for _ in range(params.n)]
            if item_id == "m5-3":
                comps[0] = Completion("<think>still thinking when the cap hit", "length", 10, params.max_tokens)
            out.append(comps)
            if on_result:
                on_result(i, comps)
        return out

    def close(self):
        pass


@pytest.fixture
def pool(tmp_path, shared_data, skill_mix_path):
    """30 real MATH-500 problems with chains of the paper's tree (leaf picked per item)."""
    tree = SkillTree.load(skill_mix_path)
    leaves_by_top: dict[str, list[tuple[str, ...]]] = {}
    for c in tree.leaves():
        leaves_by_top.setdefault(c[0], []).append(c)
    rows = [json.loads(line) for line in (shared_data / "benchmarks" / "math500" / "test.jsonl").open()][:30]
    table = []
    for i, r in enumerate(rows):
        top = SUBJECT_TO_TOP[r["subject"]]
        leaves = leaves_by_top[top]
        skills = [list(leaves[i % len(leaves)])] + ([list(leaves[(i + 1) % len(leaves)])] if i % 4 == 0 else [])
        table.append({"id": f"m5-{i}", "question": r["problem"], "response": r["solution"],
                      "answer": None if i in (7, 8) else r["answer"], "skills": skills})
    path = tmp_path / "skills.parquet"
    pq.write_table(pa.Table.from_pylist(table), path)
    return path, table, tree


def _profile_cfg(model="scripted", **kw):
    return ProfileConfig(generation=GenerationConfig(backend=BackendConfig(kind="transformers", model=model), n=2, max_new_tokens=64), **kw)


def test_profile_stage_on_real_items(tmp_path, pool):
    path, table, tree = pool
    correct_ids = {f"m5-{i}" for i in range(0, 30, 3)}
    student = ScriptedStudent({r["question"].strip(): (r["id"], r["response"]) for r in table}, correct_ids)
    out = tmp_path / "profile"
    res = run_profile(path, out, _profile_cfg(), tree=tree, backend=student, show_progress=False)

    c = res.counts
    assert (c["items_in_pool"], c["items_without_gold"], c["items_profiled"], c["samples"]) == (30, 2, 28, 56)
    items = {r["id"]: r for r in pq.read_table(out / "profile.parquet").to_pylist()}
    assert set(items) == {r["id"] for r in table} - {"m5-7", "m5-8"}
    for item_id, r in items.items():
        expected = 2 if item_id in correct_ids else 0
        if item_id == "m5-3":
            expected = 1  # first sample truncated (no </think>), second correct
        assert r["n_correct"] == expected, (item_id, r)
        assert r["accuracy"] == expected / 2 and r["solved"] == (expected / 2 >= 0.5)
        assert r["n_truncated"] == (1 if item_id == "m5-3" else 0)
    assert items["m5-0"]["skills"] == next(t["skills"] for t in table if t["id"] == "m5-0")
    assert c["correct"] == sum(r["n_correct"] for r in items.values())
    assert c["truncated"] == 1 and c["grading_errors"] == 0

    sp = json.loads((out / "skill_profile.json").read_text())
    assert sp["prior_strength"] == 4.0 and sp["tree_source"] == str(tree.source)
    assert sp["overall"]["graded"] == 56 and sp["overall"]["accuracy"] == pytest.approx(c["correct"] / 56)
    by = {n["chain"]: n for n in sp["nodes"]}
    for top in SUBJECT_TO_TOP.values():
        members = [r for r in items.values() if any(ch[0] == top for ch in r["skills"])]
        assert by[top]["graded"] == 2 * len(members)
        assert by[top]["correct"] == sum(r["n_correct"] for r in members)
    assert (out / "skill_profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grades = pq.read_table(out / "grades.parquet").to_pylist()
    assert len(grades) == 56 and {g["id"] for g in grades if g["truncated"]} == {"m5-3"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["samples"] == 56

    # a rerun with the same inputs and config is a no-op
    again = run_profile(path, out, _profile_cfg(), tree=tree, backend=student, show_progress=False)
    assert again.skipped and student.calls == 1


def test_items_without_skills_or_gold_and_bad_input(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "1", "question": "Q", "answer": "1"}]), path)
    with pytest.raises(InputError) as e:
        run_profile(path, tmp_path / "out", _profile_cfg())
    assert e.value.field == "skills"
    pq.write_table(pa.Table.from_pylist([{"id": "1", "question": "Q", "answer": "1", "skills": ["Algebra"]}]), path)
    with pytest.raises(InputError) as e:
        run_profile(path, tmp_path / "out", _profile_cfg())
    assert (e.value.field, e.value.row) == ("skills", 1)
    pq.write_table(pa.Table.from_pylist([{"id": "1", "question": "Q", "answer": " ", "skills": [["A", "b"]]}]), path)
    with pytest.raises(InputError, match="no item has a gold answer"):
        run_profile(path, tmp_path / "out", _profile_cfg())
    # ids and questions are checked with the file's row numbers (row 1 has no gold: it used
    # to shift every row number below it, and a null id became the id "None")
    rows = [{"id": "0", "question": "Q0", "answer": None, "skills": [["A", "b"]]},
            {"id": "1", "question": "Q1", "answer": "1", "skills": [["A", "b"]]},
            {"id": "1", "question": "Q2", "answer": "2", "skills": [["A", "b"]]}]
    for bad, (field, row) in ((rows, ("id", 3)), ([rows[0], dict(rows[1], id=None)], ("id", 2)),
                              ([rows[0], dict(rows[1], question=" ")], ("question", 2))):
        pq.write_table(pa.Table.from_pylist(bad), path)
        with pytest.raises(InputError) as e:
            run_profile(path, tmp_path / "out", _profile_cfg())
        assert (e.value.field, e.value.row) == (field, row)


def test_a_student_that_cannot_load_fails_before_any_work(tmp_path, pool):
    path, _, _ = pool
    out = tmp_path / "profile"
    with pytest.raises(ConfigError, match="cannot load"):
        run_profile(path, out, _profile_cfg(model=str(tmp_path / "missing-model")), show_progress=False)
    assert not (out / "generations.jsonl").exists() and not (out / "profile.parquet").exists()


@pytest.mark.slow
def test_cli_profiles_a_stratified_sample_with_a_real_local_model(tmp_path, pool, tiny_chat_model_dir):
    from skilldistill.cli import app

    path, _, _ = pool
    out = tmp_path / "cli-profile"
    result = CliRunner().invoke(app, [
        "profile", str(path), "--out", str(out), "--model", str(tiny_chat_model_dir), "--backend", "transformers",
        "--device", "cpu", "--max-new-tokens", "4", "--sample", "10", "--grading-processes", "1",
    ])
    assert result.exit_code == 0, result.output
    assert "stratified sample: 10 items" in result.output and "items per leaf" in result.output
    sample = json.loads((out / "sample.json").read_text())
    assert sample["n_sampled"] == 10 and sample["n_pool"] == 28 and sum(sample["per_leaf"].values()) >= 10
    sp = json.loads((out / "skill_profile.json").read_text())
    assert sp["tree_source"].startswith("chains found in")  # no --tree: the chains in the data
    assert sp["sample"]["per_leaf"] == sample["per_leaf"]
    gens = pq.read_table(out / "generations.parquet")
    assert gens.num_rows == 10 and set(gens.column("finish_reason").to_pylist()) <= {"stop", "length"}
    assert math.isclose(sp["overall"]["graded"], 10)


def test_cli_grade_reports_and_writes(tmp_path):
    from skilldistill.cli import app

    src = tmp_path / "pairs.jsonl"
    rows = [{"answer": "\\frac12", "response": "\\boxed{0.5}"}, {"answer": "#### 3", "response": "The answer is 4."},
            {"answer": "2", "response": "<think>cut off"}]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "graded.parquet"
    result = CliRunner().invoke(app, ["grade", str(src), "--out", str(out), "--processes", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"n": 3, "correct": 1, "accuracy": 1 / 3}
    graded = pq.read_table(out).to_pylist()
    assert [g["correct"] for g in graded] == [True, False, False] and graded[2]["truncated"]
    bad = CliRunner().invoke(app, ["grade", str(src), "--gold-field", "gold"])
    assert bad.exit_code == 2 and "gold" in bad.output


def test_a_sample_cut_by_the_token_cap_counts_wrong_even_with_a_closed_think_and_the_right_box(tmp_path, pool):
    """Issue 16 (4): finish_reason 'length' is a truncated sample, whatever it boxed before the
    cut; the unclosed-<think> case above would have been graded wrong anyway."""
    path, table, tree = pool
    cut = {"m5-0", "m5-1"}

    class CutAtTheCap(ScriptedStudent):
        def chat(self, conversations, params, *, on_result=None, progress=None, seeds=None):
            out = []
            for i, conv in enumerate(conversations):
                item_id, solution = self.solutions[conv[-1]["content"].split("\n\nPlease reason")[0]]
                reason = "length" if item_id in cut else "stop"
                comps = [Completion(f"<think>done</think>{solution}", reason, 10, 20) for _ in range(params.n)]
                out.append(comps)
                if on_result:
                    on_result(i, comps)
            return out

    student = CutAtTheCap({r["question"].strip(): (r["id"], r["response"]) for r in table}, set())
    res = run_profile(path, tmp_path / "p", _profile_cfg(), tree=tree, backend=student, show_progress=False)
    items = {r["id"]: r for r in pq.read_table(tmp_path / "p" / "profile.parquet").to_pylist()}
    assert all(items[i]["n_correct"] == 0 and items[i]["n_truncated"] == 2 for i in cut)
    assert items["m5-2"]["n_correct"] == 2  # the same answer, not cut: right
    assert res.counts["truncated"] == 4
