"""The demo world's problem generator: answers, skills, splits, seeds, schema."""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction
from math import comb, gcd

import pyarrow.parquet as pq
import pytest

from skilldistill.demo import generator as g
from skilldistill.demo.generator import (
    LEAF_CHAINS,
    SKILLS,
    WEAK_LEAVES,
    generate_corpus,
    generate_eval_set,
    generate_leaf_problems,
    generate_problems,
    skewed_weights,
    split_of,
    write_corpus,
)
from skilldistill.textutil import last_boxed, normalize_question
from skilldistill.tree import SkillTree

LEAVES = ["->".join(c) for c in LEAF_CHAINS]


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return generate_corpus(1200, seed=0, as_table=False)


@pytest.fixture(scope="module")
def eval_rows() -> list[dict]:
    return generate_eval_set(12, seed=0, as_table=False)


def _value(text: str) -> Fraction:
    return Fraction(text.strip())


# Independent solvers for single-skill questions: parse the question, recompute the
# answer with Python arithmetic (never the generator's code path).
def _n(s: str) -> int:
    return int(s)


def solve_single(leaf: str, q: str) -> Fraction | None:
    nums = [int(x) for x in re.findall(r"\d+", q)]
    if leaf == "Arithmetic->Addition and subtraction":
        a, b, c = nums
        return Fraction(a + b - c)
    if leaf == "Arithmetic->Multiplication and division":
        a, b = nums
        if re.search(r"divided by|Divide|shared equally", q):
            return Fraction(a, b)
        return Fraction(a * b)
    if leaf == "Arithmetic->Order of operations":
        m = re.search(r"(\d+) \+ (\d+) \* (\d+)", q)
        if m:
            c, a, b = map(_n, m.groups())
            return Fraction(c + a * b)
        a, b, c = map(_n, re.search(r"(\d+) \* (\d+) - (\d+)", q).groups())
        return Fraction(a * b - c)
    if leaf == "Fractions and percents->Adding fractions":
        a, d1, b, d2 = nums
        return Fraction(a, d1) + Fraction(b, d2)
    if leaf == "Fractions and percents->Simplifying fractions":
        a, b = nums
        return Fraction(a, b)
    if leaf == "Fractions and percents->Percent of a number":
        pct = int(re.search(r"(\d+)%", q).group(1))
        (n,) = [int(x) for x in re.findall(r"\d+", re.sub(r"\d+%", "", q))]
        return Fraction(pct * n, 100)
    if leaf == "Algebra->Linear equations":
        a, b, c = map(_n, re.search(r"(\d+)x \+ (\d+) = (\d+)", q).groups())
        return Fraction(c - b, a)
    if leaf == "Algebra->Evaluating expressions":
        y = int(re.search(r"y = (\d+)", q).group(1))
        a, op, b = re.search(r"(\d+)y ([+-]) (\d+)", q).groups()
        return Fraction(int(a) * y + (int(b) if op == "+" else -int(b)))
    if leaf == "Algebra->Arithmetic sequences":
        t0, t1, _t2, k = nums
        return Fraction(t0 + (k - 1) * (t1 - t0))
    if leaf == "Number theory->Greatest common divisor":
        a, b = nums
        return Fraction(gcd(a, b))
    if leaf == "Number theory->Least common multiple":
        a, b = nums
        return Fraction(a * b // gcd(a, b))
    if leaf == "Number theory->Remainders":
        n, k = nums
        return Fraction(n % k)
    if leaf == "Geometry->Rectangles":
        w, h = nums
        return Fraction(w * h if "area" in q else 2 * (w + h))
    if leaf == "Geometry->Triangle angles":
        a, b = nums
        return Fraction(180 - a - b)
    if leaf == "Counting->Product rule":
        a, b = nums
        return Fraction(a * b)
    if leaf == "Counting->Choosing pairs":
        n = max(nums)  # the group size (some wordings also say "2 of")
        ordered = re.search(r"president|gold|order|card|first and a second|codes|gift", q)
        return Fraction(n * (n - 1) if ordered else comb(n, 2))
    raise AssertionError(f"no solver for {leaf}")


def test_every_skill_chain_is_a_demo_leaf(pool, eval_rows):
    tree = SkillTree.bundled("demo")
    assert [s.chain for s in SKILLS] == tree.leaves()
    for row in pool + eval_rows:
        assert 1 <= len(row["true_skills"]) <= 3
        for chain in row["true_skills"]:
            assert tree.is_leaf_chain(chain), chain
        meta = json.loads(row["meta"])
        assert meta["true_skills"] == ["->".join(c) for c in row["true_skills"]]


@pytest.mark.parametrize("leaf", LEAVES)
def test_single_skill_answers_are_right(leaf):
    problems = generate_leaf_problems(leaf, 25, seed=3, split="train")
    for p in problems:
        assert p.skills == [tuple(leaf.split("->"))]
        expected = solve_single(leaf, p.question)
        assert _value(p.answer) == expected, (p.question, p.answer, expected)
        assert last_boxed(p.response) == p.answer


_FACT = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def test_every_written_step_is_true_arithmetic(pool):
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: Fraction(a, b)}
    checked = 0
    for row in pool:
        for line in row["response"].split("\n"):
            for a, op, b, c in _FACT.findall(line):
                # "2x = 19 - 4 = 15": the regex sees "19 - 4 = 15"
                assert ops[op](int(a), int(b)) == int(c), (row["question"], line)
                checked += 1
        assert row["response"].rstrip().endswith(f"\\boxed{{{row['answer']}}}.")
        assert last_boxed(row["response"]) == row["answer"]
    assert checked > 1.5 * len(pool)


