"""Chat backend for any OpenAI-compatible endpoint (``vllm serve``, SGLang, hosted APIs).

Throughput comes from concurrency, not batching: a whole batch of conversations is
sent through the official ``openai`` async client with up to ``cfg.max_concurrency``
requests in flight, spread round-robin over ``cfg.base_urls`` (several ``vllm serve``
processes = several GPUs or nodes): request slot ``w`` talks to URL ``w mod #urls``, so
each server holds an equal share of the requests in flight. Transient failures (timeouts, connection errors,
429, 5xx) are retried here with exponential backoff and full jitter; the client's own
retries are switched off so ``cfg.max_retries`` is the one number that counts.
``cfg.request_timeout_s`` bounds each request as a whole, reading its body included (a
server that trickles its reply or never ends it is a timeout, not a hang).

The API key comes from ``cfg.resolved_api_key()`` (inline secret or environment
variable); it is handed to the client and never logged, printed or written.

The sync :meth:`OpenAIBackend.chat` runs the requests on a private event loop in a
daemon thread (uvloop when installed), so it works from plain scripts, from worker
threads and from inside a running event loop (Jupyter) alike.

Client CPU per request bounds throughput once hundreds of requests are in flight, so
the defaults are the cheapest path the SDK offers: its aiohttp transport
(``openai[aiohttp]``, ``cfg.http_transport``) and, with ``cfg.fast_requests``, each
request sent through the SDK client's own HTTP client with the SDK client's headers
(auth, user agent) and base URL, its errors mapped to the SDK's typed exceptions,
skipping only the SDK's per-request option building and response models. Measured
in annotation against a local server on 2 cores (``bench/attribution_throughput.py``):
0.36 ms of client CPU per request, against 0.78 ms through ``client.post`` on aiohttp
and 1.05 ms on httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import random
import ssl
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio

from ..errors import MalformedReply
from .base import BackendConfig, Completion, Conversation, ResultCallback, SamplingParams

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429}
_SHARD_CONNECTIONS = 16


class OpenAIBackend:
    """:class:`~skilldistill.llm.base.ChatBackend` over the ``openai`` AsyncOpenAI client.

    ``backoff_base_s`` / ``backoff_max_s`` shape the retry delays: attempt ``k`` waits a
    uniform random time in ``[0, min(backoff_max_s, backoff_base_s * 2**k)]`` (full
    jitter), or the server's ``Retry-After`` when it sends one (capped by
    ``backoff_max_s``).
    """

    name = "openai"

    def __init__(
        self,
        cfg: BackendConfig,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        if not cfg.base_urls:
            raise ValueError("openai backend needs at least one base URL")
        self.cfg = cfg
        self.model = cfg.model
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # Loop, thread and clients live in a holder the finalizer can reach without
        # keeping the backend alive: a backend dropped without close() still closes its
        # connections (aiohttp logs "Unclosed client session" otherwise).
        self._state = _LoopState()
        self._finalizer = weakref.finalize(self, self._state.shutdown)
        # Per client, for the fast path: (its HTTP client, chat URL, headers), parsed once.
        self._routes: list[tuple[Any, Any, Any]] = []
        self._timeout_ext: dict[str, Any] = {}
        self._httpx: Any = None  # the httpx module the SDK is built on (httpx2 or httpx)
        self.transport = ""  # "aiohttp" | "httpx", resolved with the clients
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, base_urls={self.cfg.base_urls!r})"

    # -- event loop ----------------------------------------------------------------
    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self._state.loop

    @property
    def _clients(self) -> list[Any]:
        return self._state.clients

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            st = self._state
            if st.loop is None:
                loop = _new_event_loop(self.cfg.event_loop)
                thread = threading.Thread(target=loop.run_forever, name="openai-backend", daemon=True)
                thread.start()
                st.loop, st.thread = loop, thread
            return st.loop

    def _make_clients(self) -> list[Any]:
        """AsyncOpenAI clients, interleaved by base URL, built on the backend's loop
        (connection pools belong to one event loop).

        aiohttp pools hand out connections in O(1): one client per URL. httpx's pool
        scans every connection on each request, so with httpx a URL gets shards of at
        most ``_SHARD_CONNECTIONS`` connections to keep that scan short.
        """
        import openai

        httpx_mod = self._httpx = _sdk_httpx()

        transport = self.cfg.http_transport
        if transport == "auto":
            transport = "aiohttp" if _sdk_has_aiohttp() else "httpx"
        elif transport == "aiohttp" and not _sdk_has_aiohttp():
            raise RuntimeError("http_transport 'aiohttp' needs the openai SDK's aiohttp extra: pip install 'openai[aiohttp]'")
        self.transport = transport
        http_client_cls = openai.DefaultAioHttpClient if transport == "aiohttp" else openai.DefaultAsyncHttpxClient

        urls = self.cfg.base_urls
        per_url = -(-self.cfg.max_concurrency // len(urls))
        shards = 1 if transport == "aiohttp" else max(1, -(-per_url // _SHARD_CONNECTIONS))
        pool = -(-per_url // shards) + 2
        limits = httpx_mod.Limits(max_connections=pool, max_keepalive_connections=pool)
        key = self.cfg.resolved_api_key()
        clients, routes = [], []
        for _ in range(shards):
            for url in urls:
                http_client = http_client_cls(
                    limits=limits,
                    timeout=self.cfg.request_timeout_s,
                    # Plain-http servers (local vLLM) need no CA bundle: loading it
                    # costs ~50 ms of CPU per client.
                    **({"verify": False} if url.startswith("http://") else {}),
                )
                client = openai.AsyncOpenAI(
                    api_key=key,
                    base_url=url,
                    max_retries=0,  # ours are the retries that count
                    timeout=self.cfg.request_timeout_s,
                    http_client=http_client,
                )
                # The SDK's own headers (auth, user agent, platform); Omit markers dropped.
                sdk_headers = {k: v for k, v in {**client.default_headers, **client.auth_headers}.items() if isinstance(v, str)}
                headers = httpx_mod.Headers(http_client.headers)  # case-insensitive merge, as build_request's
                headers.update(sdk_headers)
                clients.append(client)
                routes.append((http_client, httpx_mod.URL(str(client.base_url).rstrip("/") + "/chat/completions"), headers))
        self._routes = routes
        self._timeout_ext = {"timeout": httpx_mod.Timeout(self.cfg.request_timeout_s).as_dict()}
        return clients

    # -- public API ----------------------------------------------------------------
    def chat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
        seeds: Sequence[Sequence[int | None]] | None = None,
        routing_keys: Sequence[str] | None = None,
        on_error: Callable[[int, BaseException], None] | None = None,
    ) -> list[list[Completion]]:
        """Send every conversation; return ``params.n`` completions each, in input order.

        ``on_error(i, exc)``: a conversation the server refuses for good (HTTP 400/413/422:
        a prompt over the context, an unprocessable request) is reported there and the batch
        goes on; its result is ``[]``. Server faults (5xx or timeouts after every retry,
        malformed replies, refused credentials) still end the batch, as :class:`BackendError`.

        ``routing_keys``: conversations with the same key go to the same server (a stable
        hash of the key over the base URLs; with ``routing: affinity``), so a server's prefix
        cache serves what they share (attribution: all calls of one item share its text).

        With ``seeds``, sample k of conversation i is its own request (``n = 1``, seed
        ``seeds[i][k]``): a server such as vLLM gives the k-th sample of one ``n``-request
        the seed ``seed + k``, so asking again for some samples of an item would repeat others.

        ``on_result`` and ``progress`` run on the backend's event-loop thread as each
        request finishes. A request that fails for good (non-retryable error, or
        retries exhausted) cancels the requests still pending and is raised here after
        the in-flight ones settle; results already delivered through ``on_result`` stay
        delivered.
        """
        if not conversations:
            return []
        loop = self._ensure_loop()
        with _fewer_gc_passes():
            routes = self._routes_for(routing_keys, len(conversations))
            fut = asyncio.run_coroutine_threadsafe(self._run(list(conversations), params, on_result, progress, seeds,
                                                             routes, on_error), loop)
            try:
                return fut.result()
            except BaseException:
                fut.cancel()
                raise

    async def achat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        """Awaitable :meth:`chat` for callers that run their own event loop."""
        loop = self._ensure_loop()
        with _fewer_gc_passes():
            fut = asyncio.run_coroutine_threadsafe(self._run(list(conversations), params, on_result, progress), loop)
            return await asyncio.wrap_future(fut)

    def close(self) -> None:
        """Close the clients' connections and stop the event loop; a later call starts afresh."""
        self._state.shutdown()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------
    async def _run(
        self,
        conversations: list[Conversation],
        params: SamplingParams,
        on_result: ResultCallback | None,
        progress: Callable[[int], None] | None,
        seeds: Sequence[Sequence[int | None]] | None = None,
        routes: list[int] | None = None,
        on_error: Callable[[int, BaseException], None] | None = None,
    ) -> list[list[Completion]]:
        if not self._state.clients:
            self._state.clients = self._make_clients()
        if seeds is not None:
            return await self._run_seeded(conversations, params, on_result, progress, seeds, routes, on_error)
        results: list[list[Completion] | None] = [None] * len(conversations)
        request_body = self._request_body(params)
        todo = iter(range(len(conversations)))
        failure: list[BaseException] = []

        # A fixed pool of workers pulling from one iterator keeps at most
        # max_concurrency requests in flight without creating one task per request
        # (100k-conversation batches stay cheap in memory).
        async def worker(w: int) -> None:
            for i in todo:
                if failure:
                    return
                try:
                    out = await self._one(conversations[i], request_body, params.n, w, None if routes is None else routes[i])
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - re-raised by chat()
                    if on_error is not None and _refused_item(e):
                        on_error(i, e)
                        results[i] = []
                        if progress is not None:
                            progress(1)
                        continue
                    failure.append(e)
                    return
                results[i] = out
                if on_result is not None:
                    try:
                        on_result(i, out)
                    except BaseException as e:  # a callback error stops the batch
                        failure.append(e)
                        return
                if progress is not None:
                    progress(1)

        n_workers = min(self.cfg.max_concurrency, len(conversations))
        await asyncio.gather(*(worker(w) for w in range(n_workers)))
        if failure:
            raise failure[0]
        return [r if r is not None else [] for r in results]

    async def _run_seeded(
        self,
        conversations: list[Conversation],
        params: SamplingParams,
        on_result: ResultCallback | None,
        progress: Callable[[int], None] | None,
        seeds: Sequence[Sequence[int | None]],
        routes: list[int] | None = None,
        on_error: Callable[[int, BaseException], None] | None = None,
    ) -> list[list[Completion]]:
        """One request per (conversation, sample), each with its own seed."""
        if len(seeds) != len(conversations) or any(len(s) != params.n for s in seeds):
            raise ValueError(f"seeds must give {params.n} seed(s) for each of the {len(conversations)} conversations")
        one = dataclasses.replace(params, n=1, seed=None)
        body = self._request_body(one)
        results: list[list[Completion | None]] = [[None] * params.n for _ in conversations]
        left = [params.n] * len(conversations)
        todo = iter([(i, k) for i in range(len(conversations)) for k in range(params.n)])
        failure: list[BaseException] = []

        async def worker(w: int) -> None:
            for i, k in todo:
                if failure:
                    return
                seeded = body if seeds[i][k] is None else {**body, "seed": seeds[i][k]}
                try:
                    [out] = await self._one(conversations[i], seeded, 1, w, None if routes is None else routes[i])
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - re-raised by chat()
                    if on_error is not None and _refused_item(e):
                        if left[i] > 0:
                            left[i] = 0
                            on_error(i, e)
                            if progress is not None:
                                progress(1)
                        continue
                    failure.append(e)
                    return
                results[i][k] = out
                left[i] -= 1
                if left[i]:
                    continue
                if on_result is not None:
                    try:
                        on_result(i, list(results[i]))  # type: ignore[arg-type]
                    except BaseException as e:  # a callback error stops the batch
                        failure.append(e)
                        return
                if progress is not None:
                    progress(1)

        n_workers = min(self.cfg.max_concurrency, len(conversations) * params.n)
        await asyncio.gather(*(worker(w) for w in range(n_workers)))
        if failure:
            raise failure[0]
        return [[c for c in r if c is not None] for r in results]

    def _request_body(self, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.n != 1:
            body["n"] = params.n
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        extra = dict(self.cfg.extra_body)
        if params.chat_template_kwargs:
            # vLLM / SGLang read chat_template_kwargs from the request body.
            extra["chat_template_kwargs"] = {**extra.get("chat_template_kwargs", {}), **params.chat_template_kwargs}
        body.update(extra)
        return body

    def _routes_for(self, keys: Sequence[str] | None, n: int) -> list[int] | None:
        """Base-URL index per conversation from its routing key (None: by worker)."""
        if keys is None or self.cfg.routing != "affinity" or len(self.cfg.base_urls) < 2:
            return None
        if len(keys) != n:
            raise ValueError(f"{len(keys)} routing keys for {n} conversations")
        import hashlib

        servers = len(self.cfg.base_urls)
        return [int.from_bytes(hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest(), "big") % servers
                for k in keys]

    async def _one(self, messages: Conversation, body: dict[str, Any], n: int, worker: int,
                   route: int | None = None) -> list[Completion]:
        import openai

        attempt = 0
        while True:
            # Worker w sticks to client w (so each pool holds a bounded number of
            # requests); consecutive workers alternate base URLs, and a retry moves on
            # to the next URL in case this server is the one in trouble.
            if route is None:
                c = (worker + attempt) % len(self._clients)
            else:
                # the server this conversation's key maps to (retries move on from it); one
                # client per server and worker slot keeps a pool's load bounded as before
                per = len(self._clients) // len(self.cfg.base_urls)
                server = (route + attempt) % len(self.cfg.base_urls)
                c = server + len(self.cfg.base_urls) * (worker % per)
            self.stats["requests"] += 1
            try:
                data = await self._request(c, {"messages": messages, **body})
            except (openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError) as e:
                if not _retryable(e) or attempt >= self.cfg.max_retries:
                    raise
                delay = self._delay(attempt, e)
                attempt += 1
                self.stats["retries"] += 1
                log.debug("retry %d in %.2fs after %s", attempt, delay, type(e).__name__)
                await asyncio.sleep(delay)
                continue
            return self._completions(data, n)

    async def _request(self, c: int, payload: dict[str, Any]) -> Any:
        """One chat-completion request through client ``c``: the parsed JSON body.

        ``cfg.request_timeout_s`` bounds the whole request (connection, headers, body): the
        transports' own timeouts bound each read, so a server that answers byte by byte or
        never ends its body would hold the call for ever. Past it, an ``APITimeoutError``
        (retried, then reported).
        """
        import openai

        deadline = asyncio.timeout(self.cfg.request_timeout_s)
        try:
            async with deadline:
                return await self._request_once(c, payload)
        except TimeoutError as e:
            if not deadline.expired():
                raise
            raise openai.APITimeoutError(request=self._httpx.Request("POST", self._routes[c][1])) from e

    async def _request_once(self, c: int, payload: dict[str, Any]) -> Any:
        """:meth:`_request` without its deadline.

        Both request paths share the fixes for the SDK's aiohttp layer here: errors it
        passes through unmapped (malformed responses) become connection errors, and a
        connection failure it calls a timeout (refused, dropped, bad certificate) is
        reported as what it was. Both are retried either way.
        """
        import openai

        try:
            if self.cfg.fast_requests:
                return await self._post_fast(c, payload)
            # The SDK's whole request path, with a plain JSON body and a raw response
            # (no response models).
            resp = await self._clients[c].post("/chat/completions", body=payload, cast_to=self._httpx.Response)
        except openai.APITimeoutError as e:
            cause = _aiohttp_cause(e)
            if cause is not None and not isinstance(cause, TimeoutError):
                raise openai.APIConnectionError(message=f"Connection error: {cause}", request=e.request) from e
            raise
        except Exception as e:
            if _is_aiohttp_error(e):
                raise openai.APIConnectionError(message=f"Connection error: {e}",
                                                request=self._httpx.Request("POST", self._routes[c][1])) from e
            raise
        try:
            return resp.json()
        except ValueError as e:
            raise MalformedReply(f"the server answered with a body that is not JSON: {resp.text[:200]!r}") from e

    async def _post_fast(self, c: int, payload: dict[str, Any]) -> Any:
        """POST through client ``c``'s HTTP client with its headers; SDK-typed errors."""
        import openai

        http_client, url, headers = self._routes[c]
        # A Request built from the parsed URL and headers kept per client: the same
        # request http_client.build_request() makes here (the SDK's headers override
        # the HTTP client's defaults; no cookies, params or base URL), at a third of
        # its CPU. The API key is a fixed string (cfg), so headers built once stay valid.
        request = self._httpx.Request("POST", url, content=json.dumps(payload).encode(), headers=headers, extensions=self._timeout_ext)
        try:
            response = await http_client.send(request)
        except self._httpx.TimeoutException as e:
            raise openai.APITimeoutError(request=request) from e
        except (self._httpx.RequestError, ssl.SSLError, anyio.EndOfStream) as e:  # as the SDK's own request path
            raise openai.APIConnectionError(request=request) from e
        if not response.is_success:
            raise _status_error(self._clients[c], response)
        try:
            return json.loads(response.content)
        except ValueError as e:
            raise MalformedReply(f"{url} answered with a body that is not JSON: {response.text[:200]!r}") from e

    def _delay(self, attempt: int, error: Exception) -> float:
        retry_after = _retry_after_s(error)
        if retry_after is not None:
            return min(self.backoff_max_s, retry_after)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * (2**attempt)))

    def _completions(self, data: Any, n: int) -> list[Completion]:
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise MalformedReply(f"the server's reply is not a chat completion (no 'choices' list): {str(data)[:200]}")
        # Every field is checked for its type: a server's reply is untrusted input, and a bad
        # one must be a MalformedReply (retried, then reported), never an AttributeError.
        usage = data.get("usage") or {}
        if not isinstance(usage, dict):
            raise MalformedReply(f"the server's 'usage' is not an object: {str(usage)[:200]}")
        prompt_tokens = _count(usage.get("prompt_tokens"), "usage.prompt_tokens")
        completion_tokens = _count(usage.get("completion_tokens"), "usage.completion_tokens")
        if prompt_tokens:
            self.stats["prompt_tokens"] += prompt_tokens
        if completion_tokens:
            self.stats["completion_tokens"] += completion_tokens
        if not all(isinstance(c, dict) for c in data["choices"]):
            raise MalformedReply(f"a choice in the server's reply is not an object: {str(data['choices'])[:200]}")
        choices = sorted(data["choices"], key=lambda c: c.get("index") if isinstance(c.get("index"), int) else 0)
        out = []
        for j, choice in enumerate(choices):
            msg = choice.get("message") or {}
            content = msg.get("content") if isinstance(msg, dict) else None
            if not isinstance(msg, dict) or not isinstance(content, str | None):
                raise MalformedReply(f"a choice's message has no text content: {str(msg)[:200]}")
            finish = choice.get("finish_reason")
            out.append(
                Completion(
                    text=content or "",
                    finish_reason=finish if isinstance(finish, str) else None,
                    # Usage is per request: reported once, on the first completion, so
                    # sums over completions give the true totals.
                    prompt_tokens=prompt_tokens if j == 0 else None,
                    completion_tokens=completion_tokens if j == 0 else None,
                )
            )
        if len(out) != n:
            raise MalformedReply(f"the server returned {len(out)} choices, asked for {n}")
        return out


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedReply(f"the server's {name} is not a whole number: {value!r}")
    return value


