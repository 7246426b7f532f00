"""LLM backends behind one interface (:class:`skilldistill.llm.base.ChatBackend`).

Backends: ``openai`` (any OpenAI-compatible server), ``vllm`` (in-process vllm.LLM),
``transformers`` (local model). The embedding scorer for offline attribution lives in
``embedding.py``; it is not a chat backend.
"""

from .base import ChatBackend, Completion, SamplingParams

__all__ = ["ChatBackend", "Completion", "SamplingParams"]
