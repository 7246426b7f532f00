"""How corpus problems are matched against benchmark problems (light: pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["exact", "ngram", "fuzzy"]
METHODS: tuple[Method, ...] = ("exact", "ngram", "fuzzy")
# The five evaluation benchmarks of the paper (MATH-500 whole: math_l5 is a subset of it).
PAPER_DECONTAMINATION = ("aime24", "aime25", "amc23", "math500", "olympiadbench")


class DecontaminationConfig(BaseModel):
    """How corpus problems are matched against benchmark problems."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Method] = Field(default_factory=lambda: list(METHODS), min_length=1,
                                  description="Tests to run: exact, ngram, fuzzy (in that order).")
    ngram_n: int = Field(8, ge=2, le=64, description="Words per n-gram (open-r1, s1: 8).")
    ngram_min_overlap: float = Field(
        0.5, ge=0, le=1, description="Share of a benchmark problem's n-grams an item must hold (0: any one, open-r1's rule).")
    fuzzy_threshold: float = Field(95.0, gt=0, le=100, description="rapidfuzz fuzz.ratio needed (OpenThoughts: 95).")
    data_dir: str | None = Field(None, description="Folder with <name>/test.jsonl for benchmarks given by name "
                                 "(else the Hugging Face hub).")
