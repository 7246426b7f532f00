"""How the student is sampled: :class:`GenerationConfig` (light: pydantic and the prompt
helpers only, so recipes and stage configs can hold one without loading pyarrow).

Each item becomes one conversation: an optional system prompt, then the user turn
``{question}\\n\\n{instruction}`` (the paper's default instruction asks for step-by-step
reasoning and the final answer in ``\\boxed{}``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..llm.base import BackendConfig, Conversation, SamplingParams
from ..textutil import DEFAULT_PROMPT_TEMPLATE, check_prompt_template, render_user_prompt

# The instruction of profiling, formatting and evaluation: one definition for the three stages.
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# How samples are seeded (part of the log's settings hash: rows seeded another way are not reused).
SEEDING = "per-sample-sha256-v1"


class GenerationConfig(BaseModel):
    """How the student is sampled. Defaults follow the paper (temperature 0.6, top_p 0.95)."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendConfig
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(8192, ge=1, description="Cap on generated tokens per sample.")
    n: int = Field(1, ge=1, description="Samples per item.")
    seed: int | None = Field(0, description="Sampling seed (recorded with every row).")
    instruction: str = Field(DEFAULT_INSTRUCTION, description="Appended to each question; '' for none.")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, description="The user turn: {question} and {instruction}; "
                                 "the paper's authors: '{instruction}\\n\\nQuestion: {question}'.")
    system_prompt: str | None = Field(None, description="Optional system message.")
    enable_thinking: bool | None = Field(
        None, description="Passed to the chat template (Qwen3 thinking switch); None leaves the template default."
    )
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict, description="More chat-template variables.")

    def sampling_params(self, n: int | None = None) -> SamplingParams:
        kwargs = dict(self.chat_template_kwargs)
        if self.enable_thinking is not None:
            kwargs["enable_thinking"] = self.enable_thinking
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens,
            n=n or self.n,
            seed=self.seed,
            chat_template_kwargs=kwargs,
        )

    @field_validator("prompt_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        return check_prompt_template(v)

    def user_prompt(self, question: str) -> str:
        return render_user_prompt(question, self.instruction, self.prompt_template)

    def conversation(self, question: str) -> Conversation:
        """The messages sent for one question."""
        messages: Conversation = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.user_prompt(question)})
        return messages

    def fingerprint(self) -> str:
        """Hash of what shapes one sample (not n, not the backend's throughput knobs): the
        backend config without its client-only fields (so extra_body's top_k, the dtype, the
        context length, model_kwargs count; concurrency and servers do not), the sampling and
        the prompt settings. Each logged row also keeps its prompt, checked on resume."""
        from ..artifacts import hash_obj  # artifacts loads pyarrow: only when a hash is asked for
        from ..llm.base import fingerprint_view

        return hash_obj(
            {
                "backend": fingerprint_view(self.backend.model_dump(mode="json")),
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens,
                "seed": self.seed,
                "instruction": self.instruction,
                "prompt_template": self.prompt_template,
                "system_prompt": self.system_prompt,
                "enable_thinking": self.enable_thinking,
                "chat_template_kwargs": self.chat_template_kwargs,
                "seeding": SEEDING,
            }
        )

    def sample_seed(self, item_id: str, sample: int) -> int | None:
        """The seed of sample ``sample`` of item ``item_id``: a hash of (seed, id, index), so
        every sample has its own random stream and asking again for sample k gives sample k."""
        if self.seed is None:
            return None
        digest = hashlib.sha256(f"{self.seed}\x1f{item_id}\x1f{sample}".encode()).digest()
        return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF
