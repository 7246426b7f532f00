"""Untrusted servers and items in attribution: one bad item never blocks the run, server
faults end in one clear line with the cache kept, failed decisions can be asked again."""

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
from skilldistill.artifacts import AppendLog  # noqa: E402
from skilldistill.attribution import AnnotateConfig, annotate, item_text  # noqa: E402
from skilldistill.errors import InputError  # noqa: E402
from skilldistill.llm.base import BackendConfig  # noqa: E402

TREE = {"name": "Mathematics", "children": [
    {"name": "Algebra", "children": [{"name": "Linear equations"}, {"name": "Quadratics"}]},
    {"name": "Geometry", "children": [{"name": "Triangles"}, {"name": "Circles"}]}]}
POISON = "POISON-ITEM"


def _corpus(tmp_path, n=8, poison=True):
    qs = [f"Problem {i}: solve x + {i} = {2 * i}." for i in range(n)]
    if poison:
        qs[3] = POISON + " " + qs[3]
    t = pa.table({"id": [f"q{i}" for i in range(n)], "question": qs, "response": [f"x = {i}" for i in range(n)]})
    pq.write_table(t, tmp_path / "corpus.parquet")
    (tmp_path / "tree.json").write_text(json.dumps(TREE))
    return tmp_path / "corpus.parquet", tmp_path / "tree.json"


def _cfg(url, **kw):
    return AnnotateConfig(backend="openai", llm=BackendConfig(kind="openai", model="stub-model", base_urls=[url],
                                                            api_key="k", max_retries=1, request_timeout_s=2), **kw)


def refuse_poison(request):
    if POISON in request["messages"][0]["content"]:
        return Reply(status=400, body=json.dumps({"error": {"message": "prompt is longer than the context"}}))
    return pick_listed_skills(request)


def test_a_refused_item_is_recorded_dropped_and_the_run_goes_on(tmp_path):
    corpus, tree = _corpus(tmp_path)
    with OpenAIStub(responder=refuse_poison) as stub:
        # 1 item of 8 is over the default share (5%): the stage says so and certifies nothing
        with pytest.raises(InputError, match=r"1 of 8 items have no complete attribution \(1 with a call the server "
                                             r"refused.*the server said: .*prompt is longer"):
            annotate(corpus, tree, tmp_path / "out", _cfg(stub.base_url), show_progress=False)
        # allowed (one item in 100,000 is far under 5%), the run goes on and marks the item
        res = annotate(corpus, tree, tmp_path / "out", _cfg(stub.base_url, max_failed_share=0.2), show_progress=False)
        s = res.summary
        assert s["failures"]["failed"] == 1 and "prompt is longer" in s["failed_reasons"][0][0]
        assert s["items_incomplete"] == {"failed": 1, "unparseable": 0}
        rows = pq.read_table(res.skills_path).to_pylist()
        assert rows[3]["skills"] == [] and all(r["skills"] for i, r in enumerate(rows) if i != 3)
        assert [r["skills_status"] for r in rows] == ["ok"] * 3 + ["failed"] + ["ok"] * 4
        calls = stub.chat_calls
        # a rerun does not ask again (a 400 would come back the same) ...
        annotate(corpus, tree, tmp_path / "out", _cfg(stub.base_url, max_failed_share=0.2), show_progress=False,
                 force=True)
        assert stub.chat_calls == calls
    # ... unless asked to: the server now takes it
    with OpenAIStub(responder=pick_listed_skills) as stub:
        res = annotate(corpus, tree, tmp_path / "out", _cfg(stub.base_url), show_progress=False, retry_failed=True)
        assert res.summary["failures"]["failed"] == 0
        assert 1 <= stub.chat_calls <= 3  # only the failed decision and what lies below it
        assert pq.read_table(res.skills_path).to_pylist()[3]["skills"]


