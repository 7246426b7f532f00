"""OpenAIBackend against a real local HTTP server (tests/openai_stub.py)."""

from __future__ import annotations

import asyncio
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


@pytest.fixture
def stub():
    with OpenAIStub(responder=echo) as s:
        yield s


def test_results_in_input_order_with_usage_and_callbacks(stub):
    delivered: dict[int, str] = {}
    progressed = []
    with backend([stub.base_url]) as b:
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


def test_retries_429_500_and_dropped_connections(stub):
    stub.add_faults(Reply(status=429), Reply(status=500), Reply(status=0), Reply(status=503, headers={"retry-after": "0"}))
    with backend([stub.base_url]) as b:
        out = b.chat(convs(10), SamplingParams())
    assert sorted(o[0].text for o in out) == sorted(f"echo:q{i}" for i in range(10))
    assert b.stats["retries"] == 4
    assert stub.chat_calls == 14  # every fault cost exactly one extra request
    assert stub.status_counts[429] == 1 and stub.status_counts[500] == 1 and stub.status_counts[503] == 1


def test_timeout_is_retried(stub):
    stub.add_faults(Reply(content='["late"]', delay_s=2.0))
    with backend([stub.base_url], request_timeout_s=0.3) as b:
        out = b.chat(convs(1), SamplingParams())
    assert out[0][0].text == "echo:q0"
    assert b.stats["retries"] == 1


def test_gives_up_after_max_retries(stub):
    stub.add_faults(*[Reply(status=500)] * 3)
    with backend([stub.base_url], max_retries=2, max_concurrency=1) as b:
        with pytest.raises(openai.InternalServerError):
            b.chat(convs(1), SamplingParams())
    assert stub.chat_calls == 3  # first try + 2 retries: the client's own retries are off


def test_non_retryable_error_raises_after_delivering_finished_work(stub):
    stub.add_replies(*[Reply(content="ok", delay_s=0.0)] * 5)
    stub.add_replies(Reply(status=400))
    delivered = []
    with backend([stub.base_url], max_concurrency=1) as b:
        with pytest.raises(openai.BadRequestError):
            b.chat(convs(20), SamplingParams(), on_result=lambda i, c: delivered.append(i))
    assert delivered == [0, 1, 2, 3, 4]
    assert stub.chat_calls == 6  # no retry of a 400, and the rest of the batch is not sent


def test_malformed_body_raises(stub):
    stub.add_faults(Reply(body="{this is not json"))
    with backend([stub.base_url], max_concurrency=1) as b:
        with pytest.raises(Exception) as info:
            b.chat(convs(1), SamplingParams())
    assert not isinstance(info.value, AssertionError)


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