def _refused_item(e: BaseException) -> bool:
    """The server refused this one request (its prompt, not the server, is at fault)."""
    import openai

    return isinstance(e, openai.APIStatusError) and e.status_code in (400, 413, 422)


_GC_LOCK = threading.Lock()
_GC_USERS = 0
_GC_SAVED: tuple[int, int, int] | None = None
_GC_FROZE = False
_GC_GEN0 = 20_000


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """While requests run: freeze the objects that exist (the caller's corpus, caches)
    and collect young objects less often.

    Hundreds of requests in flight allocate fast; with CPython's default thresholds the
    cyclic GC runs hundreds of times a second and its older passes rescan the whole
    long-lived heap. This cut client CPU per request by about a fifth in
    bench/attribution_throughput.py. Reference-counted, so overlapping batches from
    several threads restore the settings once, when the last one ends.
    """
    global _GC_USERS, _GC_SAVED, _GC_FROZE
    with _GC_LOCK:
        if _GC_USERS == 0:
            _GC_SAVED = gc.get_threshold()
            # A caller that froze its heap itself (e.g. before forking) keeps its freeze.
            _GC_FROZE = gc.get_freeze_count() == 0
            if _GC_FROZE:
                gc.freeze()
            if _GC_SAVED[0] > 0:  # 0 = the caller switched collection off; leave it off
                gc.set_threshold(max(_GC_SAVED[0], _GC_GEN0), *_GC_SAVED[1:])
        _GC_USERS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_USERS -= 1
            if _GC_USERS == 0 and _GC_SAVED is not None:
                gc.set_threshold(*_GC_SAVED)
                if _GC_FROZE:
                    gc.unfreeze()
                _GC_SAVED = None


