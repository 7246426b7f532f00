"""Benchmark registry on the real benchmark files, avg@n, per-skill accuracy."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.errors import ConfigError, InputError
from skilldistill.evaluate import (
    BENCHMARKS,
    PAPER_BENCHMARKS,
    EvaluateConfig,
    avg_at_n,
    load_benchmark,
    load_item_skills,
    per_skill_accuracy,
)


@pytest.mark.parametrize(
    ("name", "count", "first_answer"),
    [
        ("aime24", 30, "204"),
        ("aime25", 30, "70"),
        ("amc23", 40, "27"),  # stored as the float 27.0
        ("math500", 500, "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("math_l5", 134, "p - q"),
        ("olympiadbench", 581, "2"),  # single-answer subset of 675
        ("minerva", 272, "1.6"),
    ],
)
def test_registry_loads_local_harness_layout(shared_data, name, count, first_answer):
    items = load_benchmark(name, data_dir=shared_data / "benchmarks")
    assert len(items) == count
    assert items[0].answer == first_answer
    assert all(it.question and it.answer for it in items)
    assert len({it.id for it in items}) == count


def test_gsm8k_from_explicit_file_and_limit(shared_data):
    items = load_benchmark("gsm8k", path=shared_data / "corpora" / "gsm8k" / "test.jsonl", limit=5)
    assert [it.answer for it in items][:2] == ["18", "3"]
    assert len(items) == 5


def test_paper_benchmarks_and_sample_counts():
    assert set(PAPER_BENCHMARKS) <= set(BENCHMARKS)
    cfg = EvaluateConfig(n_samples={"math500": 4})
    assert cfg.n_for("aime24") == 8 and cfg.n_for("amc23") == 8 and cfg.n_for("math_l5") == 1
    assert cfg.n_for("math500") == 4
    with pytest.raises(ConfigError):
        cfg.n_for("nope")


def test_missing_local_benchmark_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found under the data dir"):
        load_benchmark("aime24", data_dir=tmp_path)
    bad = tmp_path / "aime24"
    bad.mkdir()
    (bad / "test.jsonl").write_text(json.dumps({"problem": "x"}) + "\n")
    with pytest.raises(InputError) as e:
        load_benchmark("aime24", data_dir=tmp_path)
    assert e.value.field == "answer" and e.value.row == 1


def test_avg_at_n_mean_spread_pass():
    m = avg_at_n([[True, False, True, True], [False, False, False, False], [True, True, True, True]])
    assert m["accuracy"] == pytest.approx((0.75 + 0 + 1) / 3)
    assert m["per_sample_accuracy"] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert m["pass_at_n"] == pytest.approx(2 / 3)
    assert m["std"] == pytest.approx(0.16666666, rel=1e-4)  # sample std of the 4 per-run accuracies
    assert avg_at_n([[True]])["std"] == 0.0


def test_per_skill_accuracy_counts_every_prefix():
    acc = {"a": 1.0, "b": 0.0, "c": 0.5}
    skills = {"a": [["Algebra", "linear"]], "b": [["Algebra", "quadratic"], ["Geometry", "area"]], "c": [["Algebra", "linear"]]}
    out = per_skill_accuracy(acc, skills)
    assert out["Algebra"]["n"] == 3 and out["Algebra"]["accuracy"] == pytest.approx(0.5)
    assert out["Algebra->linear"]["accuracy"] == pytest.approx(0.75)
    assert out["Geometry->area"] == {"path": ["Geometry", "area"], "depth": 2, "n": 1, "accuracy": 0.0}


def test_item_skills_join_on_normalised_question(tmp_path, shared_data):
    items = load_benchmark("aime25", data_dir=shared_data / "benchmarks", limit=3)
    t = pa.table({"question": ["  " + items[1].question.upper() + " "], "skills": [[["Number Theory", "bases"]]]})
    pq.write_table(t, tmp_path / "s.parquet")
    assert load_item_skills(tmp_path / "s.parquet", items) == {items[1].id: [["Number Theory", "bases"]]}
