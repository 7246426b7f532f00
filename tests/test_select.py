"""Selection: weights, quotas, KL, convergence to the target, termination, filters, artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.errors import ConfigError, InputError
from skilldistill.select.config import SelectConfig
from skilldistill.select.index import LeafIndex
from skilldistill.select.report import kl_divergence
from skilldistill.select.stage import run_select
from skilldistill.select.strategies.forced import draw_forced
from skilldistill.select.strategies.quota import draw_quota, largest_remainder
from skilldistill.select.strategies.skill import draw_skill
from skilldistill.select.weights import leaf_accuracies, leaf_weights

SKILLS_TYPE = pa.list_(pa.list_(pa.string()))


# -- fixtures in the real schemas ------------------------------------------------------
def write_pool(path: Path, skills: list[list[list[str]]], *, response: str = "<think>ok</think> 1", extra: dict | None = None) -> Path:
    n = len(skills)
    cols = {
        "id": [f"q{i}" for i in range(n)],
        "question": [f"Problem number {i}: what is {i} + 1?" for i in range(n)],
        "response": [response] * n,
        "answer": [str(i + 1) for i in range(n)],
        "source": ["math" if i % 3 else "gsm8k" for i in range(n)],
        "meta": [json.dumps({"level": f"Level {i % 5 + 1}"}) for i in range(n)],
    }
    cols.update(extra or {})
    table = pa.table({**{k: pa.array(v) for k, v in cols.items()}, "skills": pa.array(skills, SKILLS_TYPE)})
    pq.write_table(table, path)
    return path


def node(path: list[str], acc: float | None, *, graded: int = 10, smoothed: float | None = None, leaf: bool = True) -> dict:
    correct = round((acc or 0) * graded) if acc is not None else 0
    return {
        "path": path, "chain": "->".join(path), "depth": len(path), "is_leaf": leaf,
        "graded": graded if acc is not None else 0, "correct": correct, "accuracy": acc,
        "smoothed_accuracy": acc if smoothed is None else smoothed, "ci_low": 0.0, "ci_high": 1.0,
    }


def write_profile(path: Path, nodes: list[dict]) -> Path:
    path.write_text(json.dumps({"nodes": nodes, "tree": "test"}), encoding="utf-8")
    return path


LEAVES = [["Algebra", "equations"], ["Algebra", "inequalities"], ["Geometry", "triangles"], ["Geometry", "circles"]]


@pytest.fixture
def small_pool(tmp_path: Path) -> tuple[Path, Path]:
    """400 items: each under one or two of 4 leaves; accuracies 0.5, 0.25, 0.1, 0.8."""
    rng = np.random.default_rng(7)
    skills = []
    for _ in range(400):
        k = 1 + int(rng.random() < 0.3)
        skills.append([LEAVES[j] for j in rng.choice(4, size=k, replace=False)])
    pool = write_pool(tmp_path / "skills.parquet", skills)
    prof = write_profile(tmp_path / "skill_profile.json", [
        node([], 0.4, leaf=False), node(["Algebra"], 0.4, leaf=False), node(["Geometry"], 0.4, leaf=False),
        node(LEAVES[0], 0.5), node(LEAVES[1], 0.25), node(LEAVES[2], 0.1), node(LEAVES[3], 0.8),
    ])
    return pool, prof


def big_index(n_leaves: int = 20, per_leaf: int = 5000, overlap: float = 0.2, seed: int = 0) -> LeafIndex:
    """A synthetic pool: every item under one leaf, a share of them under a second one."""
    rng = np.random.default_rng(seed)
    n = n_leaves * per_leaf
    items = np.arange(n)
    leaves = items // per_leaf
    extra = rng.random(n) < overlap
    second = (leaves[extra] + rng.integers(1, n_leaves, size=int(extra.sum()))) % n_leaves
    keys = [(f"D{j // 5}", f"L{j}") for j in range(n_leaves)]
    return LeafIndex.from_pairs(np.concatenate([items, items[extra]]), np.concatenate([leaves, second]), keys, n)


# -- formulas ---------------------------------------------------------------------------
def test_leaf_weight_formula_caps_and_zero_accuracy():
    acc = np.array([0.0, 0.5, 0.0005, 1.0, 0.25])
    assert leaf_weights(acc).tolist() == [1000.0, 2.0, 1000.0, 1.0, 4.0]
    assert leaf_weights(acc, temperature=2.0).tolist() == pytest.approx([1e6, 4.0, 1e6, 1.0, 16.0])
    assert leaf_weights(acc, temperature=0.5, w_max=100).tolist() == pytest.approx([10.0, math.sqrt(2), 10.0, 1.0, 2.0])


def test_largest_remainder_quotas_sum_exactly():
    assert largest_remainder(np.array([0.5, 0.3, 0.2]), 7).tolist() == [4, 2, 1]
    # ties break towards the lower leaf index; zero-probability leaves never get a unit
    assert largest_remainder(np.array([1.0, 1.0, 1.0, 0.0]), 4).tolist() == [2, 1, 1, 0]
    p = np.random.default_rng(1).random(137)
    for n in (1, 10, 999, 10_000):
        q = largest_remainder(p, n)
        assert q.sum() == n
        assert np.all(np.abs(q - p / p.sum() * n) < 1.0)


def test_kl_on_a_hand_example():
    # KL([.5,.5] || [.25,.75]) = .5 ln 2 + .5 ln(2/3)
    assert kl_divergence(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert kl_divergence(np.array([1, 3]), np.array([1, 3])) == 0.0  # unnormalised inputs are normalised
    assert kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == math.inf
    assert kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))


# -- the samplers ---------------------------------------------------------------------
def test_skill_draw_converges_to_target():
    index = big_index()
    rng = np.random.default_rng(3)
    weights = leaf_weights(rng.uniform(0.05, 0.95, size=index.n_leaves))
    budget = 20_000
    draw = draw_skill(index, weights, budget, np.random.default_rng(11))
    assert len(draw.items) == budget and len(set(draw.items)) == budget
    counts = np.bincount(draw.leaves, minlength=index.n_leaves)
    expected = weights / weights.sum() * budget
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    # 19 degrees of freedom: P(chi2 > 45) < 0.001 under the target distribution
    assert chi2 < 45, chi2
    # every item drawn for a leaf really sits under that leaf
    for item, leaf in list(zip(draw.items, draw.leaves, strict=True))[:500]:
        assert item in index.items[index.ptr[leaf]:index.ptr[leaf + 1]]


def test_skill_draw_drops_exhausted_leaves_and_terminates():
    # leaf 0 has weight 1000 but 3 items; the others hold plenty
    keys = [("A", "tiny"), ("A", "big"), ("B", "big")]
    items = np.arange(303)
    leaves = np.array([0] * 3 + [1] * 150 + [2] * 150)
    index = LeafIndex.from_pairs(items, leaves, keys, 303)
    draw = draw_skill(index, np.array([1000.0, 1.0, 1.0]), 50, np.random.default_rng(0))
    assert len(draw.items) == 50
    assert set(range(3)) <= set(draw.items)
    assert draw.exhausted_leaves >= 1
    # budget above the pool: stops with everything, says why
    draw = draw_skill(index, np.array([1000.0, 1.0, 1.0]), 10_000, np.random.default_rng(0))
    assert sorted(draw.items) == list(range(303))
    assert draw.reason == "every leaf ran dry"


def test_skill_draw_handles_leaves_emptied_by_other_leaves():
    # every item of leaf 1 also sits under leaf 0: leaf 1 runs dry through duplicates only
    keys = [("A", "x"), ("A", "y")]
    index = LeafIndex.from_pairs(np.array([0, 1, 2, 0, 1]), np.array([0, 0, 0, 1, 1]), keys, 3)
    draw = draw_skill(index, np.array([1.0, 1000.0]), 5, np.random.default_rng(0))
    assert sorted(draw.items) == [0, 1, 2]


def test_quota_meets_largest_remainder_exactly_and_counts_items_once():
    index = big_index(n_leaves=10, per_leaf=300, overlap=0.5)
    weights = leaf_weights(np.linspace(0.1, 0.9, 10))
    draw = draw_quota(index, weights, 1000, np.random.default_rng(0))
    assert len(draw.items) == 1000 and len(set(draw.items)) == 1000
    counts = np.bincount(draw.leaves, minlength=10)
    assert counts.tolist() == largest_remainder(weights, 1000).tolist()
    # deterministic in the quotas, seeded in the items
    again = draw_quota(index, weights, 1000, np.random.default_rng(0))
    assert again.items == draw.items


def test_quota_shares_the_shortfall_of_dry_leaves():
    keys = [("A", "tiny"), ("A", "big"), ("B", "big")]
    index = LeafIndex.from_pairs(np.arange(303), np.array([0] * 3 + [1] * 150 + [2] * 150), keys, 303)
    draw = draw_quota(index, np.array([10.0, 1.0, 1.0]), 60, np.random.default_rng(0))
    counts = np.bincount(draw.leaves, minlength=3)
    assert counts[0] == 3 and counts.sum() == 60 and abs(int(counts[1]) - int(counts[2])) <= 1


def test_quota_goes_on_when_a_round_only_reaches_leaves_already_emptied_through_others():
    # x = {0, 1}, y = {0, 1, 2}, z = {3..6}: y takes 0, 1, 2 in round 1 and x is then empty
    # though never drawn from; the round that gives x the last unit takes nothing, and the
    # draw used to stop there, 3 items into a budget of 4 with z still holding four
    keys = [("A", "x"), ("A", "y"), ("A", "z")]
    index = LeafIndex.from_pairs(np.array([0, 1, 0, 1, 2, 3, 4, 5, 6]), np.array([0, 0, 1, 1, 1, 2, 2, 2, 2]), keys, 7)
    for seed in range(6):
        draw = draw_quota(index, np.array([1.0, 1000.0, 1.0]), 4, np.random.default_rng(seed))
        assert len(draw.items) == 4 and len(set(draw.items)) == 4 and draw.reason == "budget met"
    # the length filter refusing a leaf's only item: the budget still comes from the others
    index = LeafIndex.from_pairs(np.array([0, 1, 2, 3]), np.array([0, 1, 1, 1]), [("A", "x"), ("A", "y")], 4)
    draw = draw_quota(index, np.array([1000.0, 1.0]), 2, np.random.default_rng(0), accept=lambda i: i != 0)
    assert len(draw.items) == 2 and 0 not in draw.items
    # zero-weight leaves cannot fill a quota: the draw ends instead of looping
    draw = draw_quota(index, np.array([0.0, 0.0]), 2, np.random.default_rng(0))
    assert draw.items == [] and draw.reason == "every leaf ran dry"


# -- profile fallbacks ------------------------------------------------------------------
def test_leaf_accuracy_fallbacks(tmp_path: Path):
    keys = [("A", "a1"), ("A", "a2"), ("B", "b1"), ("C", "c1")]
    profile = {"nodes": [
        node(["A"], 0.4, leaf=False), node(["B"], None, leaf=False),
        node(["A", "a1"], 0.2, smoothed=0.3), node(["A", "a2"], None), node(["B", "b1"], None, smoothed=None),
        node(["Z", "z1"], 0.5),  # a profile leaf with no pool items
    ]}
    # no root node: global = correct / graded pooled over the profile's leaves = (2 + 5) / 20
    raw = leaf_accuracies(keys, profile, "raw")
    assert raw.accuracy.tolist() == pytest.approx([0.2, 0.4, 0.35, 0.35])
    assert raw.source == ["leaf", "ancestor", "global", "global"]
    assert raw.profile_leaves_without_items == 1
    smoothed = leaf_accuracies(keys, profile, "smoothed")
    assert smoothed.accuracy[0] == pytest.approx(0.3)
    with_root = {"nodes": profile["nodes"] + [node([], 0.6, leaf=False)]}
    assert leaf_accuracies(keys, with_root, "raw").accuracy[3] == pytest.approx(0.6)
    # the profile stage writes the root as a top-level "overall" entry
    with_overall = {"nodes": profile["nodes"], "overall": {"accuracy": 0.7, "smoothed_accuracy": 0.65}}
    assert leaf_accuracies(keys, with_overall, "raw").accuracy[3] == pytest.approx(0.7)
    assert leaf_accuracies(keys, with_overall, "smoothed").accuracy[3] == pytest.approx(0.65)
    with pytest.raises(InputError, match="nodes"):
        leaf_accuracies(keys, {"tree": "x"}, "raw", file="p.json")


# -- the stage ---------------------------------------------------------------------------
def test_run_select_writes_artifacts_and_reproduces(tmp_path: Path, small_pool):
    pool, prof = small_pool
    cfg = SelectConfig(strategy="skill", budget=60, seed=5)
    a = run_select(pool, tmp_path / "a", cfg, profile_json=prof, progress=False)
    b = run_select(pool, tmp_path / "b", cfg, profile_json=prof, progress=False)
    c = run_select(pool, tmp_path / "c", cfg.model_copy(update={"seed": 6}), profile_json=prof, progress=False)
    ta, tb, tc = (pq.read_table(r.out_dir / "selection.parquet") for r in (a, b, c))
    assert ta.column("id").to_pylist() == tb.column("id").to_pylist()
    assert ta.column("id").to_pylist() != tc.column("id").to_pylist()
    assert ta.num_rows == 60 and len(set(ta.column("id").to_pylist())) == 60
    assert ta.column("draw_order").to_pylist() == list(range(60))
    # the corpus columns come through, plus the drawn leaf (one of the item's own chains)
    for row in ta.to_pylist():
        assert row["selected_leaf"] in {"->".join(c) for c in row["skills"]}
        assert row["question"].startswith("Problem number")
    report = json.loads((a.out_dir / "report.json").read_text())
    assert report["selected"] == 60 and report["stop_reason"] == "budget met"
    assert sum(r["realised_count"] for r in report["leaf_table"]) == 60
    assert sum(r["target_p"] for r in report["leaf_table"]) == pytest.approx(1.0, abs=1e-6)
    # weakest leaf (acc 0.1) has the largest target
    top = max(report["leaf_table"], key=lambda r: r["target_p"])
    assert top["leaf"] == "Geometry->triangles" and top["weight"] == pytest.approx(10.0)
    assert report["coverage"]["leaves_with_eligible_items"] == 4
    assert report["by_source"]["pool"] == {"math": 266, "gsm8k": 134}
    assert sum(report["by_source"]["selected"].values()) == 60
    assert sum(report["by_difficulty"]["selected"].values()) == 60
    assert (a.out_dir / "distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (a.out_dir / "leaf_distribution.csv").read_text().startswith("leaf,depth,pool_items")
    manifest = json.loads((a.out_dir / "manifest.json").read_text())
    assert manifest["config"]["budget"] == 60 and set(manifest["inputs"]) == {"skills", "profile"}


def test_run_select_resumes_from_manifest(tmp_path: Path, small_pool):
    pool, prof = small_pool
    cfg = SelectConfig(budget=30)
    first = run_select(pool, tmp_path / "o", cfg, profile_json=prof, progress=False)
    assert not first.skipped
    again = run_select(pool, tmp_path / "o", cfg, profile_json=prof, progress=False)
    assert again.skipped and again.n_selected == 30
    changed = run_select(pool, tmp_path / "o", cfg.model_copy(update={"budget": 31}), profile_json=prof, progress=False)
    assert not changed.skipped and changed.n_selected == 31


@pytest.mark.parametrize("strategy", ["random", "skill", "skill-quota"])
def test_budget_above_pool_terminates_with_a_clear_count(tmp_path: Path, small_pool, strategy: str):
    pool, prof = small_pool
    res = run_select(pool, tmp_path / strategy, SelectConfig(strategy=strategy, budget=5000), profile_json=prof, progress=False)
    assert res.n_selected == 400
    assert res.report["shortfall"] == 4600
    assert "selected 400 of 5000" in res.report["stop_reason"]
    assert pq.read_table(res.out_dir / "selection.parquet").num_rows == 400


def test_quota_strategy_realises_the_quotas(tmp_path: Path, small_pool):
    pool, prof = small_pool
    res = run_select(pool, tmp_path / "q", SelectConfig(strategy="skill-quota", budget=50), profile_json=prof, progress=False)
    rows = res.report["leaf_table"]
    quotas = largest_remainder(np.array([r["target_p"] for r in rows]), 50)
    assert [r["realised_count"] for r in rows] == quotas.tolist()
    assert res.report["kl_target_realised"] < 0.01


def test_correct_portion_is_respected(tmp_path: Path, small_pool):
    pool, prof = small_pool
    ids = [f"q{i}" for i in range(400)]
    solved = [i % 4 == 0 for i in range(400)]  # 100 solved, 300 not
    profile = pa.table({
        "id": ids[:390], "n_samples": [1] * 390, "n_correct": [int(s) for s in solved[:390]],
        "accuracy": [float(s) for s in solved[:390]], "solved": solved[:390], "n_truncated": [0] * 390,
    })
    pq.write_table(profile, tmp_path / "profile.parquet")
    cfg = SelectConfig(strategy="skill", budget=80, correct_portion=0.25)
    res = run_select(pool, tmp_path / "cp", cfg, profile_json=prof, item_profile=tmp_path / "profile.parquet", progress=False)
    sel = pq.read_table(res.out_dir / "selection.parquet")
    flags = sel.column("student_solved").to_pylist()
    assert sel.num_rows == 80 and sum(flags) == 20
    assert all(int(i[1:]) < 390 for i in sel.column("id").to_pylist())  # items without a profile are left out
    assert res.report["pool"]["excluded_not_profiled"] == 10
    assert res.report["correct_portion"] == {"requested": 0.25, "scope": "budget", "selected_solved": 20, "realised": 0.25}
    # more solved items asked for than exist: a clear shortfall, not a hang
    big = run_select(pool, tmp_path / "cp2", cfg.model_copy(update={"correct_portion": 1.0, "budget": 150}),
                     profile_json=prof, item_profile=tmp_path / "profile.parquet", progress=False)
    assert big.n_selected == 98  # solved items among the 390 profiled ones
    assert any("solved part of the pool" in m for m in big.report["messages"])
    with pytest.raises(ConfigError, match="item profile"):
        run_select(pool, tmp_path / "x", cfg, profile_json=prof, progress=False)


def test_exclude_by_id_file_and_benchmark(tmp_path: Path, small_pool):
    pool, prof = small_pool
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": "problem number 3:  What is 3 + 1?", "answer": "4"}) + "\n")
    (tmp_path / "ids.txt").write_text("q0\nq1\n")
    cfg = SelectConfig(strategy="random", budget=1000, exclude=[str(bench), str(tmp_path / "ids.txt"), "q2"])
    res = run_select(pool, tmp_path / "ex", cfg, profile_json=prof, progress=False)
    ids = set(pq.read_table(res.out_dir / "selection.parquet").column("id").to_pylist())
    assert res.n_selected == 396 and not ids & {"q0", "q1", "q2", "q3"}
    assert res.report["pool"]["excluded_by_id"] == 3 and res.report["pool"]["excluded_by_question"] == 1
    with pytest.raises(InputError, match="not found"):
        run_select(pool, tmp_path / "ex2", SelectConfig(strategy="random", exclude=["missing.jsonl"]), progress=False)


def test_bad_inputs_name_the_problem(tmp_path: Path, small_pool):
    pool, prof = small_pool
    no_skills = tmp_path / "noskills.parquet"
    pq.write_table(pq.read_table(pool).drop_columns(["skills"]), no_skills)
    with pytest.raises(InputError, match="skills"):
        run_select(no_skills, tmp_path / "o1", SelectConfig(), profile_json=prof, progress=False)
    # random needs no skills and no profile
    assert run_select(no_skills, tmp_path / "o2", SelectConfig(strategy="random", budget=5), progress=False).n_selected == 5
    flat = tmp_path / "flat.parquet"
    pq.write_table(pq.read_table(pool).drop_columns(["skills"]).append_column("skills", pa.array([["A"]] * 400)), flat)
    with pytest.raises(InputError, match="list<list<string>>"):
        run_select(flat, tmp_path / "o3", SelectConfig(), profile_json=prof, progress=False)
    with pytest.raises(ConfigError, match="profile"):
        run_select(pool, tmp_path / "o4", SelectConfig(strategy="skill"), progress=False)
    bad = write_profile(tmp_path / "bad.json", [{"chain": "A->b"}])
    with pytest.raises(InputError, match=r"nodes\[0\]\.path"):
        run_select(pool, tmp_path / "o5", SelectConfig(), profile_json=bad, progress=False)


def test_items_without_skills_only_in_random(tmp_path: Path):
    skills = [[["A", "x"]]] * 5 + [[]] * 5
    pool = write_pool(tmp_path / "s.parquet", skills)
    prof = write_profile(tmp_path / "p.json", [node(["A", "x"], 0.5)])
    assert run_select(pool, tmp_path / "s", SelectConfig(budget=10), profile_json=prof, progress=False).n_selected == 5
    assert run_select(pool, tmp_path / "r", SelectConfig(strategy="random", budget=10), profile_json=prof, progress=False).n_selected == 10




@pytest.mark.slow
def test_max_tokens_drops_long_items_with_a_real_tokenizer(tmp_path: Path, smollm_tokenizer):
    rng = np.random.default_rng(0)
    skills = [[LEAVES[int(rng.integers(4))]] for _ in range(60)]
    long_text = "<think>" + "we add the numbers and check the result again. " * 120 + "</think> 2"
    responses = [long_text if i % 2 else "<think>short</think> 2" for i in range(60)]
    pool = write_pool(tmp_path / "s.parquet", skills)
    table = pq.read_table(pool).drop_columns(["response"])
    pq.write_table(table.append_column("response", pa.array(responses)), pool)
    prof = write_profile(tmp_path / "p.json", [node(list(leaf), 0.5) for leaf in LEAVES])
    cfg = SelectConfig(budget=40, max_tokens=300)
    res = run_select(pool, tmp_path / "o", cfg, profile_json=prof, tokenizer=smollm_tokenizer, progress=False)
    sel = pq.read_table(res.out_dir / "selection.parquet")
    assert res.n_selected == 30  # only the short ones fit
    assert all(n <= 300 for n in sel.column("n_tokens").to_pylist())
    assert all(int(i[1:]) % 2 == 0 for i in sel.column("id").to_pylist())
    assert res.report["length"]["rejected"] == 30
    assert any("longer than 300 tokens" in m for m in res.report["messages"])


def test_cli_select(tmp_path: Path, small_pool):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    pool, prof = small_pool
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["select", str(pool), "--out", str(out), "--profile", str(prof), "--budget", "25", "--strategy", "skill-quota"])
    assert res.exit_code == 0, res.output
    assert pq.read_table(out / "selection.parquet").num_rows == 25
    res = runner.invoke(app, ["select", str(pool), "--out", str(out), "--strategy", "best"])
    assert res.exit_code == 2 and "strategy" in res.output
    res = runner.invoke(app, ["select", str(tmp_path / "nope.parquet"), "--out", str(out), "--strategy", "random"])
    assert res.exit_code == 2 and "not found" in res.output


# -- the authors' variants and baselines, on hand-computed cases ------------------------
def _item_profile(path: Path, ids: list[str], solved: list[bool]) -> Path:
    pq.write_table(pa.table({"id": ids, "n_samples": [1] * len(ids), "n_correct": [int(s) for s in solved],
                             "accuracy": [float(s) for s in solved], "solved": solved,
                             "n_truncated": [0] * len(ids)}), path)
    return path


def test_forced_distribution_greedy_projection_by_hand(tmp_path: Path):
    """Target (0.75, 0.25); items 0:{A} 1:{A} 2:{B} 3:{A,B} 4:{A}. By hand (L2 distance of the
    selected leaf shares to the target after adding each candidate):
    step 1: item 0 -> 0.125, item 3 -> 0.125 (tie: lowest index), item 2 -> 1.125: take 0;
    step 2 (counts 1,0): item 3 -> (2,1)/3 = 0.0139 beats items 1, 2 (0.125): take 3;
    step 3 (2,1): item 1 -> (3,1)/4 = the target exactly: take 1;
    step 4 (3,1): item 4 -> (4,1)/5, 0.005, beats item 2 -> (3,2)/5, 0.045: take 4."""
    a, b = ["S", "A"], ["S", "B"]
    index = LeafIndex.from_skills(pa.array([[a], [a], [b], [a, b], [a]], SKILLS_TYPE))
    assert index.keys == [tuple(a), tuple(b)]
    d = draw_forced(index, np.array([3.0, 1.0]), 4)
    assert d.items == [0, 3, 1, 4]
    # quotas: 2 solved (items 1, 2 are), 2 unsolved
    solved = np.array([0, 1, 1, 0, 0], dtype=np.int8)
    q = draw_forced(index, np.array([3.0, 1.0]), 4, solved=solved, correct_portion=0.5)
    assert sorted(int(solved[i]) for i in q.items) == [0, 0, 1, 1] and q.items[0] == 0
    # through the stage: same items, deterministic whatever the seed
    pool = write_pool(tmp_path / "skills.parquet", [[a], [a], [b], [a, b], [a]])
    prof = write_profile(tmp_path / "p.json", [node(a, 1 / 3), node(b, 1.0)])  # weights 3 and 1
    for seed in (0, 1):
        res = run_select(pool, tmp_path / f"f{seed}", SelectConfig(strategy="forced", budget=4, seed=seed),
                         profile_json=prof, progress=False)
        assert pq.read_table(res.out_dir / "selection.parquet").column("id").to_pylist() == ["q0", "q3", "q1", "q4"]
    rows = {r["leaf"]: r for r in res.report["leaf_table"]}
    assert rows["S->A"]["realised_count"] == 4 and rows["S->B"]["realised_count"] == 1


def test_per_leaf_correct_portion_by_hand(tmp_path: Path):
    """Leaf A: 3 solved, 10 unsolved; p = 0.5 -> total = min(3 // 0.5, 10 // 0.5) = 6: 3 + 3.
    Leaf B: 8 solved, 2 unsolved -> total = min(16, 4) = 4: 2 + 2. 10 items in all."""
    a, b = ["S", "A"], ["S", "B"]
    skills = [[a]] * 13 + [[b]] * 10
    solved = [True] * 3 + [False] * 10 + [True] * 8 + [False] * 2
    pool = write_pool(tmp_path / "skills.parquet", skills)
    ids = [f"q{i}" for i in range(23)]
    ip = _item_profile(tmp_path / "profile.parquet", ids, solved)
    prof = write_profile(tmp_path / "p.json", [node(a, 0.2), node(b, 0.8)])
    cfg = SelectConfig(strategy="skill", budget=50, correct_portion=0.5, correct_portion_scope="leaf")
    res = run_select(pool, tmp_path / "out", cfg, profile_json=prof, item_profile=ip, progress=False)
    assert res.report["pool"]["balanced_per_leaf"] == {"solved": 5, "unsolved": 5, "leaves_emptied": 0}
    sel = pq.read_table(res.out_dir / "selection.parquet")
    got = sel.column("id").to_pylist()
    assert res.n_selected == 10  # the balanced subsets, then the pool ran dry
    in_a = [int(i[1:]) for i in got if int(i[1:]) < 13]
    assert sum(1 for i in in_a if i < 3) == 3 and len(in_a) == 6
    assert res.report["correct_portion"]["scope"] == "leaf" and res.report["correct_portion"]["selected_solved"] == 5
    with pytest.raises(ConfigError, match="correct_portion_scope 'leaf'"):
        run_select(pool, tmp_path / "bad", cfg.model_copy(update={"strategy": "random"}), profile_json=prof,
                   item_profile=ip, progress=False)


def test_max_depth_cuts_chains_before_leaves(tmp_path: Path, small_pool):
    pool, prof = small_pool
    res = run_select(pool, tmp_path / "d1", SelectConfig(strategy="skill-quota", budget=40, max_depth=1),
                     profile_json=prof, progress=False)
    rows = {r["leaf"]: r for r in res.report["leaf_table"]}
    assert set(rows) == {"Algebra", "Geometry"}  # the depth-1 nodes are the leaves now
    assert rows["Algebra"]["accuracy"] == 0.4 and rows["Algebra"]["accuracy_source"] == "leaf"  # the inner node's own value
    # each item once per depth-1 node, however many of its chains end below it
    table = pq.read_table(pool).column("skills").to_pylist()
    assert rows["Algebra"]["pool_items"] == sum(any(c[0] == "Algebra" for c in s) for s in table)
    assert res.report["pool"]["max_depth"] == 1
    idx = LeafIndex.from_skills(pa.array(table, SKILLS_TYPE)).truncate(1)
    assert sorted(idx.keys) == [("Algebra",), ("Geometry",)] and idx.sizes().sum() == sum(
        len({c[0] for c in s}) for s in table)


def test_only_skill_and_raw_accuracy_without_verdicts(tmp_path: Path, small_pool):
    pool, prof = small_pool
    res = run_select(pool, tmp_path / "o", SelectConfig(strategy="random", budget=500, only_skill="circles"),
                     profile_json=prof, progress=False)
    table = pq.read_table(pool)
    under = {r["id"] for r in table.to_pylist() if ["Geometry", "circles"] in r["skills"]}
    got = set(pq.read_table(res.out_dir / "selection.parquet").column("id").to_pylist())
    assert got == under  # every item of the leaf, nothing else
    assert res.report["pool"]["only_skill"]["leaves"] == ["Geometry->circles"]
    with pytest.raises(ConfigError, match="closest: circles"):
        run_select(pool, tmp_path / "o2", SelectConfig(strategy="skill", only_skill="circle"), profile_json=prof,
                   progress=False)
    # raw accuracy, the leaf without a verdict left out (the authors): it gets nothing
    prof2 = write_profile(tmp_path / "p2.json", [
        node([], 0.4, leaf=False), node(["Algebra"], 0.4, leaf=False), node(["Geometry"], 0.4, leaf=False),
        node(LEAVES[0], 0.5), node(LEAVES[1], None), node(LEAVES[2], 0.1), node(LEAVES[3], 0.8),
    ])
    only_own = set(r["id"] for r in table.to_pylist() if ["Algebra", "inequalities"] in r["skills"]
                   and len(r["skills"]) == 1)
    cfg = SelectConfig(strategy="skill-quota", budget=100, accuracy="raw", unprofiled_leaves="exclude")
    ex = run_select(pool, tmp_path / "raw", cfg, profile_json=prof2, progress=False)
    rows = {r["leaf"]: r for r in ex.report["leaf_table"]}
    assert rows["Algebra->inequalities"]["realised_count"] == 0 and rows["Algebra->inequalities"]["target_p"] == 0
    assert ex.report["pool"]["leaves_without_verdict_excluded"] == 1
    assert not only_own & set(pq.read_table(ex.out_dir / "selection.parquet").column("id").to_pylist())
    # weights by hand: 1/0.5, 1/0.1, 1/0.8 -> shares 2/13.25, 10/13.25, 1.25/13.25
    assert rows["Geometry->triangles"]["target_p"] == pytest.approx(10 / 13.25, abs=1e-6)
    # the default fills the gap from the ancestor (Algebra, 0.4) instead
    fb = run_select(pool, tmp_path / "fb", cfg.model_copy(update={"unprofiled_leaves": "ancestor"}),
                    profile_json=prof2, progress=False)
    assert {r["leaf"]: r for r in fb.report["leaf_table"]}["Algebra->inequalities"]["accuracy_source"] == "ancestor"


def test_difficulty_baseline_on_the_pass_rate(tmp_path: Path):
    rates = ["0.2", "0.25", "0.5", "0.625", "0.7", "n/a", None, 0.3, "0.6251"]
    pool = write_pool(tmp_path / "skills.parquet", [[["S", "A"]]] * len(rates), extra={
        "meta": [json.dumps({"pass_rate_72b_tir": r, "problem_type": "has_answer_extracted"}) for r in rates]})
    res = run_select(pool, tmp_path / "d", SelectConfig(strategy="difficulty", budget=10), progress=False)
    got = sorted(pq.read_table(res.out_dir / "selection.parquet").column("id").to_pylist())
    assert got == ["q1", "q2", "q3", "q7"]  # inclusive [0.25, 0.625]; 'n/a', null, 0.6251 out
    assert res.report["pool"]["difficulty"] == {"field": "pass_rate_72b_tir", "range": [0.25, 0.625],
                                                "with_rate": 7, "in_range": 4}
    two = run_select(pool, tmp_path / "d2", SelectConfig(strategy="difficulty", budget=2, seed=3), progress=False)
    again = run_select(pool, tmp_path / "d3", SelectConfig(strategy="difficulty", budget=2, seed=3), progress=False)
    assert pq.read_table(two.out_dir / "selection.parquet").equals(pq.read_table(again.out_dir / "selection.parquet"))
    with pytest.raises(InputError, match="no item has a pass rate"):
        run_select(pool, tmp_path / "d4", SelectConfig(strategy="difficulty", difficulty_field="nope"), progress=False)


def test_the_package_imports_its_stage_code_only_when_asked():
    import subprocess
    import sys

    code = ("import sys, skilldistill.select, skilldistill.select.config; "
            "loaded = sorted(m for m in sys.modules if m.startswith('skilldistill.select.')); "
            "assert loaded == ['skilldistill.select.config'], loaded; "
            "heavy = sorted(m for m in ('numpy', 'pyarrow', 'torch') if m in sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
    from skilldistill.select import SelectConfig as exported_config
    from skilldistill.select import run_select as exported_run

    assert exported_run is run_select and exported_config is SelectConfig
