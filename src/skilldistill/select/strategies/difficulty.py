"""The ``difficulty`` strategy (the authors' difficulty baseline): uniform over the items whose
pass rate (``difficulty_field`` in the row or its ``meta``, OpenMathReasoning's
``pass_rate_72b_tir``) lies in ``difficulty_range`` (inclusive); the draw is ``draw_random``'s."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ...errors import InputError


def parse_pass_rate(value: Any) -> float | None:
    """A pass rate as a float in [0, 1], or None (missing, 'n/a', NaN, out of range)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if 0.0 <= v <= 1.0 else None


def pass_rates(src: Path, names: Sequence[str], fld: str) -> np.ndarray:
    """Per item: the pass rate in ``fld`` (a column, else a key of the ``meta`` JSON), NaN if none."""
    if fld in names:
        values = pq.read_table(src, columns=[fld]).column(fld).to_pylist()
    elif "meta" in names:
        values = []
        for m in pq.read_table(src, columns=["meta"]).column("meta").to_pylist():
            try:
                d = json.loads(m) if m else None
            except json.JSONDecodeError:
                d = None
            values.append(d.get(fld) if isinstance(d, dict) else None)
    else:
        raise InputError(f"the difficulty strategy needs a {fld!r} column or a meta column holding it "
                         "(ingest keeps OpenMathReasoning's pass_rate_72b_tir in meta)", file=src, field=fld)
    rates = np.array([np.nan if (v := parse_pass_rate(x)) is None else v for x in values], dtype=np.float64)
    if np.isnan(rates).all():
        raise InputError(f"no item has a pass rate in {fld!r}", file=src, field=fld)
    return rates
