"""Answers that carry no usable decision: a chat model that names no skill of the node
(``[]``, names that are not its children, blank names) or an answer the server withheld
(``finish_reason: content_filter``) is no decision. It gets the repair turn; if still
unusable the item is marked ``unparseable`` in ``skills_status`` and counted in the
stage's failure share, never stored as an item without skills with status ``ok``.
Cached decisions of older runs that took such an answer as final are repaired on the next run.

Every server is tests/openai_stub.py on 127.0.0.1, driven through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openai_stub import OpenAIStub, Reply, pick_listed_skills  # noqa: E402
from skilldistill.artifacts import AppendLog, read_json, write_json  # noqa: E402
from skilldistill.attribution import read_complete_answer  # noqa: E402
from skilldistill.llm.base import Completion  # noqa: E402

TREE = {"name": "Mathematics", "children": [
    {"name": "Algebra", "children": [{"name": "Linear equations"}, {"name": "Quadratics"}]},
    {"name": "Geometry", "children": [{"name": "Triangles"}, {"name": "Circles"}]}]}
MARK = "MARKED-ITEM"
N = 8


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    qs = [f"Problem {i}: solve x + {i} = {2 * i}." for i in range(N)]
    qs[3] = MARK + " " + qs[3]
    t = pa.table({"id": [f"q{i}" for i in range(N)], "question": qs, "response": [f"x = {i}" for i in range(N)]})
    pq.write_table(t, tmp_path / "corpus.parquet")
    (tmp_path / "tree.json").write_text(json.dumps(TREE))
    return tmp_path / "corpus.parquet", tmp_path / "tree.json"


def _node(request: dict) -> str:
    text = request["messages"][0]["content"]
    return text.split("The skills below are sub-skills of: ", 1)[1].split("\n", 1)[0]


def _annotate(corpus: Path, tree: Path, out: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "300", "OPENAI_API_KEY": "k"}
    args = ["annotate", str(corpus), "--tree", str(tree), "--out", str(out), "--backend", "openai", "--model",
            "stub-model", "--base-url", url, "--max-retries", "1", "--timeout", "5", "--no-progress", *extra]
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True, timeout=120,
                       env=env)
    assert time.monotonic() - t0 < 90
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def _error_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stdout + r.stderr
    return lines[0]


NO_DECISION = [
    pytest.param(Reply(content="[]"), "named none of the node's skills", id="empty-list"),
    pytest.param(Reply(content='["Topology", "Number theory"]'), "named none of the node's skills", id="not-children"),
    pytest.param(Reply(content='["", "  "]'), "named none of the node's skills", id="blank-names"),
    pytest.param(Reply(content="- None\n"), "named none of the node's skills", id="bullet-none"),
    pytest.param(Reply(content='{"skills": []}'), "named none of the node's skills", id="object-empty"),
    pytest.param(Reply(content='["Mathematics"]'), "named none of the node's skills", id="the-root-itself"),
    pytest.param(Reply(content='["Algebra"]', finish_reason="abort"), "finish_reason abort", id="aborted-list"),
    pytest.param(Reply(content="[]", finish_reason="content_filter"), "finish_reason content_filter",
                 id="filtered-empty"),
    pytest.param(Reply(content='["Algebra"]', finish_reason="content_filter"), "finish_reason content_filter",
                 id="filtered-list"),
    pytest.param(Reply(content=None, finish_reason="content_filter"), "finish_reason content_filter",
                 id="filtered-null"),
]


@pytest.mark.parametrize("reply, reason", NO_DECISION)
def test_no_item_with_a_decision_fails_the_stage_with_the_counts(tmp_path, reply, reason):
    corpus, tree = _corpus(tmp_path)
    out = tmp_path / "out"
    with OpenAIStub(responder=lambda req: reply) as stub:
        r = _annotate(corpus, tree, out, stub.base_url)
        calls = stub.chat_calls
        repairs = [q["body"]["messages"] for q in stub.requests if len(q["body"]["messages"]) == 3]
    assert r.returncode == 2, r.stdout + r.stderr
    line = _error_line(r)
    assert str(out / "summary.json") in line
    assert f"{N} of {N} items have no complete attribution (0 with a call the server refused, {N} with an answer " \
           "that stayed unreadable" in line, line
    assert reason in line, line
    # every root question was asked, then repaired once: no more, no less
    assert calls == 2 * N and len(repairs) == N
    assert all("Algebra" in m[2]["content"] and "Geometry" in m[2]["content"] for m in repairs)
    summary = read_json(out / "summary.json")
    assert summary["items_incomplete"] == {"failed": 0, "unparseable": N}
    assert summary["failures"]["unparseable"] == N and summary["no_valid_choice"] == 0
    assert not (out / "skills.parquet").exists() and not (out / "manifest.json").exists()


def test_one_item_naming_nothing_is_marked_and_counted(tmp_path):
    corpus, tree = _corpus(tmp_path)

    def responder(req):
        if MARK in req["messages"][0]["content"] and _node(req) == "Mathematics":
            return Reply(content="[]")
        return pick_listed_skills(req)

    with OpenAIStub(responder=responder) as stub:
        r = _annotate(corpus, tree, tmp_path / "out", stub.base_url, "--max-failed-share", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = pq.read_table(tmp_path / "out" / "skills.parquet").to_pylist()
    assert [row["skills_status"] for row in rows] == ["ok"] * 3 + ["unparseable"] + ["ok"] * (N - 4)
    assert rows[3]["skills"] == [] and all(row["skills"] for i, row in enumerate(rows) if i != 3)
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["items_incomplete"] == {"failed": 0, "unparseable": 1}
    assert summary["failures"]["unparseable"] == 1
    assert summary["unreadable_reasons"] == [["named none of the node's skills", 1]]
    assert "named none of the node's skills (1)" in r.stdout + r.stderr


def test_without_repair_turns_an_empty_pick_is_counted_at_once(tmp_path):
    from skilldistill.attribution import AnnotateConfig, annotate
    from skilldistill.llm.base import BackendConfig

    corpus, tree = _corpus(tmp_path)

    def responder(req):
        return Reply(content="[]") if MARK in req["messages"][0]["content"] else pick_listed_skills(req)

    with OpenAIStub(responder=responder) as stub:
        cfg = AnnotateConfig(backend="openai", repair_retries=0, max_failed_share=0.2, llm=BackendConfig(
            kind="openai", model="stub-model", base_urls=[stub.base_url], api_key="k", max_retries=1))
        res = annotate(corpus, tree, tmp_path / "out", cfg, show_progress=False)
        assert not [q for q in stub.requests if len(q["body"]["messages"]) > 1]  # no repair turn
    rows = pq.read_table(res.skills_path).to_pylist()
    assert [row["skills_status"] for row in rows] == ["ok"] * 3 + ["unparseable"] + ["ok"] * (N - 4)
    assert res.summary["items_incomplete"] == {"failed": 0, "unparseable": 1}


def test_naming_no_child_below_the_root_is_no_decision_either(tmp_path):
    """Below the root the node was chosen as needed, and the prompt asks which of its
    sub-skills are: an empty pick is no answer there either. A repair that names one counts."""
    corpus, tree = _corpus(tmp_path)

    def responder(req):
        node, msgs = _node(req), req["messages"]
        if node == "Mathematics":
            return Reply(content='["Algebra"]')
        if MARK in msgs[0]["content"]:
            return Reply(content="[]")  # the marked item: nothing, twice
        if len(msgs) == 1 and "Problem 0:" in msgs[0]["content"]:
            return Reply(content='["Rings"]')  # item 0: no child at first, a child on the repair turn
        return Reply(content='["Quadratics"]')

    with OpenAIStub(responder=responder) as stub:
        r = _annotate(corpus, tree, tmp_path / "out", stub.base_url, "--max-failed-share", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = pq.read_table(tmp_path / "out" / "skills.parquet").to_pylist()
    assert [row["skills_status"] for row in rows] == ["ok"] * 3 + ["unparseable"] + ["ok"] * (N - 4)
    assert rows[0]["skills"] == [["Algebra", "Quadratics"]] and rows[3]["skills"] == []
    records = AppendLog(tmp_path / "out" / "calls.jsonl").read()
    item0 = [rec for rec in records if rec["item"] == "q0" and rec["node"] == "Algebra"]
    assert [rec["status"] for rec in item0] == ["pending_repair", "ok"] and item0[1]["calls"] == 2
    assert read_json(tmp_path / "out" / "summary.json")["items_incomplete"] == {"failed": 0, "unparseable": 1}


def _as_an_older_run_left_it(out: Path, item: str) -> None:
    """calls.jsonl and manifest.json as a run before this rule wrote them: the item's root
    answer ``[]`` stored as a final decision (status none, nothing chosen) and the item ok."""
    records = AppendLog(out / "calls.jsonl").read()
    lines = []
    for rec in records:
        if rec["item"] == item and rec["node"] == "":
            rec = {**rec, "answer": "[]", "status": "none", "chosen": [], "unmatched": []}
        lines.append(json.dumps(rec))
    (out / "calls.jsonl").write_text("\n".join(lines) + "\n")
    manifest = read_json(out / "manifest.json")
    manifest["inputs"].pop("answers", None)
    write_json(out / "manifest.json", manifest)


def test_an_older_runs_empty_pick_gets_its_repair_on_the_next_run(tmp_path):
    corpus, tree = _corpus(tmp_path)
    out = tmp_path / "out"
    with OpenAIStub(responder=pick_listed_skills) as stub:
        assert _annotate(corpus, tree, out, stub.base_url).returncode == 0
    _as_an_older_run_left_it(out, "q3")
    # the model still names nothing: the item is marked, and a plain rerun (no --force) says so
    with OpenAIStub(responder=lambda req: Reply(content="[]")) as stub:
        r = _annotate(corpus, tree, out, stub.base_url, "--max-failed-share", "0.2")
        sent = [q["body"]["messages"] for q in stub.requests]
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(sent) == 1 and len(sent[0]) == 3 and sent[0][1]["content"] == "[]"  # only the repair turn
    rows = pq.read_table(out / "skills.parquet").to_pylist()
    assert [row["skills_status"] for row in rows] == ["ok"] * 3 + ["unparseable"] + ["ok"] * (N - 4)
    assert read_json(out / "summary.json")["items_incomplete"] == {"failed": 0, "unparseable": 1}


def test_an_older_runs_empty_pick_repaired_gives_the_item_its_skills(tmp_path):
    corpus, tree = _corpus(tmp_path)
    out = tmp_path / "out"
    with OpenAIStub(responder=pick_listed_skills) as stub:
        assert _annotate(corpus, tree, out, stub.base_url).returncode == 0
    before = pq.read_table(out / "skills.parquet").to_pylist()[3]["skills"]
    _as_an_older_run_left_it(out, "q3")
    # the stub's picker reads the first question's list (the repair turn lists names as JSON)
    with OpenAIStub(responder=lambda req: pick_listed_skills({"messages": req["messages"][:1]})) as stub:
        r = _annotate(corpus, tree, out, stub.base_url)
        sent = [q["body"]["messages"] for q in stub.requests]
    assert r.returncode == 0, r.stdout + r.stderr
    # the repair turn of that one answer, nothing else: the same pick, so all below is cached
    assert len(sent) == 1 and len(sent[0]) == 3 and sent[0][1]["content"] == "[]"
    assert sent[0][2]["content"].startswith("Your answer named none of the listed skills")
    rows = pq.read_table(out / "skills.parquet").to_pylist()
    assert rows[3]["skills"] == before and before and rows[3]["skills_status"] == "ok"
    assert all(row["skills_status"] == "ok" for row in rows)


@pytest.mark.parametrize("finish", ["content_filter", "tool_calls"])
def test_a_withheld_answer_is_not_read_whatever_it_holds(finish):
    rec: dict = {}
    assert read_complete_answer(Completion('["Algebra", "Geometry"]', finish_reason=finish), rec) is None
    assert rec == {"finish_reason": finish}
    assert read_complete_answer(Completion('["Algebra"]', finish_reason="stop"), {}) == ["Algebra"]
    assert read_complete_answer(Completion('["Algebra"]', finish_reason=None), {}) == ["Algebra"]

