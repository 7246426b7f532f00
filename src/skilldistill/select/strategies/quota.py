"""The ``skill-quota`` strategy: the ``skill`` target distribution met deterministically.

Largest-remainder quotas per leaf, a multi-skill item counted once (for the leaf that took
it), the shortfall of leaves that run dry shared again among the others.
"""

from __future__ import annotations

import numpy as np

from ..index import LeafIndex
from .draw import Accept, Draw, LeafPools, Progress


def largest_remainder(p: np.ndarray, n: int) -> np.ndarray:
    """Integer quotas summing to ``n``, proportional to ``p`` (ties: lower leaf index first)."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum()
    if n <= 0 or total <= 0:
        return np.zeros(len(p), dtype=np.int64)
    raw = p / total * n
    base = np.floor(raw).astype(np.int64)
    rest = int(n - base.sum())
    frac = np.where(p > 0, raw - base, -1.0)
    order = np.lexsort((np.arange(len(p)), -frac))
    base[order[:rest]] += 1
    return base


def draw_quota(
    index: LeafIndex, weights: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Accept | None = None, progress: Progress | None = None,
) -> Draw:
    """Largest-remainder quotas of the weight distribution; shortfalls shared again."""
    draw = Draw()
    pools = LeafPools(index, np.zeros(index.n_items, dtype=bool), accept, draw)
    sizes = index.sizes()
    p = np.where(sizes > 0, np.asarray(weights, dtype=np.float64), 0.0)
    active = sizes > 0
    # Scarce leaves first, so the items they share with big leaves are not used up by those.
    order = np.lexsort((np.arange(index.n_leaves), sizes))
    need = budget
    while need > 0:
        if not (active & (p > 0)).any():  # zero-weight leaves get no quota: they cannot fill one
            draw.reason = "every leaf ran dry"
            break
        quotas = largest_remainder(np.where(active, p, 0.0), need)
        got = 0
        for leaf in order[quotas[order] > 0].tolist():
            for _ in range(int(quotas[leaf])):
                item = pools.take(leaf, rng)
                if item < 0:
                    break
                draw.items.append(item)
                draw.leaves.append(leaf)
                got += 1
            if pools.remaining[leaf] == 0:
                active[leaf] = False
                draw.exhausted_leaves += 1
        if progress is not None:
            progress(got)
        # A round that took nothing gave its whole quota to leaves that turned out dry (their
        # items taken through other leaves, or refused by the length filter): they are
        # inactive now, so the next round shares the quota among the leaves still holding items.
        need -= got
    return draw
