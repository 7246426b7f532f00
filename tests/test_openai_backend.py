"""OpenAIBackend against a real local HTTP server (tests/openai_stub.py)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import OpenAIStub, Reply  # noqa: E402
from skilldistill.llm.base import BackendConfig, ChatBackend, SamplingParams  # noqa: E402
from skilldistill.llm.factory import make_backend  # noqa: E402
from skilldistill.llm.openai_backend import OpenAIBackend  # noqa: E402

SECRET = "sk-test-SECRET-never-in-logs-42"


def echo(request: dict) -> Reply:
    """Answer with the last user message, so tests can check order."""
    return Reply(content="echo:" + request["messages"][-1]["content"], prompt_tokens=11, completion_tokens=3)


def convs(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def backend(urls: list[str], **kw) -> OpenAIBackend:
    fields = {"max_concurrency": 32, "max_retries": 3, "request_timeout_s": 5.0, **kw}
    cfg = BackendConfig(kind="openai", model="stub-model", base_urls=urls, api_key=SECRET, **fields)
    return OpenAIBackend(cfg, backoff_base_s=0.01, backoff_max_s=0.05)


# Every request path: the SDK's aiohttp or httpx transport, each through the fast path
# (the SDK client's HTTP client and headers) or the SDK's own client.post().
REQUEST_PATHS = {
    "aiohttp-fast": {"http_transport": "aiohttp", "fast_requests": True},
    "aiohttp-sdk": {"http_transport": "aiohttp", "fast_requests": False},
    "httpx-fast": {"http_transport": "httpx", "fast_requests": True},
    "httpx-sdk": {"http_transport": "httpx", "fast_requests": False},
}


@pytest.fixture(params=list(REQUEST_PATHS))
def path_kw(request) -> dict:
    return REQUEST_PATHS[request.param]


@pytest.fixture
def stub():
    with OpenAIStub(responder=echo) as s:
        yield s


def test_results_in_input_order_with_usage_and_callbacks(stub, path_kw):
    delivered: dict[int, str] = {}
    progressed = []
    with backend([stub.base_url], **path_kw) as b:
        assert isinstance(b, ChatBackend)
        out = b.chat(convs(50), SamplingParams(temperature=0.3, max_tokens=16, seed=1),
                     on_result=lambda i, c: delivered.__setitem__(i, c[0].text), progress=progressed.append)
    assert [o[0].text for o in out] == [f"echo:q{i}" for i in range(50)]
    assert delivered == {i: f"echo:q{i}" for i in range(50)}
    assert sum(progressed) == 50
    assert out[0][0].prompt_tokens == 11 and out[0][0].completion_tokens == 3
    assert out[0][0].finish_reason == "stop"
    body = stub.requests[0]["body"]
    assert body["model"] == "stub-model" and body["temperature"] == 0.3 and body["max_tokens"] == 16 and body["seed"] == 1
    assert all(r["authorized"] for r in stub.requests)
    assert stub.chat_calls == 50


def test_factory_builds_it(stub):
    b = make_backend(BackendConfig(kind="openai", model="m", base_urls=[stub.base_url]))
    try:
        assert isinstance(b, OpenAIBackend)
        assert b.chat(convs(1), SamplingParams())[0][0].text == "echo:q0"
    finally:
        b.close()


def test_retries_429_500_and_dropped_connections(stub, path_kw):
    stub.add_faults(Reply(status=429), Reply(status=500), Reply(status=0), Reply(status=503, headers={"retry-after": "0"}))
    with backend([stub.base_url], **path_kw) as b:
        out = b.chat(convs(10), SamplingParams())
    assert sorted(o[0].text for o in out) == sorted(f"echo:q{i}" for i in range(10))
    assert b.stats["retries"] == 4
    assert stub.chat_calls == 14  # every fault cost exactly one extra request
    assert stub.status_counts[429] == 1 and stub.status_counts[500] == 1 and stub.status_counts[503] == 1


def test_timeout_is_retried(stub, path_kw):
    stub.add_faults(Reply(content='["late"]', delay_s=2.0))
    with backend([stub.base_url], request_timeout_s=0.3, **path_kw) as b:
        out = b.chat(convs(1), SamplingParams())
    assert out[0][0].text == "echo:q0"
    assert b.stats["retries"] == 1


def test_a_real_timeout_stays_a_timeout(stub, path_kw):
    stub.add_faults(Reply(content='["late"]', delay_s=2.0))
    with backend([stub.base_url], max_retries=0, request_timeout_s=0.3, **path_kw) as b:
        with pytest.raises(openai.APITimeoutError):
            b.chat(convs(1), SamplingParams())


def test_gives_up_after_max_retries(stub, path_kw):
    stub.add_faults(*[Reply(status=500)] * 3)
    with backend([stub.base_url], max_retries=2, max_concurrency=1, **path_kw) as b:
        with pytest.raises(openai.InternalServerError):
            b.chat(convs(1), SamplingParams())
    assert stub.chat_calls == 3  # first try + 2 retries: the client's own retries are off


def test_non_retryable_error_raises_after_delivering_finished_work(stub, path_kw):
    stub.add_replies(*[Reply(content="ok", delay_s=0.0)] * 5)
    stub.add_replies(Reply(status=400))
    delivered = []
    with backend([stub.base_url], max_concurrency=1, **path_kw) as b:
        with pytest.raises(openai.BadRequestError):
            b.chat(convs(20), SamplingParams(), on_result=lambda i, c: delivered.append(i))
    assert delivered == [0, 1, 2, 3, 4]
    assert stub.chat_calls == 6  # no retry of a 400, and the rest of the batch is not sent


def test_malformed_body_raises(stub, path_kw):
    stub.add_faults(Reply(body="{this is not json"))
    with backend([stub.base_url], max_concurrency=1, **path_kw) as b:
        with pytest.raises(ValueError) as info:  # json.JSONDecodeError is a ValueError too
            b.chat(convs(1), SamplingParams())
    assert "not json" in str(info.value).lower() or isinstance(info.value, json.JSONDecodeError)
    assert stub.chat_calls == 1  # an unreadable 200 is not retried


def test_fast_path_sends_what_the_sdk_sends():
    """Same URL, body and headers (auth, user agent, SDK platform headers) as client.post(),
    except the headers the SDK computes per attempt (retry count, timeout)."""
    seen = {}
    for name, kw in REQUEST_PATHS.items():
        with OpenAIStub(responder=echo) as s:
            with backend([s.base_url], **kw) as b:
                b.chat(convs(1), SamplingParams(temperature=0.3, max_tokens=16))
                assert b.transport == kw["http_transport"]
            (req,) = s.requests
        per_attempt = {"x-stainless-retry-count", "x-stainless-read-timeout", "x-stainless-timeout", "content-length"}
        seen[name] = (req["path"], req["body"], {k: v for k, v in req["headers"].items() if k not in per_attempt and k != "host"})
    assert seen["aiohttp-fast"] == seen["aiohttp-sdk"]
    assert seen["httpx-fast"] == seen["httpx-sdk"]
    path, body, headers = seen["aiohttp-fast"]
    assert path == "/v1/chat/completions" and body["messages"] == convs(1)[0]
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert headers["content-type"] == "application/json"


def test_event_loop_choice():
    uvloop = pytest.importorskip("uvloop")
    with OpenAIStub(responder=echo) as s:
        with backend([s.base_url], event_loop="auto") as b:
            b.chat(convs(1), SamplingParams())
            assert isinstance(b._loop, uvloop.Loop)
        with backend([s.base_url], event_loop="asyncio") as b:
            b.chat(convs(1), SamplingParams())
            assert not isinstance(b._loop, uvloop.Loop)


def test_gc_settings_restored_after_batches_even_overlapping(stub):
    """The backend freezes the heap and raises the young-generation threshold while its
    requests run, and puts both back when the last overlapping batch ends."""
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    during = []

    def look(i, c):
        during.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))

    with backend([stub.base_url], max_concurrency=4) as b:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda k: b.chat(convs(20), SamplingParams(), on_result=look), range(3)))
        with pytest.raises(openai.BadRequestError):
            stub.add_faults(Reply(status=400))
            b.chat(convs(1), SamplingParams())
    assert len(during) == 60 and all(t >= 20_000 and frozen for t, frozen in during)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_concurrency_is_bounded_and_used():
    with OpenAIStub(responder=echo, latency_s=0.1) as s:
        with backend([s.base_url], max_concurrency=16) as b:
            b.chat(convs(64), SamplingParams())
    assert s.max_in_flight == 16  # the limit is reached and never exceeded


def test_round_robin_over_base_urls():
    with OpenAIStub(responder=echo) as a, OpenAIStub(responder=echo) as c:
        with backend([a.base_url, c.base_url], max_concurrency=8) as b:
            out = b.chat(convs(40), SamplingParams())
    assert len(out) == 40
    assert a.chat_calls > 5 and c.chat_calls > 5 and a.chat_calls + c.chat_calls == 40


def test_n_completions_usage_reported_once(stub):
    with backend([stub.base_url]) as b:
        out = b.chat(convs(2), SamplingParams(n=3))
    assert [len(o) for o in out] == [3, 3]
    assert out[0][0].prompt_tokens == 11 and out[0][1].prompt_tokens is None


def test_api_key_never_logged_or_shown(stub, caplog):
    caplog.set_level(logging.DEBUG)
    stub.add_faults(Reply(status=429))
    with backend([stub.base_url]) as b:
        b.chat(convs(3), SamplingParams())
        assert SECRET not in repr(b)
    assert SECRET not in caplog.text
    assert SECRET not in repr(b.cfg) and SECRET not in b.cfg.model_dump_json()


def test_usable_from_threads_and_inside_an_event_loop(stub):
    with backend([stub.base_url]) as b:
        with ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(lambda k: b.chat(convs(5), SamplingParams())[k][0].text, range(3)))
        assert outs == ["echo:q0", "echo:q1", "echo:q2"]

        async def inside_loop():
            return (await b.achat(convs(2), SamplingParams()))[1][0].text

        assert asyncio.run(inside_loop()) == "echo:q1"
        assert b.chat(convs(1), SamplingParams())[0][0].text == "echo:q0"  # loop still alive
    assert not any(t.name == "openai-backend" and t.is_alive() for t in threading.enumerate())


def test_transport_without_the_aiohttp_extra(stub, monkeypatch):
    """'auto' falls back to httpx; asking for aiohttp says how to install it."""
    import skilldistill.llm.openai_backend as ob

    monkeypatch.setattr(ob, "_sdk_has_aiohttp", lambda: False)
    with backend([stub.base_url]) as b:
        assert b.chat(convs(1), SamplingParams())[0][0].text == "echo:q0"
        assert b.transport == "httpx"
    with backend([stub.base_url], http_transport="aiohttp") as b:
        with pytest.raises(RuntimeError, match=r"openai\[aiohttp\]"):
            b.chat(convs(1), SamplingParams())


def test_broken_http_responses_are_retried(stub, path_kw):
    """A garbled status line or an undecodable gzip body is a connection-level fault:
    retried like a dropped connection, on every transport and request path."""
    stub.add_faults(
        Reply(raw=b"NOT HTTP AT ALL\r\n\r\n"),
        Reply(raw=b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 5\r\n\r\nabcde"),
    )
    with backend([stub.base_url], max_concurrency=1, **path_kw) as b:
        out = b.chat(convs(3), SamplingParams())
    assert [o[0].text for o in out] == ["echo:q0", "echo:q1", "echo:q2"]
    assert b.stats["retries"] == 2


def test_refused_connection_is_a_connection_error_not_a_timeout(path_kw):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with backend([f"http://127.0.0.1:{port}/v1"], max_retries=0, **path_kw) as b:
        with pytest.raises(openai.APIConnectionError) as info:
            b.chat(convs(1), SamplingParams())
    assert not isinstance(info.value, openai.APITimeoutError)


def test_a_callers_own_gc_freeze_is_kept(stub):
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with backend([stub.base_url]) as b:
            b.chat(convs(5), SamplingParams())
        # Still frozen (a few frozen objects may be freed by reference counting meanwhile).
        assert frozen > 0 and gc.get_freeze_count() > 0.9 * frozen
    finally:
        gc.unfreeze()


def test_a_backend_dropped_without_close_closes_its_connections(stub, caplog):
    caplog.set_level(logging.DEBUG)
    b = backend([stub.base_url])
    assert b.chat(convs(3), SamplingParams())[2][0].text == "echo:q2"
    thread = b._state.thread
    del b
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
    assert "Unclosed" not in caplog.text
