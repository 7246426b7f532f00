"""The config of ``skilldistill profile``: :class:`ProfileConfig` (light: pydantic and
other light config modules only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..generate.config import GenerationConfig
from ..grading import DEFAULT_TIMEOUT_S


class AdaptiveConfig(BaseModel):
    """``profile.adaptive``: profile in rounds until the selection distribution is stable
    (profile/adaptive.py; docs/profile.md, "Adaptive profiling")."""

    model_config = ConfigDict(extra="forbid")

    tv_bound: float = Field(0.05, gt=0, lt=1, allow_inf_nan=False, description="Stop when the selection "
                            "distribution's total-variation distance from the full-pool one is at most this ...")
    confidence: float = Field(0.9, ge=0.5, lt=1, allow_inf_nan=False,
                              description="... at this posterior probability.")
    initial_per_leaf: int = Field(4, ge=1, le=10**6, description="Items per leaf in the first round.")
    round_items: int | None = Field(None, ge=1, le=10**9, description="Items per later round (default: 2 per leaf or a quarter of the items profiled so far, whichever is more).")
    max_rounds: int = Field(30, ge=1, le=10**4, description="Stop after this many rounds, bound met or not.")
    posterior_draws: int = Field(2000, ge=100, le=10**6, description="Full-pool profiles drawn per round.")
    temperature: float = Field(1.0, gt=0, le=100, allow_inf_nan=False,
                               description="The selection's T (set it as select.temperature).")
    w_max: float = Field(1000.0, ge=1, allow_inf_nan=False,
                         description="The selection's w_max (set it as select.w_max).")
    accuracy: Literal["smoothed", "raw"] = Field("smoothed", description="The selection's leaf accuracy (set it as "
                                                 "select.accuracy).")


class ProfileConfig(BaseModel):
    """Settings of the profiling stage."""

    model_config = ConfigDict(extra="forbid")

    generation: GenerationConfig
    prior_strength: float = Field(4.0, ge=0, description="Beta prior pseudo-samples pulling a node toward its parent.")
    solved_threshold: float = Field(0.5, ge=0, le=1, description="An item is solved when its accuracy >= this.")
    sample: int | None = Field(None, ge=1, description="Profile a stratified sample of this many items (by leaf).")
    sample_seed: int = 0
    exclude_selections: list[str] = Field(
        default_factory=list, description="Selections (selection.parquet or its folder) whose items are left out: "
        "a closed-loop round profiles the trained student on items it was not trained on.")
    answer_field: str = Field("answer", description="Column holding the gold answer.")
    grading_processes: int | None = Field(None, description="Grading worker processes (default: all cores).")
    grading_timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="Hard limit per graded answer.")
    plot: bool = True
    adaptive: AdaptiveConfig | None = Field(None, description="Profile in rounds until the selection distribution is "
                                            "stable, instead of every item (or a fixed sample).")

    @model_validator(mode="after")
    def _one_way_of_sampling(self) -> ProfileConfig:
        if self.adaptive is not None and self.sample is not None:
            raise ValueError("sample and adaptive are two ways of profiling part of the pool: set one")
        return self

    def fingerprint_dict(self) -> dict[str, Any]:
        """The config as fingerprinted: ``adaptive`` left out while unset, so profiles made before it stay done."""
        return self.model_dump(mode="json", exclude={"adaptive"} if self.adaptive is None else set())