def _cli(*args, timeout=120):
    env = {**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": "k"}
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("fault, needle", [
    (Reply(status=500, body='{"error": "boom"}'), "HTTP 500"),
    (Reply(body="this is not json"), "body that is not JSON"),
    (Reply(body=json.dumps({"id": "x", "object": "chat.completion"})), "not a chat completion"),
    (Reply(status=0), "cannot reach the model server|Connection"),
    (Reply(content="[]", delay_s=5), "did not answer within the request timeout"),
    (Reply(body=json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": i, "message": {"role": "assistant", "content": "[]"}, "finish_reason": "stop"} for i in range(2)]})),
     "returned 2 choices, asked for 1"),
    # a reply of the right shape with fields of the wrong type: a clear line, not an AttributeError
    (Reply(body=json.dumps({"id": "x", "object": "chat.completion", "choices": [None]})),
     "a choice in the server's reply is not an object"),
    (Reply(body=json.dumps({"id": "x", "object": "chat.completion", "usage": {"prompt_tokens": "12"}, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "[]"}, "finish_reason": "stop"}]})),
     "usage.prompt_tokens is not a whole number"),
    (Reply(body=json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": ["Algebra"]}, "finish_reason": "stop"}]})),
     "message has no text content"),
])
def test_server_faults_end_in_one_clear_line_with_the_cache_kept(tmp_path, fault, needle):
    import re

    corpus, tree = _corpus(tmp_path, poison=False)
    first = tmp_path / "first.parquet"
    pq.write_table(pq.read_table(corpus).slice(0, 4), first)
    with OpenAIStub(responder=pick_listed_skills) as stub:
        # four items are annotated, then the server breaks for good while the rest are asked
        ok = annotate(first, tree, tmp_path / "out", _cfg(stub.base_url), show_progress=False)
        before = (tmp_path / "out" / "calls.jsonl").read_bytes()
        assert ok.summary["decisions"] > 0
        stub.add_faults(*[fault] * 200)
        t0 = time.time()
        r = _cli("annotate", str(corpus), "--tree", str(tree), "--out", str(tmp_path / "out"), "--backend", "openai",
                 "--model", "stub-model", "--base-url", stub.base_url, "--max-retries", "1", "--timeout", "2",
                 "--no-progress")
        assert time.time() - t0 < 90
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and re.search(needle, r.stderr), r.stderr[-2000:]
    assert (tmp_path / "out" / "calls.jsonl").read_bytes().startswith(before)  # nothing lost


def test_a_damaged_line_in_the_call_log_hides_nothing_after_it(tmp_path, caplog):
    log = AppendLog(tmp_path / "calls.jsonl")
    log.append_many([{"key": "a"}, {"key": "b"}])
    log.close()
    with open(tmp_path / "calls.jsonl", "ab") as f:
        f.write(b'{"key": "broken\n')
    log.append_many([{"key": "c"}, {"key": "d"}])
    log.close()
    assert [r["key"] for r in AppendLog(tmp_path / "calls.jsonl").iter()] == ["a", "b", "c", "d"]
    assert "skipped 1 unreadable line" in caplog.text


def test_the_whole_item_text_is_capped():
    text = item_text("Q" * 10_000_000, "S" * 10_000_000, max_chars=20_000)
    assert len(text) <= 40_001


def test_runaway_answers_are_not_stored_whole(tmp_path):
    corpus, tree = _corpus(tmp_path, poison=False)

    def runaway(request):  # 1 MB of rambling, then a readable answer
        return Reply(content="Let me think. " * 75_000 + pick_listed_skills(request).content)

    with OpenAIStub(responder=runaway) as stub:
        res = annotate(corpus, tree, tmp_path / "out", _cfg(stub.base_url), show_progress=False)
    assert res.summary["items_with_skills"] == 8  # the decision was read from the whole answer
    assert (tmp_path / "out" / "calls.jsonl").stat().st_size < 200_000  # was 158 MB for 60 items


def test_the_cli_logs_no_line_per_request(tmp_path):
    # issue 16 #9: the openai SDK's HTTP client (httpx2) logged one INFO line per request
    corpus, tree = _corpus(tmp_path, n=30, poison=False)
    with OpenAIStub(responder=pick_listed_skills) as stub:
        r = _cli("annotate", str(corpus), "--tree", str(tree), "--out", str(tmp_path / "out"), "--backend", "openai",
                 "--model", "stub-model", "--base-url", stub.base_url)
        calls = stub.chat_calls
    assert r.returncode == 0, r.stderr[-2000:]
    assert calls >= 60
    assert "HTTP Request" not in r.stderr and "POST http" not in r.stderr
    assert len(r.stderr.splitlines()) < 30


def test_unparseable_decisions_are_recorded_then_asked_again_with_retry_failed(tmp_path):
    """An answer that is no list of names (after the repair retry) is counted, not cached as
    an empty choice forever: `annotate --retry-failed` asks exactly those decisions again."""
    corpus, tree = _corpus(tmp_path, poison=False)

    def rambling(request):
        return Reply(content="I would rather not say which skills these are.")

    base = ["annotate", str(corpus), "--tree", str(tree), "--out", str(tmp_path / "out"), "--backend", "openai",
            "--model", "stub-model", "--max-retries", "1", "--no-progress"]
    with OpenAIStub(responder=rambling) as stub:
        # no item got a readable answer: the stage fails in one line, nothing certified
        r = _cli(*base, "--base-url", stub.base_url)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "8 of 8 items have no complete attribution" in r.stderr and "--retry-failed" in r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["failures"]["unparseable"] == 8  # every item's first decision
    assert not (tmp_path / "out" / "manifest.json").exists() and not (tmp_path / "out" / "skills.parquet").exists()
    with OpenAIStub(responder=rambling) as stub:
        # allowed on the command line, the run finishes with every item marked
        r = _cli(*base, "--base-url", stub.base_url, "--max-failed-share", "1")
        assert r.returncode == 0 and stub.chat_calls == 0, r.stderr[-2000:]
    rows = pq.read_table(tmp_path / "out" / "skills.parquet").to_pylist()
    assert [row["skills_status"] for row in rows] == ["unparseable"] * 8
    with OpenAIStub(responder=pick_listed_skills) as stub:
        r = _cli(*base, "--base-url", stub.base_url)  # a plain rerun does not ask again
        assert r.returncode != 0 and stub.chat_calls == 0, r.stderr[-2000:]
        r = _cli(*base, "--base-url", stub.base_url, "--retry-failed")
        assert r.returncode == 0, r.stderr[-2000:]
        assert 8 <= stub.chat_calls <= 8 * 3  # the 8 root decisions again, then what lies below them
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["failures"]["unparseable"] == 0
    assert all(row["skills"] for row in pq.read_table(tmp_path / "out" / "skills.parquet").to_pylist())


