"""The ``skill`` strategy (the paper): a leaf by weight, then a uniform unused item of it.

An item already taken through another of its leaves is skipped and the next one of the same
leaf is drawn; a leaf with no item left leaves the distribution (no rejection loop, so it
always terminates).
"""

from __future__ import annotations

import numpy as np

from ..index import LeafIndex
from .draw import Accept, Draw, LeafPools, Progress

_PICKS_AT_ONCE = 4096  # leaf picks drawn at once between updates of the distribution


def draw_skill(
    index: LeafIndex, weights: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Accept | None = None, progress: Progress | None = None,
) -> Draw:
    """Leaf by weight, then a uniform unused item of it, until ``budget`` items or no leaf is left."""
    draw = Draw()
    pools = LeafPools(index, np.zeros(index.n_items, dtype=bool), accept, draw)
    w = np.where(index.sizes() > 0, np.asarray(weights, dtype=np.float64), 0.0)
    while len(draw.items) < budget:
        cdf = np.cumsum(w)
        if cdf.size == 0 or cdf[-1] <= 0:
            draw.reason = "every leaf ran dry"
            break
        picks = np.searchsorted(cdf, rng.random(min(budget - len(draw.items), _PICKS_AT_ONCE)) * cdf[-1], side="right")
        before = len(draw.items)
        for leaf in picks.tolist():
            item = pools.take(leaf, rng)
            if item >= 0:
                draw.items.append(item)
                draw.leaves.append(leaf)
            if pools.remaining[leaf] == 0:
                # The distribution changes: drop this leaf and draw the next leaves afresh.
                w[leaf] = 0.0
                draw.exhausted_leaves += 1
                break
        if progress is not None:
            progress(len(draw.items) - before)
    return draw
