"""The interface every chat backend implements.

Callers (attribution, student generation, evaluation) hand a backend a whole batch of
conversations at once. Each backend gets its throughput its own way: the OpenAI client
keeps hundreds of requests in flight, vLLM batches inside one ``generate`` call, the
transformers backend pads into mini-batches. ``on_result`` fires as each conversation
finishes so callers can persist work the moment it is done (resumability).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Conversation = list[Message]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 1024
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Passed to the chat template (e.g. {"enable_thinking": False} for Qwen3).
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None  # "stop" | "length" | None when unknown
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


# on_result(index_in_batch, completions_for_that_conversation)
ResultCallback = Callable[[int, list[Completion]], None]


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model. ``name`` is the backend kind, ``model`` the model id or path."""

    name: str
    model: str

    def chat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
        seeds: Sequence[Sequence[int | None]] | None = None,
    ) -> list[list[Completion]]:
        """Return ``params.n`` completions per conversation, in input order.

        ``on_result`` is called once per conversation as soon as it is done (any order);
        ``progress`` is called with the number of conversations just finished.
        ``seeds[i][k]``: the seed of sample k of conversation i (each sample its own
        random stream, whatever else is in the batch); without it, ``params.seed``.
        A conversation that failed for good raises, unless the backend documents
        otherwise; callers persist what ``on_result`` delivered before the error.
        """
        ...

    def close(self) -> None:
        ...


# --------------------------------------------------------------------------------------
# Backend configuration, shared by attribution, profiling and evaluation recipes.
# --------------------------------------------------------------------------------------
from typing import Literal  # noqa: E402

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator  # noqa: E402


class BackendConfig(BaseModel):
    """Which chat model to call and how. Fields for other kinds are ignored."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai", "vllm", "transformers"] = "transformers"
    model: str = Field(..., description="Model id, local path, or served model name.")

    # openai: any OpenAI-compatible endpoint (vllm serve, SGLang, hosted APIs)
    base_urls: list[str] = Field(default_factory=lambda: ["http://localhost:8000/v1"], description="Used round-robin.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    api_key: SecretStr | None = Field(None, description="Key given inline; never logged or written out.")
    max_concurrency: int = Field(256, ge=1, description="Requests in flight at once.")
    max_retries: int = Field(6, ge=0)
    request_timeout_s: float = Field(600.0, gt=0)
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Sent with every request (e.g. top_k).")
    http_transport: Literal["auto", "aiohttp", "httpx"] = Field(
        "auto", description="The openai SDK's HTTP transport: 'aiohttp' (openai[aiohttp], the fast one), 'httpx' "
        "(the SDK default), or 'auto' (aiohttp when installed).")
    fast_requests: bool = Field(
        True, description="Send each request through the SDK client's own HTTP client and headers, skipping its "
        "per-request option building (about half the client CPU per call); false: client.post() for every request.")
    routing: Literal["affinity", "round-robin"] = Field(
        "affinity", description="Several base URLs: 'affinity' sends requests with the same routing key (attribution: "
        "the calls of one item) to the same server, whose prefix cache then serves their shared text; "
        "'round-robin' spreads every request.")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="Event loop of the client thread: 'auto' uses uvloop when installed.")

    # vllm: in-process vllm.LLM
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    enable_prefix_caching: bool = True
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = Field(False, description="vLLM: no CUDA graphs / torch.compile (faster start, slower decode).")
    kv_cache_memory_gb: float | None = Field(
        None, gt=0, description="vLLM KV-cache size per engine in GiB (CPU build: the RAM it reserves; "
        "default there: gpu_memory_utilization of the machine's memory).")
    enable_chunked_prefill: bool | None = Field(
        None, description="vLLM chunked prefill; null: vLLM's default on GPUs, off on the CPU build "
        "(seeded sampling needs it off there).")
    vllm_chunk_size: int | None = Field(None, ge=1, description="vLLM: requests per chunk at most (default 1024; "
                                        "smaller chunks when the work is small, so every engine is busy).")

    # transformers: local model on CPU or GPU
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    batch_size: int = Field(8, ge=1)
    gguf_file: str | None = Field(None, description="GGUF file inside `model` (loaded through transformers + gguf).")
    tokenizer: str | None = Field(None, description="Tokenizer path when it differs from `model`.")
    trust_remote_code: bool = False
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        from urllib.parse import urlparse

        if not v:
            raise ValueError("at least one base URL")
        for url in v:
            u = urlparse(url)
            if u.scheme not in ("http", "https") or not u.netloc:
                raise ValueError(f"{url!r} is not an http(s) URL such as http://localhost:8000/v1")
        return v

    def resolved_api_key(self) -> str:
        import os

        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get(self.api_key_env, "EMPTY")  # local vLLM servers accept any key


# Fields that only one backend kind reads (the rest, e.g. kind, model, dtype, are shared):
# a report shows a backend without the settings of the kinds it does not use.
BACKEND_KIND_FIELDS: dict[str, set[str]] = {
    "openai": {"base_urls", "api_key_env", "api_key", "max_concurrency", "max_retries", "request_timeout_s",
               "extra_body", "http_transport", "fast_requests", "event_loop", "routing"},
    "vllm": {"tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization", "enable_prefix_caching",
             "max_model_len", "enforce_eager", "kv_cache_memory_gb", "enable_chunked_prefill", "vllm_chunk_size"},
    "transformers": {"device", "batch_size", "gguf_file"},
}


# Fields that change how fast or where requests go, not what comes back: left out of stage
# fingerprints, so raising the concurrency or moving a server reruns nothing.
CLIENT_ONLY_FIELDS: frozenset[str] = frozenset({
    "base_urls", "api_key_env", "api_key", "max_concurrency", "max_retries", "request_timeout_s", "http_transport",
    "fast_requests", "event_loop", "routing", "tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization",
    "enable_prefix_caching", "kv_cache_memory_gb", "vllm_chunk_size", "enforce_eager", "device", "batch_size",
})


def fingerprint_view(obj: Any) -> Any:
    """``obj`` (a config dump) without the client-only fields of any backend config in it."""
    if isinstance(obj, list):
        return [fingerprint_view(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: fingerprint_view(v) for k, v in obj.items()}
    if out.get("kind") in BACKEND_KIND_FIELDS and "model" in out:
        out = {k: v for k, v in out.items() if k not in CLIENT_ONLY_FIELDS}
    elif {"scoring", "top_k", "margin"} <= set(out):  # the embedding attributor's settings
        out = {k: v for k, v in out.items() if k not in ("batch_size", "device", "cache_dir")}
    return out
