"""In-process vLLM (``vllm.LLM``): the fast path for sampling a student on GPUs.

Needs the ``[vllm]`` extra (``pip install 'skilldistill[vllm]'``); vllm is imported only
when this backend is built.

    from skilldistill.llm.base import BackendConfig, SamplingParams
    from skilldistill.llm.vllm_backend import VLLMBackend

    backend = VLLMBackend(BackendConfig(kind="vllm", model="Qwen/Qwen3-4B", tensor_parallel_size=2))
    outs = backend.chat(conversations, SamplingParams(n=8, max_tokens=16384, seed=0,
                                                      chat_template_kwargs={"enable_thinking": True}))

Conversations go through ``LLM.chat`` (the model's chat template, with
``chat_template_kwargs``) in chunks of ``chunk_size`` conversations: vLLM batches
continuously inside a chunk, and ``on_result`` fires after each chunk so callers persist
finished work while the rest runs.

``data_parallel_size > 1`` starts that many engine processes, each pinned (through
``CUDA_VISIBLE_DEVICES``) to its own ``tensor_parallel_size`` GPUs with its own
``vllm.LLM``, and hands them chunks as they free up; for dense models this equals vLLM's
offline data-parallel example without the cross-rank coordination that only MoE needs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from .base import BackendConfig, Completion, Conversation, ResultCallback, SamplingParams

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 512


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ConfigError(
            "the vllm backend needs vLLM: pip install 'skilldistill[vllm]' (on a CUDA machine), "
            "or use backend kind 'transformers' or 'openai'"
        ) from e
    return vllm


def llm_kwargs(cfg: BackendConfig) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` built from the backend config."""
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "enable_prefix_caching": cfg.enable_prefix_caching,
        "dtype": cfg.dtype,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.max_model_len is not None:
        kwargs["max_model_len"] = cfg.max_model_len
    if cfg.tokenizer:
        kwargs["tokenizer"] = cfg.tokenizer
    kwargs.update(cfg.model_kwargs)  # anything else vllm.LLM / EngineArgs takes
    return kwargs


def vllm_sampling_params(vllm: Any, params: SamplingParams) -> Any:
    return vllm.SamplingParams(
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        seed=params.seed,
        stop=list(params.stop) or None,
    )


def to_completions(request_output: Any) -> list[Completion]:
    """vLLM ``RequestOutput`` -> one :class:`Completion` per sample."""
    prompt_ids = getattr(request_output, "prompt_token_ids", None)
    prompt_tokens = len(prompt_ids) if prompt_ids is not None else None
    return [
        Completion(
            text=o.text,
            # vLLM: "stop" (EOS or a stop string), "length" (max_tokens or max_model_len), "abort"
            finish_reason=o.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(o.token_ids) if getattr(o, "token_ids", None) is not None else None,
        )
        for o in sorted(request_output.outputs, key=lambda o: getattr(o, "index", 0))
    ]


def _chat_chunk(llm: Any, vllm: Any, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
    outputs = llm.chat(
        [list(c) for c in conversations],
        sampling_params=vllm_sampling_params(vllm, params),
        use_tqdm=False,
        chat_template_kwargs=dict(params.chat_template_kwargs) or None,
    )
    if len(outputs) != len(conversations):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(conversations)} conversations")
    return [to_completions(o) for o in outputs]


