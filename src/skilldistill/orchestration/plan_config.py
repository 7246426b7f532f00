"""The recipe's ``plan`` section (``PlanSettings``): throughputs and estimation settings of
``skilldistill plan``. Light: pydantic only, so the recipe loads without the planner."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PlanSettings(BaseModel):
    """The recipe's ``plan`` section: throughputs and estimation settings of ``skilldistill plan``."""

    model_config = ConfigDict(extra="forbid")

    generation_tokens_per_s: float | None = Field(
        None, gt=0, description="Generated tokens/s per GPU of the inference engine (profiling, evaluation, "
        "attribution), for GPU-hours.")
    training_tokens_per_s: float | None = Field(None, gt=0, description="Training tokens/s per GPU, for GPU-hours.")
    attribution_sample: int = Field(20, ge=1, description="Corpus items annotated with the recipe's backend to "
                                    "measure LLM calls and tokens per item.")
    chars_per_token: float = Field(4.0, gt=0, description="Token estimate of text no tokenizer has measured.")


__all__ = ["PlanSettings"]
