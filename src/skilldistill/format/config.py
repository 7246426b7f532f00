"""The configs of ``skilldistill format``: :class:`ExampleFormat` (how one item becomes a
chat example; selection's length filter uses it too) and :class:`FormatConfig` (light:
pydantic and other light config modules only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The instruction of profiling and evaluation: one definition for the three stages.
from ..generate.config import DEFAULT_INSTRUCTION
from ..textutil import DEFAULT_PROMPT_TEMPLATE, check_prompt_template, check_safe_name
from ..tree import CHAIN_SEP

Style = Literal["plain", "skill-aware"]
Depth = Literal["full", "top", "leaf"]
ExportKind = Literal["jsonl", "hf", "llamafactory"]


class ExampleFormat(BaseModel):
    """How one item becomes a chat example (shared with selection's length filter)."""

    model_config = ConfigDict(extra="forbid")

    style: Style = Field("skill-aware", description="plain: response unchanged; skill-aware: skill plan first.")
    system_prompt: str | None = Field(None, description="Optional system turn.")
    instruction: str | None = Field(DEFAULT_INSTRUCTION, description="Appended to the problem in the user turn.")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, description="The user turn: {question} and {instruction}; "
                                 "the paper's authors: '{instruction}\\n\\nQuestion: {question}'.")
    depth: Depth = Field("full", description="Chain window in the plan: full chain, top level only, or leaf only.")
    separator: str = Field(CHAIN_SEP, min_length=1, description="Joins the levels of a chain in the plan.")
    plan_position: Literal["before_think", "inside_think"] = Field(
        "before_think",
        description="before_think (the paper): plan, then the response with its <think> block; "
        "inside_think: the plan opens the <think> block (for chat templates that drop text before <think>).",
    )
    min_shown_depth: int = Field(0, ge=0, description="Plan window start: chain[min:max] (0: from the top skill).")
    max_shown_depth: int | None = Field(None, ge=1, description="Plan window end, exclusive (None: to the leaf); "
                                        "the authors' sub_chain[min:max], default (0, 5).")
    short_chains: Literal["keep", "drop"] = Field(
        "keep", description="A chain shorter than max_shown_depth: keep the part it has, or drop it (the authors' "
        "scripts; with their (0, 5) every skill_mix chain is dropped: an empty plan, reported).")
    short_names: str | None = Field(None, description="JSON map skill name -> short name (or a list: its first "
                                    "entry), e.g. the authors' capability_to_distinction.json.")

    @model_validator(mode="after")
    def _check_window(self) -> ExampleFormat:
        if self.max_shown_depth is not None and self.max_shown_depth <= self.min_shown_depth:
            raise ValueError(f"max_shown_depth ({self.max_shown_depth}) must be above min_shown_depth ({self.min_shown_depth})")
        return self

    @field_validator("prompt_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        return check_prompt_template(v)


class FormatConfig(ExampleFormat):
    """Stage config of ``skilldistill format``."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str | None = Field(None, description="Student tokenizer: hub id, folder or .gguf file.")
    gguf_file: str | None = Field(None, description="GGUF file name inside the tokenizer folder.")
    max_length: int | None = Field(None, ge=1, description="Token limit of one example (chat template applied).")
    overlong: Literal["drop", "keep"] = Field("drop", description="What to do with examples over max_length.")
    exports: list[ExportKind] = Field(default_factory=lambda: ["jsonl", "hf", "llamafactory"])
    dataset_name: str = Field("skilldistill", min_length=1, description="Name of the LLaMA-Factory dataset entry.")

    @field_validator("dataset_name")
    @classmethod
    def _safe_dataset_name(cls, v: str) -> str:
        return check_safe_name(v, "dataset_name")

    def example_format(self) -> ExampleFormat:
        return ExampleFormat(**{k: getattr(self, k) for k in ExampleFormat.model_fields})
