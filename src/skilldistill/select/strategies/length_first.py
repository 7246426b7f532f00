"""The ``length`` strategy: the longest teacher responses first.

Zhao, Andriushchenko, Croce, Flammarion 2024, "Long Is More for Alignment: A Simple but
Tough-to-Beat Baseline for Instruction Fine-Tuning" (arXiv:2402.04833): fine-tuning on the
examples with the longest responses beats elaborate quality filters.

Each eligible item's response is measured once (``length_unit``: Unicode characters, or
tokens of the response text alone under the student tokenizer, no chat template); items are
taken longest first, equal lengths in an order drawn from the seed, up to ``budget``. An item
with no response (null or blank) is left out. ``max_tokens`` still applies: a too long
formatted example is refused and the next longest taken.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...errors import InputError
from .draw import Accept, Draw, Progress, take_in_order

_READ_ROWS = 8192  # pool rows read at once
_TOKENIZE_AT_ONCE = 256  # responses per tokenizer call


def char_lengths(src: Path) -> np.ndarray:
    """Per pool item: its response's length in Unicode characters; -1 for a null or blank response."""
    out: list[np.ndarray] = []
    for batch in pq.ParquetFile(src).iter_batches(batch_size=_READ_ROWS, columns=["response"]):
        col = batch.column("response")
        n = pc.fill_null(pc.utf8_length(col), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0), True)
        n[blank.to_numpy(zero_copy_only=False)] = -1
        out.append(n)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def token_lengths(src: Path, eligible: np.ndarray, tokenizer: Any, *, progress: Progress | None = None) -> np.ndarray:
    """Per pool item: its response's length in tokens of ``tokenizer`` (the text alone, no special
    tokens); -1 for a null or blank response and for an item not eligible (never tokenised)."""
    n_items = len(eligible)
    lengths = np.full(n_items, -1, dtype=np.int64)
    offset = 0
    for batch in pq.ParquetFile(src).iter_batches(batch_size=_READ_ROWS, columns=["response"]):
        rows = np.flatnonzero(eligible[offset:offset + batch.num_rows])
        texts = batch.column("response").take(rows).to_pylist()
        keep = [(int(r), t) for r, t in zip(rows.tolist(), texts, strict=True) if isinstance(t, str) and t.strip()]
        for start in range(0, len(keep), _TOKENIZE_AT_ONCE):
            chunk = keep[start:start + _TOKENIZE_AT_ONCE]
            ids = tokenizer([t for _, t in chunk], add_special_tokens=False, verbose=False)["input_ids"]
            lengths[[offset + r for r, _ in chunk]] = [len(x) for x in ids]
        if progress is not None:
            progress(len(rows))
        offset += batch.num_rows
    return lengths


def draw_length(eligible: np.ndarray, lengths: np.ndarray, budget: int, rng: np.random.Generator, *,
                accept: Accept | None = None, progress: Progress | None = None) -> Draw:
    """The eligible items with a response, longest first, equal lengths in a seeded random order."""
    candidates = rng.permutation(np.flatnonzero(eligible & (lengths >= 0)))
    order = candidates[np.argsort(-lengths[candidates], kind="stable")]  # stable: the seeded order breaks ties
    return take_in_order(order, budget, accept=accept, progress=progress,
                         ran_out="the eligible items with a response ran out")


def _stats(values: np.ndarray) -> dict[str, Any] | None:
    if len(values) == 0:
        return None
    return {"min": int(values.min()), "median": float(np.median(values)), "mean": round(float(values.mean()), 3),
            "max": int(values.max())}


class LengthFirst:
    """The ``length`` strategy as the stage runs it, over lengths measured once for the pool."""

    name = "length"

    def __init__(self, lengths: np.ndarray, unit: str, tokenizer: str | None = None) -> None:
        self.lengths = lengths
        self.unit = unit
        self.tokenizer = tokenizer

    def budget(self, eligible: np.ndarray, budget: int) -> int:
        return budget

    def draw(self, eligible: np.ndarray, budget: int, rng: np.random.Generator, *, accept: Accept | None = None,
             progress: Progress | None = None, part: str = "all") -> Draw:
        return draw_length(eligible, self.lengths, budget, rng, accept=accept, progress=progress)

    def report(self, eligible: np.ndarray, selected: np.ndarray, id_of: Callable[[int], Any]) -> dict[str, Any]:
        """Lengths of the selection beside the pool's, and how the ties at the shortest length taken were broken."""
        measured = eligible & (self.lengths >= 0)
        pool, chosen = self.lengths[measured], self.lengths[selected]
        out: dict[str, Any] = {"unit": self.unit}
        if self.unit == "tokens":
            out["tokenizer"] = self.tokenizer
        out |= {"measured": int(measured.sum()), "without_response": int(np.sum(eligible & ~measured)),
                "selected_lengths": _stats(chosen), "pool_lengths": _stats(pool)}
        if len(chosen):
            shortest = int(chosen.min())
            out["ties_at_shortest_selected"] = {
                "length": shortest, "pool": int(np.sum(pool == shortest)), "selected": int(np.sum(chosen == shortest)),
                "note": "items of this length beyond those selected lost a tie broken by the seed"}
        return out


def measure_lengths(src: Path, eligible: np.ndarray, unit: str, tokenizer: Any, tokenizer_name: str | None, *,
                    progress: bool = True) -> LengthFirst:
    """The ``length`` strategy's lengths: in characters, or in tokens (only eligible items tokenised, under a bar)."""
    from ...progress import StageProgress

    if unit == "chars":
        lengths = np.where(eligible, char_lengths(src), -1)
    else:
        with StageProgress(disable=not progress, transient=True) as bar:
            task = bar.add_task("measuring responses (tokens)", total=int(eligible.sum()))
            lengths = token_lengths(src, eligible, tokenizer, progress=lambda k: bar.advance(task, k))
    n_eligible = int(eligible.sum())
    if n_eligible and not np.any(lengths[eligible] >= 0):
        raise InputError(f"none of the {n_eligible} eligible items has a response to measure (null or blank)",
                         file=src, field="response")
    return LengthFirst(lengths, unit, tokenizer_name)
