"""A hostile HTTP server on 127.0.0.1 that holds its clients: it answers slowly or never.

Modes, for every request on any path (chat completions, ``/health``, ``/metrics``):

- ``trickle``: the status line and headers at once, then a valid chat-completion body one
  byte every ``interval_s`` (a body of ~300 bytes: minutes at one byte a second);
- ``endless``: the headers of a chunked body, then a one-space chunk (JSON whitespace)
  every ``interval_s``, and never the last chunk;
- ``silent``: reads the request, then sends nothing;
- ``slow_headers``: the status line and headers themselves one byte every ``interval_s``.

Each byte arrives well inside any per-read timeout, so only a bound on the whole request
ends the wait. The server stops by itself after ``lifetime_s`` (every connection closed),
or on ``stop()``; every loop in it is bounded in count and time.

    with SlowServer("trickle") as srv:
        ...  # base_url=srv.base_url
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

MODES = ("trickle", "endless", "silent", "slow_headers")
_MAX_CONNECTIONS = 256
_MAX_REQUEST_BYTES = 1 << 20

COMPLETION = json.dumps({
    "id": "slow", "object": "chat.completion", "model": "stub-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "[]"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}).encode()


class SlowServer:
    def __init__(self, mode: str, *, interval_s: float = 1.0, lifetime_s: float = 60.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.interval_s = interval_s
        self.lifetime_s = lifetime_s
        self.port = 0
        self.connections = 0  # accepted, in all
        self.requests = 0  # requests read, in all
        self.paths: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> SlowServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="slow-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the slow server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SlowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server ----------------------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()
            self._stopped.set()
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        handlers: set[asyncio.Task] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            if self.connections > _MAX_CONNECTIONS:
                writer.close()
                return
            task = asyncio.current_task()
            handlers.add(task)
            try:
                await self._handle(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass  # the client gave up: what it should do
            except asyncio.CancelledError:
                pass  # the server's end: a cancelled connection task would be logged with a traceback
            finally:
                handlers.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        deadline = time.monotonic() + self.lifetime_s
        while not self._stopped.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Keep-alive: several requests per connection, each bounded by the server's lifetime.
        for _ in range(1000):
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST_BYTES:
                return
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = min(int(value.strip() or 0), _MAX_REQUEST_BYTES)
            if length:
                await reader.readexactly(length)
            self.requests += 1
            self.paths.append(lines[0].split(" ")[1] if " " in lines[0] else lines[0])
            await self._answer(writer)

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        if self.mode == "silent":
            await asyncio.sleep(self.lifetime_s)
            return
        if self.mode == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            await self._drip(writer, [b"1\r\n \r\n"] * int(self.lifetime_s / self.interval_s + 1))
            return
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(COMPLETION)}\r\n\r\n"
                .encode())
        if self.mode == "slow_headers":
            await self._drip(writer, [head[i:i + 1] for i in range(len(head))])
            writer.write(COMPLETION)
            await writer.drain()
            return
        writer.write(head)  # trickle
        await writer.drain()
        await self._drip(writer, [COMPLETION[i:i + 1] for i in range(len(COMPLETION))])

    async def _drip(self, writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
        for piece in pieces:  # bounded: a list of at most lifetime_s / interval_s + ~300 pieces
            if self._stopped.is_set():
                return
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(self.interval_s)
