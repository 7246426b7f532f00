"""Hangs: a request timeout bounds the whole request, not each read.

A server that sends its reply one byte a second, never ends its body, sends its headers
byte by byte, or never answers must not hold a call past ``request_timeout_s``: the
request becomes a timeout, is retried with backoff, then reported like any failed call,
on every transport (the fast path over aiohttp and httpx, the SDK's ``client.post()``).
The vLLM server's health polling and metrics reads are bounded the same way. Every
server here is tests/hostile/slow_server.py on 127.0.0.1; it stops by itself.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slow_server import SlowServer  # noqa: E402

from openai_stub import OpenAIStub, pick_listed_skills  # noqa: E402
from skilldistill.attribution import AnnotateConfig, annotate  # noqa: E402
from skilldistill.llm.base import BackendConfig, SamplingParams  # noqa: E402
from skilldistill.llm.openai_backend import OpenAIBackend  # noqa: E402
from skilldistill.llm.vllm_server import VLLMServer  # noqa: E402
from skilldistill.subproc import group_alive  # noqa: E402

# A stalled server trickles a byte every 0.5 s: inside any per-read timeout (2 s here).
STALLS = ["trickle", "endless", "slow_headers", "silent"]
TRANSPORTS = [("aiohttp", True), ("httpx", True), ("aiohttp", False), ("httpx", False)]
TIMEOUT_S = 2.0
LIFETIME_S = 25.0  # the stub's own end: without a whole-request bound a call waits this long


def _backend(url, transport, fast):
    cfg = BackendConfig(kind="openai", model="stub-model", base_urls=[url], api_key="k", max_retries=1,
                        request_timeout_s=TIMEOUT_S, http_transport=transport, fast_requests=fast)
    return OpenAIBackend(cfg, backoff_base_s=0.1, backoff_max_s=0.2)


@pytest.mark.parametrize("transport, fast", TRANSPORTS, ids=[f"{t}-{'fast' if f else 'sdk'}" for t, f in TRANSPORTS])
@pytest.mark.parametrize("mode", STALLS)
def test_a_stalled_reply_is_a_timeout_retried_then_raised(mode, transport, fast):
    with SlowServer(mode, interval_s=0.5, lifetime_s=LIFETIME_S) as srv, _backend(srv.base_url, transport, fast) as b:
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            b.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=8))
        elapsed = time.monotonic() - t0
        # two attempts of at most 2 s each, a backoff of at most 0.2 s between
        assert elapsed < 2 * TIMEOUT_S + 3, elapsed
        assert b.stats["requests"] == 2 and b.stats["retries"] == 1
        assert srv.connections >= 1


def test_seeded_requests_of_profile_and_evaluate_are_bounded_too():
    # profile / evaluate send one request per seeded sample: the same whole-request bound
    with SlowServer("trickle", interval_s=0.5, lifetime_s=LIFETIME_S) as srv, _backend(srv.base_url, "aiohttp", True) as b:
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            b.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=8, n=2), seeds=[[1, 2]])
        assert time.monotonic() - t0 < 2 * TIMEOUT_S + 3
        assert srv.requests == 4  # two samples, each tried twice


def test_a_stalled_server_among_two_costs_one_timeout_then_the_retry_goes_to_the_other():
    with SlowServer("trickle", interval_s=0.5, lifetime_s=LIFETIME_S) as srv, \
            OpenAIStub(responder=lambda req: "[]") as good:
        cfg = BackendConfig(kind="openai", model="stub-model", base_urls=[srv.base_url, good.base_url], api_key="k",
                            max_retries=1, request_timeout_s=TIMEOUT_S, routing="round-robin")
        with OpenAIBackend(cfg, backoff_base_s=0.1, backoff_max_s=0.2) as b:
            t0 = time.monotonic()
            [[c]] = b.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=8))
            assert c.text == "[]" and time.monotonic() - t0 < TIMEOUT_S + 3
            assert srv.requests == 1 and good.chat_calls == 1 and b.stats["retries"] == 1


def _corpus(tmp_path, n=6):
    tree = {"name": "Mathematics", "children": [{"name": "Algebra"}, {"name": "Geometry"}]}
    t = pa.table({"id": [f"q{i}" for i in range(n)], "question": [f"Solve x + {i} = {2 * i}." for i in range(n)],
                  "response": [f"x = {i}" for i in range(n)]})
    pq.write_table(t, tmp_path / "corpus.parquet")
    pq.write_table(t.slice(0, 2), tmp_path / "first.parquet")
    (tmp_path / "tree.json").write_text(json.dumps(tree))
    return tmp_path / "corpus.parquet", tmp_path / "first.parquet", tmp_path / "tree.json"


CLI_TRANSPORTS = {"aiohttp": ["--http-transport", "aiohttp"], "httpx": ["--http-transport", "httpx"],
                  "sdk-requests": ["--sdk-requests"]}


@pytest.mark.parametrize("mode", ["trickle", "endless"])
@pytest.mark.parametrize("transport", list(CLI_TRANSPORTS))
def test_annotate_against_a_stalled_server_fails_in_time_with_one_line(tmp_path, transport, mode):
    corpus, first, tree = _corpus(tmp_path)
    out = tmp_path / "out"
    with OpenAIStub(responder=pick_listed_skills) as stub:  # two items done before the server stalls
        llm = BackendConfig(kind="openai", model="stub-model", base_urls=[stub.base_url], api_key="k")
        annotate(first, tree, out, AnnotateConfig(backend="openai", llm=llm), show_progress=False)
    before = (out / "calls.jsonl").read_bytes()
    env = {**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": "k"}
    with SlowServer(mode, interval_s=0.5, lifetime_s=LIFETIME_S + 20) as srv:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "annotate", str(corpus), "--tree", str(tree),
                            "--out", str(out), "--backend", "openai", "--model", "stub-model", "--base-url",
                            srv.base_url, "--max-retries", "1", "--timeout", "2", "--no-progress",
                            *CLI_TRANSPORTS[transport]], capture_output=True, text=True, timeout=120, env=env)
        elapsed = time.monotonic() - t0
    assert elapsed < 20, (elapsed, r.stderr[-2000:])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "error: the model server did not answer within the request timeout (after every retry)" in r.stderr
    assert (out / "calls.jsonl").read_bytes().startswith(before)  # nothing lost


def _sleeper(server):
    server.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)


def test_vllm_server_wait_gives_up_on_time_when_health_checks_stall():
    # the status line byte by byte: each health check ends at its 2 s, the wait at its 4 s
    with SlowServer("slow_headers", interval_s=0.5, lifetime_s=LIFETIME_S) as srv:
        server = VLLMServer("m")
        server.port = srv.port
        _sleeper(server)
        t0 = time.monotonic()
        try:
            with pytest.raises(TimeoutError, match="not healthy after 4s"):
                server.wait(timeout=4)
        finally:
            server.stop()
        assert time.monotonic() - t0 < 4 + 4
    assert not group_alive(server.proc.pid)


@pytest.mark.parametrize("mode", ["trickle", "endless", "silent"])
def test_vllm_server_metrics_read_is_bounded(mode):
    with SlowServer(mode, interval_s=0.5, lifetime_s=LIFETIME_S) as srv:
        server = VLLMServer("m")
        server.port = srv.port
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="/metrics"):
            server.metrics()  # 10 s for the whole read
        assert time.monotonic() - t0 < 10 + 3


def test_vllm_server_wait_polls_a_not_yet_healthy_server_once_a_second():
    hits = []

    class NoContent(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - 204: answered, but not the 200 of a healthy server
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = VLLMServer("m")
    server.port = httpd.server_address[1]
    _sleeper(server)
    try:
        with pytest.raises(TimeoutError, match="not healthy after 3s"):
            server.wait(timeout=3)
    finally:
        server.stop()
        httpd.shutdown()
        httpd.server_close()
    assert 1 <= len(hits) <= 5, len(hits)  # not a busy loop of thousands of requests


def _pool(tmp_path):
    t = pa.table({"id": ["p0", "p1"], "question": ["What is 1 + 1?", "What is 2 + 2?"], "answer": ["2", "4"],
                  "skills": [[["Mathematics", "Algebra"]], [["Mathematics", "Geometry"]]]})
    pq.write_table(t, tmp_path / "skills.parquet")
    return tmp_path / "skills.parquet"


@pytest.mark.parametrize("verb", ["profile", "evaluate"])
def test_profile_and_evaluate_against_a_stalled_server_fail_in_time_with_one_line(tmp_path, verb):
    # --timeout / --max-retries reach the openai backend of profile and evaluate as of annotate
    out = tmp_path / "out"
    if verb == "profile":
        args = ["profile", str(_pool(tmp_path)), "--out", str(out)]
    else:
        bench = tmp_path / "bench.jsonl"
        bench.write_text('{"id": "b0", "problem": "What is 1 + 1?", "answer": "2"}\n')
        args = ["evaluate", "--out", str(out), "--benchmarks", "mine", "--file", f"mine={bench}", "--n", "mine=1"]
    env = {**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": "k"}
    with SlowServer("endless", interval_s=0.5, lifetime_s=LIFETIME_S + 20) as srv:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args, "--model", "stub-model", "--backend", "openai",
                            "--base-url", srv.base_url, "--max-retries", "1", "--timeout", "2"],
                           capture_output=True, text=True, timeout=120, env=env)
        elapsed = time.monotonic() - t0
    assert elapsed < 25, (elapsed, r.stderr[-2000:])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert "the model server did not answer within the request timeout (after every retry)" in r.stdout + r.stderr
    assert srv.requests >= 2  # tried, then retried once


@pytest.mark.parametrize("verb", ["profile", "evaluate"])
def test_profile_and_evaluate_refuse_a_negative_retry_count(tmp_path, verb):
    args = ["profile", str(_pool(tmp_path))] if verb == "profile" else ["evaluate", "--benchmarks", "aime24"]
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args, "--out", str(tmp_path / "o"), "--model", "m",
                        "--backend", "openai", "--max-retries", "-1"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 2 and "--max-retries" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
