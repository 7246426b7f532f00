"""Hostile values that used to be coerced silently: NaN/inf/huge-float answers, non-text responses
and ids, UTF-16/UTF-32/BOM files, empty exclusion files, and ``grade`` rows without a gold answer.

Each is refused with a message naming the file, row and field, or handled explicitly and counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.corpus.config import IngestConfig
from skilldistill.corpus.stage import ingest
from skilldistill.errors import InputError

GOOD = [{"problem": f"What is {i} + 1?", "solution": f"It is \\boxed{{{i + 1}}}.", "answer": str(i + 1)}
        for i in range(4)]


def _jsonl_text(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _write(path, rows):
    path.write_text(_jsonl_text(rows))
    return path


def _cfg(src, **kw):
    kw.setdefault("answer_field", "answer")
    return IngestConfig(source=str(src), question_field="problem", response_field="solution", **kw)


def _cli(*args: str, cwd=None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "300"})


def _stored(out) -> list[dict]:
    return pq.read_table(out / "corpus.parquet").to_pylist()


# ---------------------------------------------------------------------------------------------
# Answers, responses and ids of a corpus row
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, reason", [
    (float("nan"), "missing answer"),                          # pandas' missing value: was stored as "nan"
    (float("inf"), "answer is not a finite number (inf)"),      # was stored as "inf"
    (float("-inf"), "answer is not a finite number (-inf)"),
    ([1, float("nan")], "answer is not text or a number (a list holding nan)"),  # was "1, nan"
    ([1, True], "answer is not text or a number (a list holding a bool)"),
    ([[1, 2]], "answer is not text or a number (a list holding a list)"),
])
def test_non_finite_answers_are_dropped_and_counted_never_stored_as_text(tmp_path, value, reason):
    rows = [dict(r) for r in GOOD]
    rows[2]["answer"] = value
    rep = ingest(_cfg(_write(tmp_path / "c.jsonl", rows)), tmp_path / "o", progress=False)
    assert rep.rows_written == 3 and dict(rep.dropped) == {reason: 1}
    assert all(r["answer"] in {"1", "2", "4"} for r in _stored(tmp_path / "o"))
    with pytest.raises(InputError) as e:
        ingest(_cfg(tmp_path / "c.jsonl", on_error="fail"), tmp_path / "o2", progress=False)
    assert str(e.value) == f"{tmp_path / 'c.jsonl'}, line 3, field 'answer': {reason}"


def test_a_huge_float_answer_keeps_its_float_text_and_whole_floats_still_lose_their_point_zero(tmp_path):
    rows = [dict(r) for r in GOOD]
    rows[0]["answer"], rows[1]["answer"], rows[2]["answer"] = 1e300, 3.0, -2.5e-7
    ingest(_cfg(_write(tmp_path / "c.jsonl", rows)), tmp_path / "o", progress=False)
    answers = [r["answer"] for r in _stored(tmp_path / "o")]
    assert answers == ["1e+300", "3", "-2.5e-07", "4"]  # 1e300 was a 301-digit integer


@pytest.mark.parametrize("value, kind", [
    (["It is \\boxed{3}.", "or \\boxed{4}"], "list"),   # was joined with ", " into one response
    (42, "int"), (True, "bool"), ({"text": "\\boxed{3}"}, "dict"),
])
def test_a_response_that_is_not_text_is_refused_not_joined_or_repr(tmp_path, value, kind):
    rows = [dict(r) for r in GOOD]
    rows[2]["solution"] = value
    rep = ingest(_cfg(_write(tmp_path / "c.jsonl", rows)), tmp_path / "o", progress=False)
    assert rep.rows_written == 3 and dict(rep.dropped) == {f"response is not text (a {kind})": 1}
    assert all(r["response"].startswith("It is") for r in _stored(tmp_path / "o"))
    with pytest.raises(InputError) as e:
        ingest(_cfg(tmp_path / "c.jsonl", on_error="fail"), tmp_path / "o2", progress=False)
    assert str(e.value) == f"{tmp_path / 'c.jsonl'}, line 3, field 'solution': response is not text (a {kind})"


@pytest.mark.parametrize("value, kind", [({"a": 1}, "dict"), ([1, 2], "list"), (False, "bool")])
def test_an_id_that_is_not_text_or_a_number_is_refused_not_its_repr(tmp_path, value, kind):
    rows = [dict(r, uid=f"u{i}") for i, r in enumerate(GOOD)]
    rows[1]["uid"] = value
    rep = ingest(_cfg(_write(tmp_path / "c.jsonl", rows), id_field="uid"), tmp_path / "o", progress=False)
    assert dict(rep.dropped) == {f"id is not text or a number (a {kind})": 1}
    assert [r["id"] for r in _stored(tmp_path / "o")] == ["u0", "u2", "u3"]


# ---------------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_utf16_utf32_and_bom_files_are_decoded_whole(tmp_path, suffix, encoding):
    text = _jsonl_text(GOOD) if suffix == ".jsonl" else json.dumps(GOOD, indent=1)
    raw = text.encode(encoding)
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw  # with its byte-order mark
    src = tmp_path / f"c{suffix}"
    src.write_bytes(raw)
    t0 = time.time()
    rep = ingest(_cfg(src), tmp_path / "o", progress=False)
    assert (rep.rows_read, rep.rows_written, dict(rep.dropped)) == (4, 4, {})  # UTF-16 lost rows
    assert [r["answer"] for r in _stored(tmp_path / "o")] == ["1", "2", "3", "4"]
    assert time.time() - t0 < 30


@pytest.mark.parametrize("encoding, name", [("utf-16-le", "UTF-16"), ("utf-32-le", "UTF-32")])
def test_utf16_without_a_byte_order_mark_is_refused_naming_the_encoding(tmp_path, encoding, name):
    src = tmp_path / "c.jsonl"
    src.write_bytes(_jsonl_text(GOOD).encode(encoding))
    with pytest.raises(InputError) as e:
        ingest(_cfg(src), tmp_path / "o", progress=False)
    assert str(src) in str(e.value) and name in str(e.value) and "byte-order mark" in str(e.value)


def test_a_utf16_file_that_breaks_off_mid_character_names_the_file_and_encoding(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(_jsonl_text(GOOD).encode("utf-16") + b"\x00\xd8")  # a lone high surrogate
    with pytest.raises(InputError) as e:
        ingest(_cfg(src), tmp_path / "o", progress=False)
    assert str(src) in str(e.value) and "UTF-16" in str(e.value)


# ---------------------------------------------------------------------------------------------
# Exclusion files (--exclude)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, needle", [
    ("", "holds no problems"),
    ("\n   \n\n", "holds no problems"),
    (_jsonl_text([{"problem": "A real one?"}, {"problem": "   "}]), "line 2, field 'problem': blank question"),
    (_jsonl_text([{"problem": {"text": "What is 1 + 1?"}}]), "line 1, field 'problem': question is not text (a dict)"),
    (_jsonl_text([{"problem": 12}]), "line 1, field 'problem': question is not text (a int)"),
])
def test_an_exclusion_file_that_would_exclude_nothing_is_an_error_and_the_corpus_stays(tmp_path, content, needle):
    src = _write(tmp_path / "c.jsonl", GOOD)
    out = tmp_path / "corpus"
    ingest(_cfg(src), out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".skilldistill.lock"}
    bench = tmp_path / "bench.jsonl"
    bench.write_text(content)
    with pytest.raises(InputError) as e:
        ingest(_cfg(src, exclude=[str(bench)]), out, progress=False)
    assert str(bench) in str(e.value) and needle in str(e.value)
    r = _cli("ingest", str(src), "--question-field", "problem", "--response-field", "solution",
             "--answer-field", "answer", "--exclude", str(bench), "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(bench) in lines[0] and needle in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".skilldistill.lock"} == before


@pytest.mark.parametrize("entry", ["", "   "])
def test_an_empty_exclude_entry_is_not_the_current_folder(tmp_path, entry):
    src = _write(tmp_path / "c.jsonl", GOOD)
    with pytest.raises(InputError, match="empty --exclude entry"):
        ingest(_cfg(src, exclude=[entry]), tmp_path / "o", progress=False)


# ---------------------------------------------------------------------------------------------
# grade
# ---------------------------------------------------------------------------------------------
def test_grade_reports_rows_without_gold_apart_and_leaves_them_out_of_the_accuracy(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text("\n".join([
        '{"answer": "1", "response": "\\\\boxed{1}"}',
        '{"answer": "2", "response": "\\\\boxed{3}"}',
        '{"answer": null, "response": "\\\\boxed{1}"}',
        '{"answer": "   ", "response": "\\\\boxed{1}"}',
        '{"response": "\\\\boxed{1}"}',
        '{"answer": NaN, "response": "\\\\boxed{1}"}',
        '{"answer": [], "response": "\\\\boxed{1}"}',
    ]) + "\n")
    out = tmp_path / "g.jsonl"
    r = _cli("grade", str(src), "--processes", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"n": 2, "correct": 1, "accuracy": 0.5, "no_gold": 5}
    assert "5 rows without a gold answer" in r.stderr
    back = [json.loads(x) for x in out.read_text().splitlines()]
    assert [b["correct"] for b in back] == [True, False] + [False] * 5
    assert [b["error"] for b in back[2:]] == ["no gold answer"] * 5


def test_grade_on_parquet_with_a_nan_gold_counts_it_as_without_gold(tmp_path):
    src = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"answer": [1.0, float("nan"), 2.0], "response": ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}"]}),
                   src)
    r = _cli("grade", str(src), "--processes", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"n": 2, "correct": 2, "accuracy": 1.0, "no_gold": 1}


@pytest.mark.parametrize("line, field, needle", [
    ('{"answer": "1", "response": ["\\\\boxed{1}"]}', "response", "response is not text (a list)"),
    ('{"answer": "1", "response": {"text": "\\\\boxed{1}"}}', "response", "response is not text (a dict)"),
    ('{"answer": "1", "response": 1}', "response", "response is not text (a int)"),
    ('{"answer": true, "response": "\\\\boxed{True}"}', "answer", "answer is not text or a number (a bool)"),
    ('{"answer": Infinity, "response": "\\\\boxed{\\\\infty}"}', "answer", "answer is not a finite number (inf)"),
    ('{"answer": {"v": 1}, "response": "\\\\boxed{1}"}', "answer", "answer is not text or a number (a dict)"),
    ('[1, 2]', None, "line holds a list, not an object"),
])
def test_grade_refuses_values_it_would_coerce(tmp_path, line, field, needle):
    src = tmp_path / "rows.jsonl"
    src.write_text('{"answer": "1", "response": "\\\\boxed{1}"}\n' + line + "\n")
    r = _cli("grade", str(src), "--processes", "1")
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    where = f"{src}, line 2" + (f", field {field!r}" if field else "")
    assert f"error: {where}: {needle}" in " ".join(r.stderr.split()), r.stderr


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_grade_reads_utf16_and_bom_files(tmp_path, encoding):
    src = tmp_path / "rows.jsonl"
    src.write_bytes(('{"answer": "1", "response": "\\\\boxed{1}"}\n' * 3).encode(encoding))
    r = _cli("grade", str(src), "--processes", "1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]  # was a traceback / "Unexpected UTF-8 BOM"
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"n": 3, "correct": 3, "accuracy": 1.0}


@pytest.mark.parametrize("answer, usable", [
    (float("nan"), False), (float("inf"), False), ([float("nan"), " "], False), ("  ", False), ([], False),
    ([float("nan"), "3"], True), (2.0, True), ("0", True),
])
def test_profile_and_grade_agree_on_what_has_a_gold_answer(answer, usable):
    """Before: has_gold(NaN) was True (the text 'nan'), so profile graded every answer
    against 'nan' and counted it wrong, where grade leaves the row out."""
    from skilldistill.grading import grade
    from skilldistill.profile.pool import has_gold

    assert has_gold(answer) is usable
    assert (grade(answer, "\\boxed{3}").error == "no gold answer") is (not usable)
