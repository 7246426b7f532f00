"""What every strategy returns (``Draw``), and the live leaf segments the leaf-by-leaf draws take items from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..index import LeafIndex

# An optional per-item check a draw calls on each item it would take (the length filter):
# False refuses the item, and the draw goes on to the next.
Accept = Callable[[int], bool]
Progress = Callable[[int], None]


@dataclass
class Draw:
    items: list[int] = field(default_factory=list)
    leaves: list[int] = field(default_factory=list)  # the leaf each item was drawn for (-1: random)
    rejected: int = 0  # items drawn but refused by ``accept``
    exhausted_leaves: int = 0
    reason: str = "budget met"


def take_in_order(order: np.ndarray, budget: int, *, accept: Accept | None, progress: Progress | None,
                  ran_out: str) -> Draw:
    """The first ``budget`` items of ``order`` that ``accept`` takes (refused ones counted); ``ran_out`` is the
    reason when fewer are left. The draw of every strategy that ranks the pool (random, length, loss)."""
    draw = Draw()
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
        draw.reason = ran_out
    if progress is not None:
        progress(len(draw.items))
    return draw


class LeafPools:
    """Live segments of a LeafIndex: draw a uniform unused item of a leaf in O(1)."""

    def __init__(self, index: LeafIndex, taken: np.ndarray, accept: Accept | None, draw: Draw) -> None:
        self.work = index.items.copy()  # the one copy; items are swapped inside it
        self.start = index.ptr[:-1].tolist()
        self.remaining = index.sizes().tolist()
        self.taken = taken
        self.accept = accept
        self.draw = draw

    def take(self, leaf: int, rng: np.random.Generator) -> int:
        """A uniform item of ``leaf`` not taken yet and accepted, or -1 once the leaf is dry."""
        work, taken, start = self.work, self.taken, self.start[leaf]
        r = self.remaining[leaf]
        while r > 0:
            j = start + int(rng.integers(r))
            last = start + r - 1
            item = int(work[j])
            work[j] = work[last]
            work[last] = item
            r -= 1
            if taken[item]:
                continue  # already selected through another leaf
            taken[item] = True
            if self.accept is not None and not self.accept(item):
                self.draw.rejected += 1
                continue
            self.remaining[leaf] = r
            return item
        self.remaining[leaf] = 0
        return -1
