"""The ``random`` strategy (the baseline): uniform without replacement over the eligible pool.

The ``difficulty`` strategy draws the same way, over the items in its pass-rate range.
"""

from __future__ import annotations

import numpy as np

from .draw import Accept, Draw, Progress, take_in_order


def draw_random(
    eligible: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Accept | None = None, progress: Progress | None = None,
) -> Draw:
    """Uniform without replacement over the eligible items."""
    order = rng.permutation(np.flatnonzero(eligible))
    return take_in_order(order, budget, accept=accept, progress=progress, ran_out="the eligible pool ran out")