class _LoopState:
    """The backend's event loop, its thread and the clients built on it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.clients: list[Any] = []

    def shutdown(self) -> None:
        """Close the clients, stop the loop, join its thread. Idempotent; also runs as the
        backend's finalizer (garbage collection or interpreter exit)."""
        loop, thread, clients = self.loop, self.thread, self.clients
        self.loop, self.thread, self.clients = None, None, []
        if loop is None:
            return
        on_loop_thread = thread is threading.current_thread()

        async def close_clients() -> None:
            for c in clients:
                await c.close()

        if clients and not loop.is_closed():
            fut = asyncio.run_coroutine_threadsafe(close_clients(), loop)
            if not on_loop_thread:  # from the loop's own thread, waiting would deadlock
                try:
                    fut.result(timeout=10)
                except Exception:  # closing is best effort
                    log.debug("error while closing openai clients", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if on_loop_thread:
            return  # the loop stops after this callback; its thread ends, a daemon
        if thread is not None:
            thread.join(timeout=10)
        if not thread or not thread.is_alive():
            loop.close()


def _sdk_has_aiohttp() -> bool:
    """Whether the installed openai SDK has its aiohttp transport (``openai[aiohttp]``)."""
    import importlib.util

    import openai

    cls = getattr(openai, "DefaultAioHttpClient", None)
    return cls is not None and "Missing" not in cls.__name__ and importlib.util.find_spec("aiohttp") is not None


def _sdk_httpx() -> Any:
    """The httpx module the installed SDK is built on: httpx2 (openai >= 3) or httpx."""
    import openai

    try:
        import httpx2
    except ImportError:
        httpx2 = None
    if httpx2 is not None and issubclass(openai.DefaultAsyncHttpxClient, httpx2.AsyncClient):
        return httpx2
    import httpx

    return httpx


def _is_aiohttp_error(e: BaseException | None) -> bool:
    aiohttp = sys.modules.get("aiohttp")
    return e is not None and aiohttp is not None and isinstance(e, aiohttp.ClientError)


def _aiohttp_cause(e: BaseException) -> BaseException | None:
    """The aiohttp error behind ``e`` (down its ``__cause__`` chain), if there is one."""
    seen = 0
    cause = e.__cause__
    while cause is not None and seen < 10:
        if _is_aiohttp_error(cause):
            return cause
        cause, seen = cause.__cause__, seen + 1
    return None


def _new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("event_loop 'uvloop' needs the uvloop package: pip install uvloop") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _status_error(client: Any, response: Any) -> Exception:
    """The SDK's typed error for a non-2xx response (BadRequestError, RateLimitError, ...)."""
    import openai

    make = getattr(client, "_make_status_error_from_response", None)
    if make is not None:
        return make(response)
    return openai.APIStatusError(f"Error code: {response.status_code}", response=response, body=response.text)  # pragma: no cover


def _retryable(e: Exception) -> bool:
    import openai

    if isinstance(e, openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(e, openai.APIStatusError):
        return e.status_code in _RETRY_STATUS or e.status_code >= 500
    return False


def _retry_after_s(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
