"""The config of ``skilldistill profile``: :class:`ProfileConfig` (light: pydantic and
other light config modules only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..generate.config import GenerationConfig
from ..grading import DEFAULT_TIMEOUT_S


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
