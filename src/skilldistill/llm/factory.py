"""Build a chat backend from its config. Heavy libraries are imported only when used."""

from __future__ import annotations

from .base import BackendConfig, ChatBackend


def make_backend(cfg: BackendConfig) -> ChatBackend:
    if cfg.kind == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    if cfg.kind == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(cfg)
    if cfg.kind == "transformers":
        from .hf_backend import TransformersBackend

        return TransformersBackend(cfg)
    raise ValueError(f"unknown backend kind {cfg.kind!r}")
