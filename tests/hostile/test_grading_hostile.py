"""Hostile answers: every per-item cost inside the hard limit, no verdict for what was not graded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from skilldistill.grading import GradingPool, extract_final_answer, grade_many


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("response", [
    "Final answer" + " " * 100_000 + "x",                   # was 169 s with --timeout 5
    "\\boxed{" * 20_000,                                     # was 2.7 s for 14k
    "answer is " + "\n " * 50_000 + "3",
    "The answer is " + "(" * 50_000,
])
def test_pathological_answers_extract_in_linear_time(response):
    t0 = time.perf_counter()
    extract_final_answer(response)
    assert time.perf_counter() - t0 < 1.0


def test_grade_cli_on_hostile_rows_stays_within_its_limits(tmp_path):
    rows = [{"answer": "1", "response": "Final answer" + " " * 100_000 + "x"} for _ in range(25)]
    rows.append({"answer": "1", "response": "\\boxed{1}"})
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0 = time.time()
    r = _cli("grade", str(src), "--processes", "1", "--timeout", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.time() - t0 < 60  # was 586 s at --timeout 10
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"n": 26, "correct": 1, "accuracy": 1 / 26}


def test_a_zero_timeout_is_refused_not_everything_marked_wrong(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps({"answer": "1", "response": "\\boxed{1}"}) + "\n")
    r = _cli("grade", str(src), "--timeout", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        GradingPool(1, timeout_s=0)


def test_lone_surrogates_do_not_lose_the_grades(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text('{"answer": "1", "response": "\\\\boxed{1} \\ud800"}\n{"answer": "2", "response": "\\\\boxed{3}"}\n')
    for out in (tmp_path / "g.jsonl", tmp_path / "g.parquet"):
        r = _cli("grade", str(src), "--out", str(out))
        assert r.returncode == 0, r.stderr[-2000:]
        assert out.exists()
    back = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [b["correct"] for b in back] == [True, False] and back[0]["response"].endswith("\ud800")


def test_results_come_back_for_every_answer_or_the_call_raises():
    res = grade_many(["1", "2", "3"], ["\\boxed{1}", "\\boxed{2}", "\\boxed{4}"], processes=2)
    assert [r.correct for r in res] == [True, True, False] and all(r.error is None for r in res)