def test_composed_problems_chain_their_values(pool):
    composed = [r for r in pool if len(r["true_skills"]) > 1]
    assert len(composed) > 0.15 * len(pool)
    for row in composed:
        assert row["question"].startswith("Let n be ")
        assert "So n = " in row["response"]
        if len(row["true_skills"]) == 3:
            assert "Let m be " in row["question"] and "So m = " in row["response"]


def test_seeds_reproduce_and_differ():
    a = generate_corpus(150, seed=7, as_table=False)
    b = generate_corpus(150, seed=7, as_table=False)
    c = generate_corpus(150, seed=8, as_table=False)
    assert a == b
    assert [r["id"] for r in a] != [r["id"] for r in c]
    assert generate_eval_set(3, seed=1, as_table=False) == generate_eval_set(3, seed=1, as_table=False)


def test_eval_set_disjoint_from_pool(pool, eval_rows):
    pool_q = {normalize_question(r["question"]) for r in pool}
    for other_seed in (1, 2):
        pool_q |= {normalize_question(r["question"]) for r in generate_corpus(400, other_seed, as_table=False)}
    eval_q = {normalize_question(r["question"]) for r in eval_rows}
    assert not pool_q & eval_q
    assert all(split_of(r["question"]) == "eval" for r in eval_rows)
    assert all(split_of(r["question"]) == "train" for r in pool)


def test_eval_set_has_n_single_skill_problems_per_leaf(eval_rows):
    counts = Counter("->".join(r["true_skills"][0]) for r in eval_rows)
    assert counts == {leaf: 12 for leaf in LEAVES}
    assert all(len(r["true_skills"]) == 1 for r in eval_rows)
    assert len({r["id"] for r in eval_rows}) == len(eval_rows)


def test_ids_unique_and_stable(pool):
    ids = [r["id"] for r in pool]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("demo-") and len(i) == 21 for i in ids)
    assert len({normalize_question(r["question"]) for r in pool}) == len(pool)


def test_pool_covers_all_leaves_evenly(pool):
    counts = Counter("->".join(c) for r in pool for c in r["true_skills"])
    assert set(counts) == set(LEAVES)
    assert max(counts.values()) < 3 * min(counts.values())


def test_skewed_weights_make_weak_leaves_rare():
    problems = generate_problems(800, seed=0, leaf_weights=skewed_weights(0.05))
    counts = Counter("->".join(c) for p in problems for c in p.skills)
    strong = [counts[leaf] for leaf in LEAVES if leaf not in WEAK_LEAVES]
    weak = [counts[leaf] for leaf in WEAK_LEAVES]
    assert max(weak) * 4 < min(strong)
    assert sum(weak) > 0


def test_short_solutions():
    rows = generate_corpus(300, seed=4, as_table=False)
    assert max(len(r["response"]) for r in rows) < 400
    assert max(len(r["question"]) for r in rows) < 330


def test_table_schema_and_writers(tmp_path):
    table = generate_corpus(40, seed=2)
    assert table.column_names == ["id", "question", "response", "answer", "source", "meta", "true_skills"]
    assert str(table.schema.field("true_skills").type) == "list<item: list<item: string>>"
    assert set(table.column("source").to_pylist()) == {"demo"}
    meta = json.loads(table.column("meta")[0].as_py())
    assert {"true_skills", "difficulty", "n_skills", "split", "generator"} <= set(meta)
    assert meta["difficulty"] == meta["n_skills"]
    write_corpus(table, tmp_path / "c.parquet")
    assert pq.read_table(tmp_path / "c.parquet").to_pylist() == table.to_pylist()
    write_corpus(table, tmp_path / "c.jsonl")
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == table.to_pylist()


def test_unknown_leaf_is_rejected():
    with pytest.raises(ValueError, match="unknown demo leaves"):
        generate_problems(5, 0, leaf_weights={"Arithmetic->Nope": 1.0})
    with pytest.raises(ValueError, match="split"):
        generate_problems(5, 0, split="test")


def test_reasoning_gym_mix_is_optional_and_labelled():
    pytest.importorskip("reasoning_gym")
    rows = generate_corpus(40, seed=0, gym_fraction=0.25, as_table=False)
    gym = [r for r in rows if r["source"].startswith("reasoning-gym/")]
    assert 5 <= len(gym) <= 10
    for r in gym:
        task = r["source"].split("/", 1)[1]
        assert r["true_skills"] == [g.GYM_TASKS[task].split("->")]
        assert last_boxed(r["response"]) == r["answer"]
        assert split_of(r["question"]) == "train"


def test_train_dev_and_eval_splits_never_overlap():
    from skilldistill.demo.generator import generate_eval_set, split_of

    dev = generate_eval_set(10, seed=0, as_table=False, split="dev")
    ev = generate_eval_set(10, seed=0, as_table=False)
    pool = generate_corpus(500, seed=0, as_table=False)
    assert {split_of(r["question"]) for r in dev} == {"dev"}
    assert {split_of(r["question"]) for r in ev} == {"eval"}
    assert {split_of(r["question"]) for r in pool} == {"train"}
    qs = [{r["question"] for r in rows} for rows in (dev, ev, pool)]
    assert not (qs[0] & qs[1] or qs[0] & qs[2] or qs[1] & qs[2])
    with pytest.raises(ValueError, match="eval or dev"):
        generate_eval_set(1, split="train")