def test_a_second_annotate_on_one_output_folder_is_refused_while_the_first_runs(tmp_path):
    """Two processes on one --out used to send every request twice and mix their outputs."""
    corpus, tree = _corpus(tmp_path, n=40, poison=False)
    env = {**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": "k"}
    with OpenAIStub(responder=pick_listed_skills, latency_s=0.2) as stub:
        args = [sys.executable, "-m", "skilldistill.cli", "annotate", str(corpus), "--tree", str(tree), "--out",
                str(tmp_path / "out"), "--backend", "openai", "--model", "stub-model", "--base-url", stub.base_url,
                "--concurrency", "2", "--no-progress"]
        first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        t0 = time.time()
        while stub.chat_calls == 0 and time.time() - t0 < 60:  # the first holds the folder and is asking
            time.sleep(0.05)
        second = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
        calls_when_refused = stub.chat_calls
        out, err = first.communicate(timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert str(first.pid) in second.stderr and "annotate" in second.stderr  # who holds it
    assert first.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["calls_this_run"] == stub.chat_calls >= calls_when_refused  # no request sent twice


def test_a_10_mb_item_goes_into_no_prompt_whole(tmp_path):
    """The cap must hold on what is sent, not just on a helper's return value."""
    corpus, tree = _corpus(tmp_path, n=3, poison=False)
    t = pq.read_table(corpus).to_pylist()
    t[1]["question"] = "Q" * 10_000_000
    t[1]["response"] = "S" * 10_000_000
    pq.write_table(pa.Table.from_pylist(t), corpus)
    sent: list[int] = []

    def measure(request):
        sent.append(sum(len(m["content"]) for m in request["messages"]))
        return pick_listed_skills(request)

    with OpenAIStub(responder=measure) as stub:
        res = annotate(corpus, tree, tmp_path / "out", _cfg(stub.base_url), show_progress=False)
    assert res.summary["items_with_skills"] == 3
    assert sent and max(sent) < 2 * 20_000 + 5_000, max(sent)  # question and solution capped at 20k each, plus the prompt


SECRET = "sk-live-SECRET-d41d8cd98f00b204"


def _no_secret_under(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p


def test_the_api_key_is_in_no_output_file_and_no_message(tmp_path):
    """The key from the environment (the CLI) or inline (the Python API), on a good run and
    on one the server refuses: never in stdout, stderr or a file of the output folder."""
    corpus, tree = _corpus(tmp_path, n=4, poison=False)
    env = {**os.environ, "COLUMNS": "200", "SD_TEST_KEY": SECRET}
    args = ["annotate", str(corpus), "--tree", str(tree), "--backend", "openai", "--model", "stub-model",
            "--api-key-env", "SD_TEST_KEY", "--max-retries", "1", "--timeout", "2", "--no-progress"]
    mode = {"fault": None}

    def respond(request):
        return mode["fault"] or pick_listed_skills(request)

    with OpenAIStub(responder=respond) as stub:
        good = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args, "--out", str(tmp_path / "a"),
                               "--base-url", stub.base_url], capture_output=True, text=True, env=env, timeout=120)
        assert good.returncode == 0, good.stderr[-2000:]
        mode["fault"] = Reply(status=401, body='{"error": {"message": "invalid api key"}}')
        bad = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args, "--out", str(tmp_path / "b"),
                              "--base-url", stub.base_url], capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode == 2 and "401" in bad.stderr, bad.stderr[-2000:]
        inline = AnnotateConfig(backend="openai", llm=BackendConfig(kind="openai", model="stub-model",
                                base_urls=[stub.base_url], api_key=SECRET, max_retries=1, request_timeout_s=2))
        mode["fault"] = Reply(status=500, body='{"error": "boom"}')
        with pytest.raises(Exception) as e:
            annotate(corpus, tree, tmp_path / "c", inline, show_progress=False)
        assert SECRET not in str(e.value) and SECRET not in repr(e.value)
        mode["fault"] = None  # the server is well again
        annotate(corpus, tree, tmp_path / "c", inline, show_progress=False)
    for r in (good, bad):
        assert SECRET not in r.stdout + r.stderr
    for out in ("a", "b", "c"):
        _no_secret_under(tmp_path / out)
    assert (tmp_path / "c" / "skills.parquet").exists()
