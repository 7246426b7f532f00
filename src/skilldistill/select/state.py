"""The state one run of ``skilldistill select`` hands from step to step (see ``stage``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .config import SelectConfig
from .index import LeafIndex
from .length import LengthCheck
from .pool import EligiblePool, Exclusions
from .strategies.draw import Draw
from .weights import LeafAccuracy


@dataclass
class DrawnPart:
    """One part of the budget and what its draw took."""

    name: str  # "all", or "solved" / "unsolved" when correct_portion splits the budget
    draw: Draw
    budget: int


@dataclass
class SelectRun:
    """The request, then what each step adds (fields without a default are set by their step)."""

    config: SelectConfig
    src: Path  # the pool's skills.parquet
    out: Path
    exclusions: Exclusions
    inputs: dict[str, str]  # what the manifest records of the input files
    profile: dict | None = None  # the skill profile, read and checked (start)
    # -- the pool (read_pool) ------------------------------------------------------------
    columns: list[str] = field(init=False)
    pool: EligiblePool = field(init=False)
    # -- the leaves drawn from (weigh_leaves): eligible items only, in profile order ------
    index: LeafIndex | None = None
    accuracy: LeafAccuracy | None = None
    weights: np.ndarray | None = None
    profile_overlap: dict[str, Any] | None = None  # pool leaves found in the profile (the report's)
    length_check: LengthCheck | None = None
    # -- the draw --------------------------------------------------------------------------
    drawn: list[DrawnPart] = field(init=False)
    items: np.ndarray = field(init=False)  # selected pool items, in draw order
    leaves: np.ndarray = field(init=False)  # the leaf each was drawn for (-1: none)
    messages: list[str] = field(init=False)  # why a part fell short of its budget
    # -- the artifacts ---------------------------------------------------------------------
    rows: pa.Table = field(init=False)  # selection.parquet's rows

    @property
    def config_json(self) -> dict[str, Any]:
        return self.config.fingerprint_dict()
