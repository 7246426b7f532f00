"""The ``all`` strategy: the whole eligible pool, the "full pool" baseline a selected subset is
measured against (the paper's full 100K pool; the "full 59K" ablation of Muennighoff et al.
2025, "s1: Simple test-time scaling", arXiv:2501.19393).

Every item that survives the usual filters (exclusions, earlier selections, ``only_skill``,
``max_depth``, the item profile, ...) is taken, in pool order; ``budget`` is ignored. With
``max_tokens`` each item is still measured and a too long one left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .draw import Accept, Draw, Progress

_PROGRESS_EVERY = 4096  # items between progress updates


def draw_all(eligible: np.ndarray, *, accept: Accept | None = None, progress: Progress | None = None) -> Draw:
    """Every eligible item in pool order (those ``accept`` refuses left out)."""
    draw = Draw()
    items = np.flatnonzero(eligible)
    if accept is None:
        draw.items = items.tolist()
        if progress is not None:
            progress(len(draw.items))
    else:
        for start in range(0, len(items), _PROGRESS_EVERY):
            before = len(draw.items)
            for item in items[start:start + _PROGRESS_EVERY].tolist():
                if accept(item):
                    draw.items.append(item)
                else:
                    draw.rejected += 1
            if progress is not None:
                progress(len(draw.items) - before)
    draw.leaves = [-1] * len(draw.items)
    if draw.rejected:
        draw.reason = "items longer than max_tokens left out"
    return draw


class AllItems:
    """The ``all`` strategy as the stage runs it: the part's budget is its eligible count."""

    name = "all"

    def budget(self, eligible: np.ndarray, budget: int) -> int:
        """The number of items the draw aims at: every eligible one, whatever ``budget`` says."""
        return int(np.sum(eligible))

    def draw(self, eligible: np.ndarray, budget: int, rng: np.random.Generator, *, accept: Accept | None = None,
             progress: Progress | None = None, part: str = "all") -> Draw:
        return draw_all(eligible, accept=accept, progress=progress)

    def report(self, eligible: np.ndarray, selected: np.ndarray, id_of: Callable[[int], Any]) -> dict[str, Any]:
        n = int(np.sum(eligible))
        return {"eligible": n, "selected": int(len(selected)), "left_out_too_long": n - int(len(selected)),
                "note": "every eligible item, in pool order; budget ignored"}
