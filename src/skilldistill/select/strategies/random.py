"""The ``random`` strategy (the baseline): uniform without replacement over the eligible pool.

The ``difficulty`` strategy draws the same way, over the items in its pass-rate range.
"""

from __future__ import annotations

import numpy as np

from .draw import Accept, Draw, Progress


def draw_random(
    eligible: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Accept | None = None, progress: Progress | None = None,
) -> Draw:
    """Uniform without replacement over the eligible items."""
    draw = Draw()
    order = rng.permutation(np.flatnonzero(eligible))
    if accept is None:
        draw.items = order[:budget].tolist()
    else:
        for item in order.tolist():
            if len(draw.items) >= budget:
                break
            if accept(item):
                draw.items.append(item)
            else:
                draw.rejected += 1
    draw.leaves = [-1] * len(draw.items)
    if len(draw.items) < budget:
        draw.reason = "the eligible pool ran out"
    if progress is not None:
        progress(len(draw.items))
    return draw
