"""Chat backend for any OpenAI-compatible endpoint (``vllm serve``, SGLang, hosted APIs).

Throughput comes from concurrency, not batching: a whole batch of conversations is
sent through the official ``openai`` async client with up to ``cfg.max_concurrency``
requests in flight, spread round-robin over ``cfg.base_urls`` (several ``vllm serve``
processes = several GPUs or nodes): request slot ``w`` talks to URL ``w mod #urls``, so
each server holds an equal share of the requests in flight. Transient failures (timeouts, connection errors,
429, 5xx) are retried here with exponential backoff and full jitter; the client's own
retries are switched off so ``cfg.max_retries`` is the one number that counts.

The API key comes from ``cfg.resolved_api_key()`` (inline secret or environment
variable); it is handed to the client and never logged, printed or written.

The sync :meth:`OpenAIBackend.chat` runs the requests on a private event loop in a
daemon thread, so it works from plain scripts, from worker threads and from inside a
running event loop (Jupyter) alike.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[Any] = []
        self._response_cls: Any = None  # httpx(2).Response, set with the clients
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, base_urls={self.cfg.base_urls!r})"

    # -- event loop ----------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="openai-backend", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _make_clients(self) -> list[Any]:
        """One AsyncOpenAI client per (base URL, shard), interleaved by URL.

        httpx's connection pool scans every connection on each request, so one pool
        with hundreds of connections costs O(connections) per request; shards of at
        most ``_SHARD_CONNECTIONS`` keep that scan short. Built on the backend's loop:
        connection pools belong to one event loop.
        """
        import openai

        try:  # openai >= 3 ships on httpx2; older releases on httpx
            import httpx2 as httpx_mod
        except ImportError:  # pragma: no cover - depends on the installed openai
            import httpx as httpx_mod

        urls = self.cfg.base_urls
        per_url = -(-self.cfg.max_concurrency // len(urls))
        shards = max(1, -(-per_url // _SHARD_CONNECTIONS))
        pool = -(-per_url // shards) + 2
        limits = httpx_mod.Limits(max_connections=pool, max_keepalive_connections=pool)
        self._response_cls = httpx_mod.Response
        key = self.cfg.resolved_api_key()
        return [
            openai.AsyncOpenAI(
                api_key=key,
                base_url=url,
                max_retries=0,  # ours are the retries that count
                timeout=self.cfg.request_timeout_s,
                http_client=openai.DefaultAsyncHttpxClient(
                    limits=limits,
                    timeout=self.cfg.request_timeout_s,
                    # Plain-http servers (local vLLM) need no CA bundle: loading it
                    # costs ~50 ms of CPU per client.
                    **({"verify": False} if url.startswith("http://") else {}),
                ),
            )
            for _ in range(shards)
            for url in urls
        ]

    # -- public API ----------------------------------------------------------------
    def chat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        """Send every conversation; return ``params.n`` completions each, in input order.

        ``on_result`` and ``progress`` run on the backend's event-loop thread as each
        request finishes. A request that fails for good (non-retryable error, or
        retries exhausted) cancels the requests still pending and is raised here after
        the in-flight ones settle; results already delivered through ``on_result`` stay
        delivered.
        """
        if not conversations:
            return []
        loop = self._ensure_loop()
        fut = asyncio.run_coroutine_threadsafe(self._run(list(conversations), params, on_result, progress), loop)
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
        fut = asyncio.run_coroutine_threadsafe(self._run(list(conversations), params, on_result, progress), loop)
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if self._clients:
            clients = self._clients

            async def _close() -> None:
                for c in clients:
                    await c.close()

            try:
                asyncio.run_coroutine_threadsafe(_close(), loop).result(timeout=10)
            except Exception:  # closing is best effort
                log.debug("error while closing openai clients", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
        self._clients = []

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
    ) -> list[list[Completion]]:
        if not self._clients:
            self._clients = self._make_clients()
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
                    out = await self._one(conversations[i], request_body, params.n, w)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - re-raised by chat()
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

    async def _one(self, messages: Conversation, body: dict[str, Any], n: int, worker: int) -> list[Completion]:
        import openai

        attempt = 0
        while True:
            # Worker w sticks to client w (so each pool holds a bounded number of
            # requests); consecutive workers alternate base URLs, and a retry moves on
            # to the next URL in case this server is the one in trouble.
            client = self._clients[(worker + attempt) % len(self._clients)]
            self.stats["requests"] += 1
            try:
                # The client's own request path (auth, base URL, timeouts, status ->
                # typed errors) with a plain JSON body and a raw response: the SDK's
                # per-field request transform and response models cost about 2/3 of the
                # client CPU per call, which bounds throughput at hundreds in flight.
                resp = await client.post("/chat/completions", body={"messages": messages, **body}, cast_to=self._response_cls)
                data = resp.json()
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

    def _delay(self, attempt: int, error: Exception) -> float:
        retry_after = _retry_after_s(error)
        if retry_after is not None:
            return min(self.backoff_max_s, retry_after)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * (2**attempt)))

    def _completions(self, data: Any, n: int) -> list[Completion]:
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ValueError(f"not a chat completion response: {str(data)[:200]}")
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if prompt_tokens:
            self.stats["prompt_tokens"] += prompt_tokens
        if completion_tokens:
            self.stats["completion_tokens"] += completion_tokens
        choices = sorted(data["choices"], key=lambda c: c.get("index") or 0)
        out = []
        for j, choice in enumerate(choices):
            msg = choice.get("message") or {}
            out.append(
                Completion(
                    text=msg.get("content") or "",
                    finish_reason=choice.get("finish_reason"),
                    # Usage is per request: reported once, on the first completion, so
                    # sums over completions give the true totals.
                    prompt_tokens=prompt_tokens if j == 0 else None,
                    completion_tokens=completion_tokens if j == 0 else None,
                )
            )
        if len(out) != n:
            raise RuntimeError(f"server returned {len(out)} choices, asked for {n}")
        return out


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
