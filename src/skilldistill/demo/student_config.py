"""The demo student's settings (``StudentConfig``, the recipe's ``demo.student``) and the leaves
its base training leaves weak. Light: pydantic only, so the recipe loads without torch."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The skew of the demo student's base training: strong leaves get weight 1, these get
# WEAK_WEIGHT (a few examples each), so the base model is uneven in a known way.
# The weak leaves are skills whose solutions use only facts and line forms the strong
# leaves teach (times tables, sums, Euclid's step), so what the student lacks is the
# procedure, which a few dozen examples can teach. Skills that need facts no other skill
# teaches (halving two-digit numbers, finding a common factor) stay strong: they would be
# weak for want of arithmetic, not for want of examples (docs/notes/demo-notebook.md).
WEAK_LEAVES: tuple[str, ...] = (
    "Fractions and percents->Percent of a number",
    "Algebra->Linear equations",
    "Algebra->Evaluating expressions",
    "Algebra->Arithmetic sequences",
    "Number theory->Remainders",
    "Geometry->Rectangles",
)


class StudentConfig(BaseModel):
    """Size of the demo student and the recipe of its skewed base training."""

    model_config = ConfigDict(extra="forbid")

    # tokenizer
    vocab_size: int = Field(768, ge=300, le=4096)
    tokenizer_texts: int = Field(3000, ge=100, description="generated problems the tokenizer learns from")
    # model (Qwen3 architecture)
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 512
    # base training on a skewed mix
    base_examples: int = Field(12000, ge=16)
    weak_leaves: list[str] = Field(default_factory=lambda: list(WEAK_LEAVES))
    weak_weight: float = Field(0.002, ge=0.0, description="share of a weak leaf relative to a strong one")
    skill_counts: tuple[float, float, float] = (0.7, 0.25, 0.05)
    epochs: float = 4.0
    learning_rate: float = 3e-3
    batch_size: int = 16
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    adam_beta2: float = 0.98  # a short memory: faster progress on short tiny-model runs
    lr_scheduler: str = "linear"
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict, description="e.g. {min_lr: 0.001} with cosine_with_min_lr")
    max_length: int = 256
    # the user turn the student sees: the same format the pipeline's generate stage uses
    prompt_template: str = "{question}"
    # One thread by default: for matrices this small, a second thread buys little and
    # collapses (spin-waiting) as soon as anything else uses the CPU; measured in bench/.
    threads: int | None = Field(1, description="torch CPU threads (None: torch's default)")
    # A real student can already write text such as a skill plan; a 0.9M model cannot.
    # This share of the base mix shows the plan form (as the format stage writes it),
    # so skill-aware fine-tuning teaches which skills, not the form. 0: never.
    plan_share: float = Field(0.3, ge=0.0, le=1.0, description="share of base examples with a skill plan")


__all__ = ["WEAK_LEAVES", "StudentConfig"]
