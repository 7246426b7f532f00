"""``correct_portion``: a share of the selection from items the student already solved.

Over the whole budget (``correct_portion_scope: budget``) the budget is split into a solved
and an unsolved part, each drawn on its own; per leaf (``leaf``, the authors'
``reverse_mapping_with_score.py``) each leaf's items are cut to a balanced subset first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..index import LeafIndex


@dataclass
class BudgetPart:
    """A part of the budget drawn on its own."""

    name: str  # "all", or "solved" / "unsolved" when correct_portion splits the budget
    eligible: np.ndarray  # bool per pool item
    budget: int


def split_budget(eligible: np.ndarray, budget: int, solved: np.ndarray | None, portion: float | None) -> list[BudgetPart]:
    """One part for the whole budget, or with ``portion``: ``round(budget * portion)`` solved items
    and the rest unsolved."""
    if portion is None:
        return [BudgetPart("all", eligible, budget)]
    assert solved is not None
    n_solved = int(math.floor(portion * budget + 0.5))
    return [BudgetPart("solved", eligible & (solved == 1), n_solved),
            BudgetPart("unsolved", eligible & (solved == 0), budget - n_solved)]


def balance_leaves(index: LeafIndex, solved: np.ndarray, portion: float, rng: np.random.Generator) -> tuple[LeafIndex, dict[str, int]]:
    """Each leaf's items cut to a subset with a share ``portion`` of solved items (the authors'
    per-leaf correct_portion): ``total = min(#solved // p, #unsolved // (1 - p))``, then
    ``int(total * p)`` solved and ``int(total * (1 - p))`` unsolved items at random."""
    items_out: list[np.ndarray] = []
    leaves_out: list[np.ndarray] = []
    kept = {"solved": 0, "unsolved": 0, "leaves_emptied": 0}
    for j in range(index.n_leaves):
        seg = index.items[index.ptr[j]:index.ptr[j + 1]].astype(np.int64)
        right, wrong = seg[solved[seg] == 1], seg[solved[seg] == 0]
        if portion >= 1:
            total = float(len(right))
        elif portion <= 0:
            total = float(len(wrong))
        else:
            total = min(len(right) // portion, len(wrong) // (1 - portion))
        k_right, k_wrong = int(total * portion), int(total * (1 - portion))
        pick = np.concatenate([rng.choice(right, k_right, replace=False) if k_right else right[:0],
                               rng.choice(wrong, k_wrong, replace=False) if k_wrong else wrong[:0]])
        kept["solved"] += k_right
        kept["unsolved"] += k_wrong
        kept["leaves_emptied"] += int(len(seg) > 0 and len(pick) == 0)
        items_out.append(np.sort(pick))
        leaves_out.append(np.full(len(pick), j, dtype=np.int64))
    items = np.concatenate(items_out) if items_out else np.zeros(0, dtype=np.int64)
    leaves = np.concatenate(leaves_out) if leaves_out else np.zeros(0, dtype=np.int64)
    return LeafIndex.from_pairs(items, leaves, index.keys, index.n_items), kept
