"""Which benchmarks ``skilldistill evaluate`` runs, how many samples each (light: pydantic
and the benchmark registry only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..benchmarks import PAPER_BENCHMARKS, get_spec


class EvaluateConfig(BaseModel):
    """Which benchmarks, how many samples each, and how to decode."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: list[str] = Field(default_factory=lambda: list(PAPER_BENCHMARKS))
    data_dir: str | None = Field(None, description="Folder with <name>/test.jsonl per benchmark (offline).")
    files: dict[str, str] = Field(default_factory=dict, description="Explicit file per benchmark name.")
    n_samples: dict[str, int] = Field(default_factory=dict, description="Override avg@n per benchmark.")
    limit: int | None = Field(None, ge=1, description="Evaluate at most this many problems per benchmark.")
    skills: dict[str, str] = Field(default_factory=dict, description="Annotated benchmark Parquet per name (per-skill accuracy).")
    grading_processes: int | None = None
    grading_timeout_s: float = Field(30.0, gt=0, description="Hard limit per graded answer (seconds).")

    def n_for(self, name: str) -> int:
        return self.n_samples.get(name, get_spec(name, custom=name in self.files).n_samples)
