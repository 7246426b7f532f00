"""The ``forced`` strategy (the authors' ``forced_distribution``): no sampling, a greedy
projection of the selection's leaf distribution onto the target."""

from __future__ import annotations

import math

import numpy as np

from ..index import LeafIndex
from .draw import Accept, Draw, Progress


def draw_forced(
    index: LeafIndex, weights: np.ndarray, budget: int, *, solved: np.ndarray | None = None,
    correct_portion: float | None = None, accept: Accept | None = None,
    progress: Progress | None = None,
) -> Draw:
    """Greedy projection onto the target leaf distribution (the authors' forced_distribution).

    Target ``t`` = weights normalised over leaves with items. Each step adds the unused item
    ``i`` minimising ``|| (c + m_i) / sum(c + m_i) - t ||_2``, where ``c`` counts the selected
    items under each leaf and ``m_i`` is the item's leaf membership; ties go to the lowest
    pool index. With ``correct_portion`` p, at most ``round(budget * p)`` solved and
    ``budget - round(budget * p)`` unsolved items. Deterministic: no seed.
    """
    draw = Draw()
    n_leaves, n = index.n_leaves, index.n_items
    sizes = index.sizes()
    t = np.where(sizes > 0, np.asarray(weights, dtype=np.float64), 0.0)
    if t.sum() <= 0:
        draw.reason = "no leaf has a weight"
        return draw
    t = t / t.sum()
    pair_item = index.items.astype(np.int64)
    pair_leaf = index.leaf_of_position()
    deg = np.bincount(pair_item, minlength=n).astype(np.float64)
    dot_t = np.bincount(pair_item, weights=t[pair_leaf], minlength=n)
    open_ = deg > 0  # items with a leaf, not chosen, not refused
    quota = None
    if correct_portion is not None:
        assert solved is not None
        n_solved = int(math.floor(budget * correct_portion + 0.5))
        quota = {1: n_solved, 0: budget - n_solved}
        open_ &= solved >= 0
    counts = np.zeros(n_leaves, dtype=np.float64)
    tt = float(t @ t)
    while len(draw.items) < budget:
        if quota is not None:
            for flag, left in quota.items():
                if left <= 0:
                    open_ &= solved != flag
        if not open_.any():
            draw.reason = "no item left that fits"
            break
        total = counts.sum()
        dot_c = np.bincount(pair_item, weights=counts[pair_leaf], minlength=n)
        size = total + deg
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = (counts @ counts + 2 * dot_c + deg) / size**2 - 2 * (counts @ t + dot_t) / size + tt
        dist[~open_] = np.inf
        i = int(np.argmin(dist))  # first minimum: the lowest index among ties
        open_[i] = False
        if accept is not None and not accept(i):
            draw.rejected += 1
            continue
        draw.items.append(i)
        draw.leaves.append(-1)
        counts[pair_leaf[pair_item == i]] += 1
        if quota is not None:
            quota[int(solved[i])] -= 1
        if progress is not None:
            progress(1)
    return draw
