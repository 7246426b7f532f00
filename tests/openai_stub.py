"""A real local OpenAI-compatible HTTP server for tests and benchmarks.

It speaks HTTP/1.1 with keep-alive on 127.0.0.1 (ephemeral port), serves
``POST /v1/chat/completions`` and ``GET /v1/models``, and answers from a script:
queued faults first (429, 500, malformed bodies, dropped connections, delays), then
queued replies, then a ``responder(request_json) -> Reply | str`` function. Every
request is recorded (body and whether an ``Authorization`` header came with it), so
tests can count calls and check what was sent.

The server runs on its own asyncio loop in a daemon thread (``OpenAIStub``), or in a
separate process (``python tests/openai_stub.py --latency 0.05``, used by the
throughput benchmark so client and server do not share one interpreter).

    with OpenAIStub(responder=pick_listed_skills, latency_s=0.05) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="x")
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Reply:
    """One scripted answer. ``status=0`` drops the connection without answering."""

    content: str | None = "[]"
    status: int = 200
    delay_s: float = 0.0
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # raw response body, overrides everything (malformed JSON...)
    raw: bytes | None = None  # raw bytes written instead of an HTTP response, then the connection closes
    prompt_tokens: int | None = None  # default: prompt characters // 4
    completion_tokens: int | None = None  # default: content characters // 4


Responder = Callable[[dict[str, Any]], "Reply | str"]


class OpenAIStub:
    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        model: str = "stub-model",
        port: int = 0,
    ) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.model = model
        self.port = port
        self.faults: collections.deque[Reply] = collections.deque()
        self.script: collections.deque[Reply | str] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self.status_counts: collections.Counter[int] = collections.Counter()
        self.max_in_flight = 0
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._handlers: set[asyncio.Task[None]] = set()

    # -- control -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_calls(self) -> int:
        """Chat-completion requests received (every attempt, retries included)."""
        return sum(1 for r in self.requests if r["path"].endswith("/chat/completions"))

    def add_faults(self, *replies: Reply) -> None:
        """Serve these before anything else, one per request."""
        with self._lock:
            self.faults.extend(replies)

    def add_replies(self, *replies: Reply | str) -> None:
        with self._lock:
            self.script.extend(replies)

    def start(self) -> OpenAIStub:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=2048)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:  # surface bind errors to start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-stub", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            async def shutdown() -> None:
                # Close the listener and every open connection before the loop stops,
                # so no handler is left pending on a closed loop.
                if self._server is not None:
                    self._server.close()
                for task in self._handlers:
                    task.cancel()
                await asyncio.gather(*self._handlers, return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(n) if n else b""
                answer = await self._dispatch(method, path, headers, body)
                if answer is None:  # scripted dropped connection
                    return
                if isinstance(answer, bytes):  # scripted broken HTTP
                    writer.write(answer)
                    await writer.drain()
                    return
                status, payload, extra = answer
                self.status_counts[status] += 1
                head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "content-type: application/json", f"content-length: {len(payload)}", "connection: keep-alive"]
                head += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]] | bytes | None:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode(), {}
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, b'{"error": {"message": "not found"}}', {}
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return 400, b'{"error": {"message": "bad json"}}', {}
        record = {"path": path, "body": request, "authorized": "authorization" in headers, "headers": headers, "time": time.monotonic()}
        with self._lock:
            self.requests.append(record)
            reply: Reply | str | None = None
            if self.faults:
                reply = self.faults.popleft()
            elif self.script:
                reply = self.script.popleft()
        if reply is None:
            reply = self.responder(request) if self.responder is not None else Reply()
        if isinstance(reply, str):
            reply = Reply(content=reply)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            delay = self.latency_s + reply.delay_s
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self._in_flight -= 1
        if reply.raw is not None:
            return reply.raw
        if reply.status == 0:
            return None
        if reply.body is not None:
            return reply.status, reply.body.encode(), reply.headers
        if reply.status != 200:
            err = {"error": {"message": f"scripted {reply.status}", "type": "stub", "code": reply.status}}
            return reply.status, json.dumps(err).encode(), reply.headers
        return 200, json.dumps(self._completion(request, reply)).encode(), reply.headers

    def _completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        n = int(request.get("n") or 1)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
        content = reply.content
        p_tok = reply.prompt_tokens if reply.prompt_tokens is not None else prompt_chars // 4
        c_tok = reply.completion_tokens if reply.completion_tokens is not None else n * (len(content or "") // 4)
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", self.model),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": reply.finish_reason}
                for i in range(n)
            ],
            "usage": {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok},
        }


# -- responders ------------------------------------------------------------------------
_LISTED = re.compile(r"^- (.+?)(?::\s.*)?$", re.M)


def listed_skills(request: dict[str, Any]) -> list[str]:
    """The child names a skill-attribution prompt lists as ``- name`` or ``- name: description``."""
    user = [m for m in request.get("messages", []) if m.get("role") == "user"]
    text = str(user[-1]["content"]) if user else ""
    return _LISTED.findall(text)


def pick_listed_skills(request: dict[str, Any]) -> Reply:
    """Deterministic attribution answer: 1 or 2 of the listed skills, chosen by a hash of
    the prompt, as a JSON list (the same prompt always gets the same answer)."""
    names = listed_skills(request)
    if not names:
        return Reply(content="[]")
    prompt = json.dumps(request.get("messages", []), sort_keys=True)
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    k = 1 + (h >> 8) % 2 if len(names) > 1 else 1
    picks = [names[(h + 7 * j) % len(names)] for j in range(k)]
    return Reply(content=json.dumps(list(dict.fromkeys(picks))))


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground; print the port on stdout once listening."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every reply")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    stub = OpenAIStub(responder=pick_listed_skills, latency_s=args.latency, port=args.port).start()
    print(stub.port, flush=True)
    try:
        for _ in sys.stdin:  # serve until stdin closes (the parent exits or closes it)
            pass
    finally:
        print(json.dumps({"chat_calls": stub.chat_calls, "max_in_flight": stub.max_in_flight}), flush=True)
        stub.stop()


if __name__ == "__main__":
    main()