class VLLMBackend:
    """A :class:`~skilldistill.llm.base.ChatBackend` on ``vllm.LLM`` (one or more engines)."""

    name = "vllm"

    def __init__(self, cfg: BackendConfig, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.cfg = cfg
        self.model = cfg.model
        self.chunk_size = chunk_size
        self._vllm = _import_vllm()
        self._llm: Any = None
        self._ranks: list[Any] = []
        if cfg.data_parallel_size == 1:
            try:
                self._llm = self._vllm.LLM(**llm_kwargs(cfg))
            except Exception as e:
                raise ConfigError(f"cannot load student model {cfg.model!r} in vLLM: {type(e).__name__}: {e}") from e
        else:
            self._start_ranks()

    # -- data parallel ----------------------------------------------------------------
    def _start_ranks(self) -> None:
        import multiprocessing as mp

        dp, tp = self.cfg.data_parallel_size, self.cfg.tensor_parallel_size
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(dp * tp)]
        if len(devices) < dp * tp:
            raise ConfigError(f"data_parallel_size {dp} x tensor_parallel_size {tp} needs {dp * tp} GPUs; {len(devices)} visible")
        ctx = mp.get_context("spawn")  # CUDA cannot be initialised in a forked child
        for rank in range(dp):
            parent, child = ctx.Pipe()
            gpus = ",".join(devices[rank * tp : (rank + 1) * tp])
            proc = ctx.Process(target=_rank_main, args=(child, self.cfg.model_dump(mode="json"), gpus, self.chunk_size), daemon=True, name=f"vllm-dp{rank}")
            proc.start()
            child.close()
            self._ranks.append((proc, parent))
        for rank, (_proc, conn) in enumerate(self._ranks):
            status = conn.recv() if conn.poll(timeout=3600) else ("error", "engine did not start within an hour")
            if status[0] != "ready":
                self.close()
                raise ConfigError(f"vLLM data-parallel rank {rank} failed to load {self.cfg.model!r}: {status[1]}")

    # -- ChatBackend ---------------------------------------------------------------------
    def chat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        results: list[list[Completion] | None] = [None] * len(conversations)
        chunks = [list(range(s, min(s + self.chunk_size, len(conversations)))) for s in range(0, len(conversations), self.chunk_size)]

        def deliver(indices: list[int], comps: list[list[Completion]]) -> None:
            for i, c in zip(indices, comps, strict=True):
                results[i] = c
                if on_result:
                    on_result(i, c)
            if progress:
                progress(len(indices))

        if self._llm is not None:
            for indices in chunks:
                deliver(indices, _chat_chunk(self._llm, self._vllm, [conversations[i] for i in indices], params))
        else:
            self._chat_data_parallel(conversations, params, chunks, deliver)
        return [r or [] for r in results]

    def _chat_data_parallel(self, conversations, params, chunks, deliver) -> None:
        from multiprocessing.connection import wait

        todo = list(reversed(chunks))
        busy: dict[int, list[int]] = {}
        params_d = params.as_dict()
        for rank, (_, conn) in enumerate(self._ranks):
            if todo:
                indices = todo.pop()
                conn.send(("chat", [conversations[i] for i in indices], params_d))
                busy[rank] = indices
        while busy:
            ready = wait([self._ranks[r][1] for r in busy])
            for conn in ready:
                rank = next(r for r in busy if self._ranks[r][1] is conn)
                try:
                    kind, payload = conn.recv()
                except EOFError:
                    raise RuntimeError(f"vLLM data-parallel rank {rank} died (exit code {self._ranks[rank][0].exitcode})") from None
                if kind == "error":
                    raise RuntimeError(f"vLLM data-parallel rank {rank}: {payload}")
                indices = busy.pop(rank)
                deliver(indices, [[Completion(**c) for c in comps] for comps in payload])
                if todo:
                    nxt = todo.pop()
                    conn.send(("chat", [conversations[i] for i in nxt], params_d))
                    busy[rank] = nxt

    def close(self) -> None:
        for proc, conn in self._ranks:
            try:
                conn.send(("stop", None, None))
            except (OSError, BrokenPipeError):
                pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        self._ranks = []
        self._llm = None


def _rank_main(conn: Any, cfg_dict: dict[str, Any], gpus: str, chunk_size: int) -> None:
    """One data-parallel engine: own GPUs, own vllm.LLM, serves chunks until told to stop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    cfg = BackendConfig.model_validate(cfg_dict)
    try:
        vllm = _import_vllm()
        llm = vllm.LLM(**llm_kwargs(cfg))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        kind, convs, params_d = conn.recv()
        if kind == "stop":
            return
        try:
            params_d = dict(params_d)
            params_d["stop"] = tuple(params_d.get("stop") or ())
            comps = _chat_chunk(llm, vllm, convs, SamplingParams(**params_d))
            conn.send(("ok", [[c.__dict__ for c in cs] for cs in comps]))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
