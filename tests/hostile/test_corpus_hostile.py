"""Hostile corpora: clear errors naming the file/row/field, and nothing written before is lost."""

from __future__ import annotations

import json
import time

import pytest

from skilldistill.corpus.config import IngestConfig
from skilldistill.corpus.stage import ingest
from skilldistill.errors import InputError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = [{"problem": f"What is {i} + 1?", "solution": f"It is \\boxed{{{i + 1}}}."} for i in range(5)]


def _cfg(src, **kw):
    return IngestConfig(source=str(src), question_field="problem", response_field="solution", **kw)


def test_an_empty_input_never_replaces_a_good_corpus(tmp_path):
    out = tmp_path / "corpus"
    ingest(_cfg(_jsonl(tmp_path / "good.jsonl", GOOD)), out, progress=False)
    before = (out / "corpus.parquet").read_bytes(), (out / "manifest.json").read_bytes()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError) as e:
        ingest(_cfg(empty), out, progress=False)
    assert "no usable rows" in str(e.value) and str(empty) in str(e.value)
    assert ((out / "corpus.parquet").read_bytes(), (out / "manifest.json").read_bytes()) == before


@pytest.mark.parametrize("field, value, reason", [
    ("problem", {"a": 1}, "question is not text (a dict)"),
    ("problem", 42, "question is not text (a int)"),
    ("problem", True, "question is not text (a bool)"),
    ("answer", {"a": 1}, "answer is not text or a number (a dict)"),
    ("answer", True, "answer is not text or a number (a bool)"),
])
def test_non_text_questions_and_answers_are_dropped_and_counted_never_stored_as_repr(tmp_path, field, value, reason):
    rows = [dict(r) for r in GOOD]
    for r in rows:
        r["answer"] = "1"
    rows[2][field] = value
    rep = ingest(_cfg(_jsonl(tmp_path / "c.jsonl", rows), answer_field="answer", on_error="skip"), tmp_path / "o",
                 progress=False)
    assert rep.rows_written == 4 and rep.dropped == {reason: 1}
    import pyarrow.parquet as pq

    stored = pq.read_table(tmp_path / "o" / "corpus.parquet").to_pylist()
    assert all("{'a': 1}" not in (r["question"] + r["answer"]) for r in stored)


def test_not_parquet_and_empty_parquet_and_bad_utf8_name_the_file(tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_text("this is not parquet")
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"problem": "\\xff\\xfe caf\xe9"}]')
    for path, needle in ((fake, "not a readable Parquet"), (empty, "not a readable Parquet"), (bad, "not UTF-8")):
        t0 = time.time()
        with pytest.raises(InputError) as e:
            ingest(_cfg(path), tmp_path / "o", progress=False)
        assert needle in str(e.value) and str(path) in str(e.value)
        assert time.time() - t0 < 30
