"""How ``skilldistill ingest`` reads a corpus (light: pydantic and the preset table only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..decontaminate.config import DecontaminationConfig
from .presets import PRESETS


class IngestConfig(BaseModel):
    """How to read a corpus. Field options override the preset's mapping."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(..., description="HF dataset id, or a local file/folder (.jsonl/.json/.parquet).")
    preset: str | None = Field(None, description=f"Schema preset: {', '.join(sorted(PRESETS))}, or 'auto' (detect from the columns).")
    question_field: str | None = Field(None, description="Column holding the problem (overrides the preset).")
    response_field: str | None = Field(None, description="Column holding the teacher solution.")
    answer_field: str | None = Field(
        None, description="Column holding the gold answer (else extracted from \\boxed{} / ####).")
    id_field: str | None = Field(None, description="Column holding a stable id (else a hash of the question).")
    split: str | None = Field(None, description="HF split (preset default, else 'train').")
    config_name: str | None = Field(None, description="HF dataset configuration (subset) name.")
    limit: int | None = Field(None, ge=1, description="Read at most this many rows (HF sources stream).")
    exclude: list[str] = Field(default_factory=list, description="Benchmarks whose problems, and near-copies of them, "
                               "are removed: registered names (aime24, math500, ...) or files/folders of problems.")
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig,
                                                   description="How near-copies are found (exact, n-gram, fuzzy).")
    dedup: bool = Field(True, description="Drop repeated questions (normalised text).")
    on_error: Literal["auto", "skip", "fail"] = Field(
        "auto", description="auto: fail on a missing column, skip-and-count a single bad row."
    )
    require_response: bool = True
