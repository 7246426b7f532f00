"""Benchmark registry on the real benchmark files, avg@n, per-skill accuracy."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.benchmarks import BENCHMARKS, PAPER_BENCHMARKS, load_benchmark
from skilldistill.errors import ConfigError, InputError
from skilldistill.evaluate.config import EvaluateConfig
from skilldistill.evaluate.metrics import avg_at_n, per_skill_accuracy
from skilldistill.evaluate.scoring import load_item_skills


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
    assert cfg.n_for("aime24") == 8 and cfg.n_for("amc23") == 8 and cfg.n_for("math_l5") == 8 and cfg.n_for("olympiadbench") == 1
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


def test_evaluate_benchmark_grades_rows_and_writes_results(tmp_path, shared_data):
    from skilldistill.evaluate.scoring import evaluate_benchmark

    items = load_benchmark("aime25", data_dir=shared_data / "benchmarks", limit=2)
    rows = [
        {"id": items[0].id, "sample": 0, "response": f"<think>hmm</think> The answer is $\\boxed{{{items[0].answer}}}$.", "finish_reason": "stop", "completion_tokens": 9, "seed": 0},
        {"id": items[0].id, "sample": 1, "response": "<think>never closed", "finish_reason": "length", "completion_tokens": 50, "seed": 0},
        {"id": items[1].id, "sample": 0, "response": "\\boxed{1}", "finish_reason": "stop", "completion_tokens": 3, "seed": 0},
        {"id": items[1].id, "sample": 1, "response": f"so \\boxed{{{items[1].answer}}}", "finish_reason": "stop", "completion_tokens": 4, "seed": 0},
    ]
    res = evaluate_benchmark("aime25", items, rows, tmp_path, config=EvaluateConfig(grading_processes=0), run_info={"model": "m"})
    assert res["accuracy"] == pytest.approx(0.5) and res["n_samples"] == 2 and res["n_problems"] == 2
    assert res["truncated_share"] == pytest.approx(0.25)
    assert res["per_sample_accuracy"] == pytest.approx([0.5, 0.5]) and res["pass_at_n"] == 1.0
    samples = pq.read_table(tmp_path / "samples.parquet").to_pylist()
    assert [s["correct"] for s in samples] == [True, False, False, True]
    assert json.loads((tmp_path / "results.json").read_text())["model"] == "m"


@pytest.mark.slow
def test_run_evaluate_end_to_end_and_resume(tmp_path, shared_data, tiny_chat_model_dir, tiny_transformers_backend):
    from skilldistill.evaluate.stage import run_evaluate
    from skilldistill.generate import GenerationConfig
    from skilldistill.llm.base import BackendConfig

    # a custom held-out file with skills, as the demo writes it
    items = load_benchmark("math500", data_dir=shared_data / "benchmarks", limit=3)
    held = tmp_path / "held.parquet"
    pq.write_table(pa.table({"id": [i.id for i in items], "question": [i.question for i in items],
                             "answer": [i.answer for i in items],
                             "skills": [[["Algebra", "x"]], [["Algebra", "y"]], [["Geometry", "z"]]]}), held)
    cfg = EvaluateConfig(benchmarks=["aime24", "held"], data_dir=str(shared_data / "benchmarks"), files={"held": str(held)},
                         skills={"held": str(held)}, limit=2, n_samples={"aime24": 2}, grading_processes=0)
    gen = GenerationConfig(backend=BackendConfig(kind="transformers", model=str(tiny_chat_model_dir), device="cpu"),
                           max_new_tokens=6, temperature=0.0)
    out = tmp_path / "eval"
    res = run_evaluate(out, cfg, gen, backend=tiny_transformers_backend, show_progress=False)
    assert res["aime24"]["n_problems"] == 2 and res["aime24"]["n_samples"] == 2
    assert pq.read_table(out / "aime24" / "samples.parquet").num_rows == 4
    assert res["held"]["n_problems"] == 2 and set(res["held"]["per_skill"]) == {"Algebra", "Algebra->x", "Algebra->y"}
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["benchmarks"]) == {"aime24", "held"} and summary["summary"]["average"] is not None
    log = (out / "aime24" / "generations.jsonl").read_text()
    run_evaluate(out, cfg, gen, backend=tiny_transformers_backend, show_progress=False)  # resumes: nothing new
    assert (out / "aime24" / "generations.jsonl").read_text() == log
    # fresh (the pipeline's clean rerun): the old samples are gone, the folder's lock file is
    # kept (it is held while the folder is cleared), and every sample is generated again
    (out / "aime24" / "generations.jsonl").write_text(log.replace('"response": "', '"response": "STALE '))
    (out / "leftover.txt").write_text("from another run")
    run_evaluate(out, cfg, gen, backend=tiny_transformers_backend, show_progress=False, fresh=True)
    assert not (out / "leftover.txt").exists() and (out / ".skilldistill.lock").exists()
    assert "STALE" not in (out / "aime24" / "generations.jsonl").read_text()
    assert pq.read_table(out / "aime24" / "samples.parquet").num_rows == 4


def test_a_truncated_sample_counts_wrong_even_with_a_correct_box(tmp_path, shared_data):
    # finish_reason "length": the cap cut the output; a \boxed{} written before the cut is
    # no final answer (issue 16 #4: it used to count correct, against the docs)
    from skilldistill.evaluate.scoring import evaluate_benchmark

    items = load_benchmark("aime25", data_dir=shared_data / "benchmarks", limit=1)
    rows = [{"id": items[0].id, "sample": 0, "response": f"\\boxed{{{items[0].answer}}} and then it went on",
             "finish_reason": "length", "completion_tokens": 50, "seed": 0},
            {"id": items[0].id, "sample": 1, "response": f"\\boxed{{{items[0].answer}}}", "finish_reason": "stop",
             "completion_tokens": 5, "seed": 0}]
    res = evaluate_benchmark("aime25", items, rows, tmp_path, config=EvaluateConfig(grading_processes=0),
                             run_info={})
    samples = pq.read_table(tmp_path / "samples.parquet").to_pylist()
    assert [(s["correct"], s["truncated"]) for s in samples] == [(False, True), (True, False)]
    assert res["accuracy"] == 0.5 and res["truncated_share"] == 0.5


def test_cli_evaluate_resumes_and_fresh_discards_the_old_samples(tmp_path, shared_data, tiny_chat_model_dir):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_chat_model_dir), "--out", str(out), "--benchmarks", "aime24",
            "--data-dir", str(shared_data / "benchmarks"), "--limit", "1", "--n", "aime24=1", "--max-new-tokens", "4",
            "--device", "cpu"]
    assert CliRunner().invoke(app, args).exit_code == 0
    log = out / "aime24" / "generations.jsonl"
    log.write_text(log.read_text().replace('"response": "', '"response": "STALE '))
    assert CliRunner().invoke(app, args).exit_code == 0
    assert "STALE" in log.read_text()  # resumed: the logged sample is kept
    res = CliRunner().invoke(app, [*args, "--fresh"])
    assert res.exit_code == 0, res.output
    assert "STALE" not in log.read_text()  # a retrained model in the same folder: asked again
