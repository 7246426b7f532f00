"""Stage 3: choose the SFT budget from an attributed pool, weighting weak skills.

Launch::

    skilldistill select runs/x/annotate/skills.parquet --out runs/x/select/skill \\
        --profile runs/x/profile/skill_profile.json --strategy skill --budget 1000 --seed 0

Strategies (all reproducible from ``seed``):

- ``random``: uniform without replacement over the eligible pool (the baseline).
- ``skill`` (the paper): leaf weight ``w = min((1/acc)**T, w_max**T)``, ``acc == 0`` ->
  ``w_max**T``; pick a leaf with ``P = w / sum(w)``, then a uniform item among that leaf's
  items not yet used, until the budget is met. An item already taken through another of
  its leaves is skipped and the next one of the same leaf is drawn; a leaf with no item
  left leaves the distribution (no rejection loop, so it always terminates).
- ``skill-quota``: the same target distribution met deterministically: largest-remainder
  quotas per leaf, a multi-skill item counted once (for the leaf that took it), the
  shortfall of leaves that run dry shared again among the others.
- ``forced`` (the authors' ``forced_distribution``): no sampling; items are added one at a
  time, each time the one whose leaves bring the selected items' leaf distribution closest
  (L2) to the target, ties to the lowest pool index; with ``correct_portion``, quotas of
  solved and unsolved items.
- ``difficulty`` (the authors' difficulty baseline): uniform over the items whose pass rate
  (``difficulty_field`` in the row or its ``meta``, OpenMathReasoning's
  ``pass_rate_72b_tir``) lies in ``difficulty_range`` (default [0.25, 0.625], inclusive).

Variants the authors' experiments use (docs/select.md lists where each differs from their
scripts): ``max_depth`` (chains cut to this depth before leaves are computed),
``correct_portion`` over the budget or per leaf (``correct_portion_scope``), ``only_skill``
(draw from one leaf), raw accuracy with leaves without a verdict excluded
(``accuracy: raw``, ``unprofiled_leaves: exclude``).

Scale: the pool becomes a CSR index (``ptr``/``items`` numpy arrays, one segment per
leaf). Drawing swaps the chosen item to the end of its leaf's live segment (a partial
Fisher-Yates per leaf), so a draw is O(1), memory is one copy of the index, and nothing
is copied per draw. Item lengths (``max_tokens``) are measured lazily, only for items
drawn, so a 100K pool of long traces is never tokenised in full.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from .artifacts import (
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
    write_text,
)
from .errors import ConfigError, InputError
from .format import ExampleFormat, build_messages, count_tokens, load_tokenizer
from .tree import CHAIN_SEP

log = logging.getLogger(__name__)

Strategy = Literal["random", "skill", "skill-quota", "forced", "difficulty"]
_KEY_SEP = "\x1f"  # joins chain names into one key; cannot occur in a node name
_BATCH = 4096  # leaf picks drawn at once between updates of the distribution

SELECTION = "selection.parquet"
REPORT = "report.json"
PLOT = "distribution.png"
LEAF_TABLE = "leaf_distribution.csv"


class SelectConfig(BaseModel):
    """Stage config of ``skilldistill select``."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "skill"
    budget: int = Field(1000, ge=1, description="Number of unique items to select.")
    seed: int = 0
    temperature: float = Field(1.0, gt=0, description="T in w = min((1/acc)**T, w_max**T).")
    w_max: float = Field(1000.0, ge=1, description="Weight cap before the power T; acc == 0 gets w_max**T.")
    accuracy: Literal["smoothed", "raw"] = Field("smoothed", description="Profile field used as the leaf accuracy.")
    correct_portion: float | None = Field(
        None, ge=0, le=1, description="Share of the budget taken from items the student already solved (needs the item profile)."
    )
    correct_portion_scope: Literal["budget", "leaf"] = Field(
        "budget", description="budget: the share over the whole selection; leaf: each leaf's items cut to a balanced "
        "subset first (the authors' reverse_mapping_with_score.py), then drawn as usual.")
    max_depth: int | None = Field(None, ge=1, description="Cut chains to this depth before leaves are computed "
                                  "(the authors: 5, 10, 15 on EvalTree, 1 on skill_mix).")
    unprofiled_leaves: Literal["ancestor", "exclude"] = Field(
        "ancestor", description="A leaf without a graded item: takes its nearest profiled ancestor's accuracy "
        "(ancestor), or is left out of the distribution (exclude; the authors, with accuracy: raw).")
    only_skill: str | None = Field(None, description="Draw only from this leaf: its name, or its whole chain 'A->b'.")
    difficulty_field: str = Field("pass_rate_72b_tir", description="difficulty strategy: the pass-rate field "
                                  "(a column, or a key of the meta JSON).")
    difficulty_range: tuple[float, float] = Field((0.25, 0.625), description="difficulty strategy: inclusive pass-rate range.")
    max_tokens: int | None = Field(None, ge=1, description="Drop items whose formatted example is longer (student tokenizer).")
    tokenizer: str | None = Field(None, description="Student tokenizer for max_tokens: hub id, folder or .gguf file.")
    gguf_file: str | None = None
    example: ExampleFormat = Field(default_factory=ExampleFormat, description="Example format measured by max_tokens.")
    exclude: list[str] = Field(default_factory=list, description="Item ids, or files (benchmarks: by normalised question; .txt: ids).")
    exclude_selections: list[str] = Field(
        default_factory=list, description="Earlier selections (selection.parquet, or the folder holding one): their "
        "items are never selected again (a closed-loop round, or a round run by hand).")


# ---------------------------------------------------------------------------------
# The leaf -> item index
# ---------------------------------------------------------------------------------
@dataclass
class LeafIndex:
    """CSR index: the items of leaf ``l`` are ``items[ptr[l]:ptr[l + 1]]`` (ascending)."""

    keys: list[tuple[str, ...]]
    ptr: np.ndarray
    items: np.ndarray
    n_items: int

    @property
    def n_leaves(self) -> int:
        return len(self.keys)

    def sizes(self) -> np.ndarray:
        return np.diff(self.ptr)

    def leaf_of_position(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_leaves, dtype=np.int64), self.sizes())

    @classmethod
    def from_pairs(cls, item_idx: np.ndarray, leaf_idx: np.ndarray, keys: Sequence[tuple[str, ...]], n_items: int) -> LeafIndex:
        n_leaves = len(keys)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        leaf_idx = np.asarray(leaf_idx, dtype=np.int64)
        if item_idx.size and np.any(item_idx[1:] < item_idx[:-1]):
            by_item = np.argsort(item_idx, kind="stable")
            item_idx, leaf_idx = item_idx[by_item], leaf_idx[by_item]
        # Pairs arrive in item order, so a stable sort by leaf keeps items ascending inside
        # each leaf and puts repeated (item, leaf) pairs next to each other. Small leaf
        # codes sort by radix (linear time).
        sort_key = leaf_idx.astype(np.uint16) if n_leaves <= 2**16 else leaf_idx
        order = np.argsort(sort_key, kind="stable")
        items = item_idx[order]
        leaves = leaf_idx[order]
        if items.size:
            keep = np.ones(items.size, dtype=bool)
            keep[1:] = (items[1:] != items[:-1]) | (leaves[1:] != leaves[:-1])
            items, leaves = items[keep], leaves[keep]
        counts = np.bincount(leaves, minlength=n_leaves)
        ptr = np.zeros(n_leaves + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        dtype = np.int32 if n_items < 2**31 else np.int64
        return cls(list(keys), ptr, items.astype(dtype), n_items)

    @classmethod
    def from_skills(cls, skills: pa.Array | pa.ChunkedArray, *, file: str | Path | None = None) -> LeafIndex:
        """Build from a ``list<list<string>>`` column (vectorised; no Python loop over rows)."""
        if isinstance(skills, pa.ChunkedArray):
            skills = skills.combine_chunks()
        parent, keys = _chain_keys(skills, Path(file) if file else Path("<skills>"))
        enc = pc.dictionary_encode(keys)
        names = [tuple(k.split(_KEY_SEP)) for k in enc.dictionary.to_pylist()]
        return cls.from_pairs(parent, enc.indices.to_numpy(zero_copy_only=False), names, len(skills))

    def reorder(self, order: np.ndarray) -> LeafIndex:
        """Leaves in a new order (``order[new] = old``)."""
        sizes = self.sizes()[order]
        ptr = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(sizes, out=ptr[1:])
        segs = [self.items[self.ptr[o]:self.ptr[o + 1]] for o in order]
        items = np.concatenate(segs) if segs else self.items[:0]
        return LeafIndex([self.keys[o] for o in order], ptr, items, self.n_items)

    def truncate(self, depth: int) -> LeafIndex:
        """Chains cut to ``depth``: a deeper leaf becomes its depth-``depth`` ancestor (one
        leaf for all the items under it, each item once)."""
        new: dict[tuple[str, ...], int] = {}
        remap = np.array([new.setdefault(tuple(k[:depth]), len(new)) for k in self.keys], dtype=np.int64)
        leaves = remap[self.leaf_of_position()] if self.n_leaves else np.zeros(0, dtype=np.int64)
        return LeafIndex.from_pairs(self.items.astype(np.int64), leaves, list(new), self.n_items)

    def keep_leaves(self, leaves: Sequence[int]) -> LeafIndex:
        """Only these leaves, in this order."""
        return self.reorder(np.asarray(list(leaves), dtype=np.int64))

    def restrict(self, mask: np.ndarray) -> LeafIndex:
        """Keep only items where ``mask`` is true (leaves keep their positions, maybe empty)."""
        keep = mask[self.items]
        counts = np.bincount(self.leaf_of_position()[keep], minlength=self.n_leaves)
        ptr = np.zeros(self.n_leaves + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return LeafIndex(self.keys, ptr, self.items[keep], self.n_items)

    def membership(self, selected: np.ndarray | None = None, *, fractional: bool = False) -> np.ndarray:
        """Per leaf: how many (selected) items sit under it; ``fractional``: 1/k for an item with k leaves."""
        pos_leaf = self.leaf_of_position()
        weights = None
        if fractional:
            k = np.bincount(self.items, minlength=self.n_items).astype(np.float64)
            weights = 1.0 / k[self.items]
        if selected is not None:
            sel = np.zeros(self.n_items, dtype=bool)
            sel[selected] = True
            m = sel[self.items]
            pos_leaf = pos_leaf[m]
            weights = weights[m] if weights is not None else None
        return np.bincount(pos_leaf, weights=weights, minlength=self.n_leaves).astype(np.float64)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


# ---------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------
def leaf_weights(accuracy: np.ndarray, temperature: float = 1.0, w_max: float = 1000.0) -> np.ndarray:
    """``min((1/acc)**T, w_max**T)``; ``acc == 0`` gives ``w_max**T``."""
    acc = np.clip(np.asarray(accuracy, dtype=np.float64), 0.0, 1.0)
    cap = float(w_max) ** temperature
    with np.errstate(divide="ignore"):
        w = np.where(acc > 0, np.power(1.0 / np.where(acc > 0, acc, 1.0), temperature), cap)
    return np.minimum(w, cap)


@dataclass
class LeafAccuracy:
    accuracy: np.ndarray  # float, one per leaf (never NaN)
    source: list[str]  # "leaf" | "ancestor" | "global" | "none"
    graded: np.ndarray  # graded items of the leaf's own profile node (0 if absent)
    in_profile: int  # leaves of the profile
    profile_leaves_without_items: int
    global_accuracy: float | None


def leaf_accuracies(keys: Sequence[tuple[str, ...]], profile: dict, field_name: str = "smoothed", *, file: str | Path | None = None) -> LeafAccuracy:
    """Accuracy per leaf from a skill profile, with fallbacks for leaves without a value.

    A leaf whose own value is null (no graded item) takes the value of its nearest
    ancestor that has one, else the global mean (the root node's value, or the profile's
    top-level ``overall`` entry, else correct / graded summed over the profile's leaves). With no graded item anywhere, every leaf
    gets weight 1 (uniform over leaves).
    """
    key = "smoothed_accuracy" if field_name == "smoothed" else "accuracy"
    nodes = profile.get("nodes") if isinstance(profile, dict) else None
    if not isinstance(nodes, list):
        raise InputError("skill profile has no 'nodes' list", file=file, field="nodes")
    by_path: dict[tuple[str, ...], dict] = {}
    for i, node in enumerate(nodes):
        path = node.get("path") if isinstance(node, dict) else None
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            raise InputError("node needs 'path': a list of names", file=file, field=f"nodes[{i}].path")
        value = node.get(key)
        if value is not None and not isinstance(value, int | float):
            raise InputError(f"{key!r} must be a number or null, got {value!r}", file=file, field=f"nodes[{i}].{key}")
        by_path[tuple(path)] = node

    def value(node: dict | None) -> float | None:
        if node is None:
            return None
        v = node.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    global_acc = value(by_path.get(()))
    if global_acc is None and isinstance(profile.get("overall"), dict):
        global_acc = value(profile["overall"])  # the root's numbers, as the profile stage writes them
    if global_acc is None:
        leaf_nodes = [n for p, n in by_path.items() if p and n.get("is_leaf")]
        graded = sum(int(n.get("graded") or 0) for n in leaf_nodes)
        correct = sum(int(n.get("correct") or 0) for n in leaf_nodes)
        global_acc = correct / graded if graded else None

    acc = np.empty(len(keys), dtype=np.float64)
    sources: list[str] = []
    graded_arr = np.zeros(len(keys), dtype=np.int64)
    for j, chain in enumerate(keys):
        node = by_path.get(tuple(chain))
        graded_arr[j] = int(node.get("graded") or 0) if node else 0
        v = value(node)
        src = "leaf"
        if v is None:
            src = "ancestor"
            for cut in range(len(chain) - 1, 0, -1):
                v = value(by_path.get(tuple(chain[:cut])))
                if v is not None:
                    break
        if v is None:
            src, v = ("global", global_acc) if global_acc is not None else ("none", 1.0)
        acc[j] = v
        sources.append(src)
    key_set = {tuple(k) for k in keys}
    profile_leaves = [p for p, n in by_path.items() if p and n.get("is_leaf")]
    return LeafAccuracy(
        accuracy=acc, source=sources, graded=graded_arr, in_profile=len(profile_leaves),
        profile_leaves_without_items=sum(1 for p in profile_leaves if p not in key_set),
        global_accuracy=global_acc,
    )


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


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats over p's support; ``inf`` when q is 0 where p is not."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum() if q.sum() > 0 else q
    s = p > 0
    if np.any(q[s] <= 0):
        return math.inf
    return float(np.sum(p[s] * np.log(p[s] / q[s])))


# ---------------------------------------------------------------------------------
# Samplers (pure numpy; ``accept`` is an optional per-item check, e.g. length)
# ---------------------------------------------------------------------------------
@dataclass
class Draw:
    items: list[int] = field(default_factory=list)
    leaves: list[int] = field(default_factory=list)  # the leaf each item was drawn for (-1: random)
    rejected: int = 0  # items drawn but refused by ``accept``
    exhausted_leaves: int = 0
    reason: str = "budget met"


class _LeafPools:
    """Live segments of a LeafIndex: draw a uniform unused item of a leaf in O(1)."""

    def __init__(self, index: LeafIndex, taken: np.ndarray, accept: Callable[[int], bool] | None, draw: Draw) -> None:
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


def draw_skill(
    index: LeafIndex, weights: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Callable[[int], bool] | None = None, progress: Callable[[int], None] | None = None,
) -> Draw:
    """Leaf by weight, then a uniform unused item of it, until ``budget`` items or no leaf is left."""
    draw = Draw()
    pools = _LeafPools(index, np.zeros(index.n_items, dtype=bool), accept, draw)
    w = np.where(index.sizes() > 0, np.asarray(weights, dtype=np.float64), 0.0)
    while len(draw.items) < budget:
        cdf = np.cumsum(w)
        if cdf.size == 0 or cdf[-1] <= 0:
            draw.reason = "every leaf ran dry"
            break
        picks = np.searchsorted(cdf, rng.random(min(budget - len(draw.items), _BATCH)) * cdf[-1], side="right")
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


def draw_quota(
    index: LeafIndex, weights: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Callable[[int], bool] | None = None, progress: Callable[[int], None] | None = None,
) -> Draw:
    """Largest-remainder quotas of the weight distribution; shortfalls shared again."""
    draw = Draw()
    pools = _LeafPools(index, np.zeros(index.n_items, dtype=bool), accept, draw)
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


def draw_random(
    eligible: np.ndarray, budget: int, rng: np.random.Generator, *,
    accept: Callable[[int], bool] | None = None, progress: Callable[[int], None] | None = None,
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


def draw_forced(
    index: LeafIndex, weights: np.ndarray, budget: int, *, solved: np.ndarray | None = None,
    correct_portion: float | None = None, accept: Callable[[int], bool] | None = None,
    progress: Callable[[int], None] | None = None,
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


def parse_pass_rate(value: Any) -> float | None:
    """A pass rate as a float in [0, 1], or None (missing, 'n/a', NaN, out of range)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if 0.0 <= v <= 1.0 else None


# ---------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------
@dataclass
class SelectResult:
    out_dir: Path
    n_selected: int
    budget: int
    report: dict[str, Any]
    skipped: bool = False


def run_select(
    skills_parquet: str | Path,
    out_dir: str | Path,
    config: SelectConfig | None = None,
    *,
    profile_json: str | Path | None = None,
    item_profile: str | Path | None = None,
    tokenizer: Any = None,
    force: bool = False,
    progress: bool = True,
    plot: bool = True,
) -> SelectResult:
    """Select ``config.budget`` items of ``skills_parquet`` into ``out_dir``.

    ``profile_json``: the skill profile (needed by ``skill`` and ``skill-quota``);
    ``item_profile``: per-item ``profile.parquet`` (needed by ``correct_portion``);
    ``tokenizer``: a loaded student tokenizer for ``max_tokens`` (else ``config.tokenizer``).
    Skips the work when ``out_dir`` holds a matching manifest, unless ``force``.
    """
    from .artifacts import FolderLock

    with FolderLock(out_dir, what="select"):
        return _run_select_unlocked(skills_parquet, out_dir, config, profile_json=profile_json, item_profile=item_profile, tokenizer=tokenizer, force=force, progress=progress, plot=plot)


def _run_select_unlocked(
    skills_parquet: str | Path,
    out_dir: str | Path,
    config: SelectConfig | None = None,
    *,
    profile_json: str | Path | None = None,
    item_profile: str | Path | None = None,
    tokenizer: Any = None,
    force: bool = False,
    progress: bool = True,
    plot: bool = True,
) -> SelectResult:
    """Select ``config.budget`` items of ``skills_parquet`` into ``out_dir``.

    ``profile_json``: the skill profile (needed by ``skill`` and ``skill-quota``);
    ``item_profile``: per-item ``profile.parquet`` (needed by ``correct_portion``);
    ``tokenizer``: a loaded student tokenizer for ``max_tokens`` (else ``config.tokenizer``).
    Skips the work when ``out_dir`` holds a matching manifest, unless ``force``.
    """
    config = config or SelectConfig()
    t0 = time.perf_counter()
    src = Path(skills_parquet)
    if src.is_dir():
        src = src / "skills.parquet"
    if not src.exists():
        raise InputError("skills table not found", file=src)
    weighted = config.strategy in ("skill", "skill-quota", "forced")
    if weighted and profile_json is None:
        raise ConfigError(f"strategy {config.strategy!r} needs the skill profile (--profile skill_profile.json)")
    if config.correct_portion is not None and item_profile is None:
        raise ConfigError("correct_portion needs the per-item profile (--item-profile profile.parquet)")
    if config.correct_portion is not None and config.correct_portion_scope == "leaf" and config.strategy not in ("skill", "skill-quota"):
        raise ConfigError(f"correct_portion_scope 'leaf' balances each leaf before a skill draw; strategy "
                          f"{config.strategy!r} takes the share over the budget (correct_portion_scope: budget)")
    lo, hi = config.difficulty_range
    if not 0 <= lo <= hi <= 1:
        raise ConfigError(f"difficulty_range must be 0 <= low <= high <= 1, got {list(config.difficulty_range)}")
    if config.max_tokens is not None and tokenizer is None and config.tokenizer is None:
        raise ConfigError("max_tokens needs the student tokenizer (--tokenizer)")
    exclude_ids, exclude_files = _split_exclude(config.exclude)
    earlier = [selection_file(p) for p in config.exclude_selections]
    earlier_ids = read_selected_ids(earlier)
    exclude_ids |= earlier_ids

    out = Path(out_dir)
    cfg_json = config.model_dump(mode="json")
    inputs = {"skills": sha256_file(src)}
    if profile_json is not None:
        inputs["profile"] = sha256_file(profile_json)
    if item_profile is not None:
        inputs["item_profile"] = sha256_file(item_profile)
    for f in exclude_files:
        inputs[f"exclude:{f}"] = sha256_file(f) if f.is_file() else "dir"
    for f in earlier:
        inputs[f"earlier_selection:{f}"] = sha256_file(f)
    if not force and manifest_matches(out, config=cfg_json, inputs=inputs) and (out / SELECTION).exists():
        report = read_json(out / REPORT)
        return SelectResult(out, report["selected"], config.budget, report, skipped=True)

    # -- the pool, streamed by record batch: only small per-item arrays stay in memory ----
    schema = pq.read_schema(src)
    needs_skills = weighted or config.only_skill is not None
    for col in ("id",) + (("skills",) if needs_skills else ()) + (("question",) if exclude_files else ()):
        if col not in schema.names:
            raise InputError(f"missing column {col!r}", file=src, field=col)
    banned = _question_set(exclude_files) if exclude_files else None
    prof_ids, prof_solved = _read_item_profile(Path(item_profile)) if item_profile is not None else (None, None)
    scan = _scan_pool(src, schema.names, exclude_ids=exclude_ids, banned_questions=banned,
                      profile_ids=prof_ids, profile_solved=prof_solved, progress=progress)
    n = scan.n_items
    pool: dict[str, Any] = {"items": n}
    eligible = np.ones(n, dtype=bool)
    if exclude_ids:
        pool["excluded_by_id"] = int(scan.excluded_by_id.sum())
        eligible &= ~scan.excluded_by_id
    if earlier:
        pool["earlier_selections"] = {"files": len(earlier), "items": len(earlier_ids)}
    if banned is not None:
        pool["excluded_by_question"] = int((scan.excluded_by_question & eligible).sum())
        eligible &= ~scan.excluded_by_question
    solved = scan.solved
    if solved is not None:
        pool["solved"] = int(np.sum(solved == 1))
        pool["unsolved"] = int(np.sum(solved == 0))
        pool["not_in_item_profile"] = int(np.sum(solved < 0))
    if config.correct_portion is not None:
        assert solved is not None
        pool["excluded_not_profiled"] = int(((solved < 0) & eligible).sum())
        eligible &= solved >= 0

    if config.strategy == "difficulty":
        rates = _pass_rates(src, schema.names, config.difficulty_field)
        known = ~np.isnan(rates)
        in_range = known & (rates >= lo) & (rates <= hi)
        pool["difficulty"] = {"field": config.difficulty_field, "range": [lo, hi], "with_rate": int(known.sum()),
                              "in_range": int((in_range & eligible).sum())}
        eligible &= in_range

    index_full = scan.index
    if index_full is not None and config.max_depth is not None:
        index_full = index_full.truncate(config.max_depth)
        pool["max_depth"] = config.max_depth
    if index_full is not None:
        has_skills = np.zeros(n, dtype=bool)
        has_skills[index_full.items] = True
        pool["with_skills"] = int(has_skills.sum())
        if needs_skills:
            eligible &= has_skills
    if config.only_skill is not None:
        assert index_full is not None
        index_full = _only_skill(index_full, config.only_skill, src)
        under = np.zeros(n, dtype=bool)
        under[index_full.items] = True
        pool["only_skill"] = {"skill": config.only_skill, "leaves": [CHAIN_SEP.join(k) for k in index_full.keys],
                              "items": int((under & eligible).sum())}
        eligible &= under
    pool["eligible"] = int(eligible.sum())

    profile = read_json(profile_json) if profile_json is not None else None
    index = None
    acc_info = None
    weights = None
    if index_full is not None:
        index = index_full
        if profile is not None:
            index = index.reorder(_profile_order(index.keys, profile))
        index = index.restrict(eligible)
        if profile is not None:
            acc_info = leaf_accuracies(index.keys, profile, config.accuracy, file=profile_json)
            weights = leaf_weights(acc_info.accuracy, config.temperature, config.w_max)
            if config.unprofiled_leaves == "exclude":
                no_verdict = acc_info.graded == 0
                weights = np.where(no_verdict, 0.0, weights)
                pool["leaves_without_verdict_excluded"] = int(np.sum(no_verdict & (index.sizes() > 0)))

    # -- the length check (lazy: only drawn items are formatted and tokenised) ------------
    accept = None
    length_check = None
    if config.max_tokens is not None:
        for col in ("question", "response"):
            if col not in schema.names:
                raise InputError(f"missing column {col!r}", file=src, field=col)
        tok = tokenizer if tokenizer is not None else load_tokenizer(config.tokenizer or "", config.gguf_file)
        # The texts must be at hand for any item a draw may hit: this is the one case that
        # keeps pool text in memory (as Arrow buffers, not Python strings).
        text = pq.read_table(src, columns=[c for c in ("question", "response", "skills") if c in schema.names])
        length_check = _LengthCheck(text, src, config.example, tok, config.max_tokens)
        accept = length_check

    # -- draw ---------------------------------------------------------------------------
    rng = np.random.default_rng(config.seed)
    balance = None
    if config.correct_portion is not None and config.correct_portion_scope == "leaf":
        assert index is not None and solved is not None
        index, balance = balance_leaves(index, solved, config.correct_portion, rng)
        pool["balanced_per_leaf"] = balance
    parts: list[tuple[str, np.ndarray, int]] = []
    if config.correct_portion is None or balance is not None or config.strategy == "forced":
        parts.append(("all", eligible, config.budget))
    else:
        assert solved is not None
        n_solved = int(math.floor(config.correct_portion * config.budget + 0.5))
        parts.append(("solved", eligible & (solved == 1), n_solved))
        parts.append(("unsolved", eligible & (solved == 0), config.budget - n_solved))

    from .progress import StageProgress

    draws: list[tuple[str, Draw, int]] = []
    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"selecting ({config.strategy})", total=config.budget)

        def advance(k: int) -> None:
            bar.advance(task, k)

        for name, mask, budget in parts:
            if budget == 0:
                draws.append((name, Draw(), 0))
                continue
            if config.strategy in ("random", "difficulty"):
                d = draw_random(mask, budget, rng, accept=accept, progress=advance)
            elif config.strategy == "forced":
                assert index is not None and weights is not None
                d = draw_forced(index, weights, budget, solved=solved, correct_portion=config.correct_portion,
                                accept=accept, progress=advance)
            else:
                assert index is not None and weights is not None
                sub = index.restrict(mask) if name != "all" else index
                fn = draw_skill if config.strategy == "skill" else draw_quota
                d = fn(sub, weights, budget, rng, accept=accept, progress=advance)
            draws.append((name, d, budget))

    sel_items = np.array([i for _, d, _ in draws for i in d.items], dtype=np.int64)
    sel_leaves = np.array([lf for _, d, _ in draws for lf in d.leaves], dtype=np.int64)
    messages = _shortfall_messages(draws, config, pool)
    for m in messages:
        log.warning(m)

    # -- artifacts ---------------------------------------------------------------------
    out.mkdir(parents=True, exist_ok=True)
    rows = _take_rows(src, sel_items)
    leaf_names = [CHAIN_SEP.join(k) for k in index.keys] if index is not None else []
    extra = {
        "selected_leaf": pa.array([leaf_names[lf] if lf >= 0 else None for lf in sel_leaves.tolist()], pa.string()),
        "draw_order": pa.array(np.arange(len(sel_items), dtype=np.int64)),
    }
    if solved is not None:
        s = solved[sel_items] if len(sel_items) else np.array([], dtype=np.int8)
        extra["student_solved"] = pa.array([None if v < 0 else bool(v) for v in s.tolist()], pa.bool_())
    if length_check is not None:
        extra["n_tokens"] = pa.array([length_check.lengths.get(int(i)) for i in sel_items], pa.int64())
    for name, arr in extra.items():
        if name in rows.column_names:
            rows = rows.drop_columns([name])
        rows = rows.append_column(name, arr)
    write_parquet(out / SELECTION, rows)

    report = _build_report(
        config, pool, draws, sel_items, sel_leaves, index, acc_info, weights, rows, scan.source_counts,
        messages, length_check,
    )
    write_json(out / REPORT, report)
    write_text(out / LEAF_TABLE, _leaf_csv(report["leaf_table"]))
    if plot:
        plot_distribution(report["leaf_table"], out / PLOT, title=f"{config.strategy}: {report['selected']} items")
    wall = time.perf_counter() - t0
    write_manifest(
        out, config=cfg_json, inputs=inputs, wall_time_s=round(wall, 3),
        counts={"selected": report["selected"], "budget": config.budget, "eligible": pool["eligible"]},
    )
    log.info("selected %d of %d (%s) in %.2fs", report["selected"], config.budget, report["stop_reason"], wall)
    return SelectResult(out, report["selected"], config.budget, report)


# ---------------------------------------------------------------------------------
def selection_file(path: str | Path) -> Path:
    """A selection given as its ``selection.parquet`` or the folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / SELECTION
    if not p.is_file():
        raise InputError("earlier selection not found", file=p)
    return p


def read_selected_ids(files: Sequence[Path]) -> set[str]:
    """The item ids of earlier selections (their ``id`` column)."""
    ids: set[str] = set()
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a Parquet selection ({e})", file=f) from None
        if "id" not in schema.names:
            raise InputError("missing column 'id'", file=f, field="id")
        ids.update(str(v) for v in pq.read_table(f, columns=["id"]).column("id").to_pylist() if v is not None)
    return ids


def _split_exclude(entries: Sequence[str]) -> tuple[set[str], list[Path]]:
    """Existing paths are files to read; ``.txt`` files hold ids; anything else is an id."""
    ids: set[str] = set()
    files: list[Path] = []
    for e in entries:
        p = Path(e)
        if p.exists():
            if p.is_file() and p.suffix.lower() == ".txt":
                try:
                    text = p.read_text(encoding="utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"not UTF-8 text (byte {e.start}: {e.reason})", file=p) from None
                ids.update(line.strip() for line in text.splitlines() if line.strip())
            else:
                files.append(p)
        elif p.suffix.lower() in {".jsonl", ".json", ".parquet", ".txt"}:
            raise InputError("exclusion file not found", file=p)
        else:
            ids.add(e)
    return ids, files


def _question_set(files: Sequence[Path]) -> set[str]:
    """Normalised questions of benchmark files (the same normalisation as ingest's decontamination)."""
    from .corpus import load_question_set

    return load_question_set(list(files))


def _pass_rates(src: Path, names: Sequence[str], fld: str) -> np.ndarray:
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


def _only_skill(index: LeafIndex, skill: str, src: Path) -> LeafIndex:
    """The leaves named ``skill`` (the last step, or the whole chain 'A->b')."""
    want = skill.strip()
    hits = [j for j, k in enumerate(index.keys) if CHAIN_SEP.join(k) == want or k[-1] == want]
    if not hits:
        from rapidfuzz import process

        names = sorted({k[-1] for k in index.keys})
        close = [c[0] for c in process.extract(want, names, limit=3)]
        raise ConfigError(f"only_skill {skill!r}: no leaf of {src} has that name (closest: {', '.join(close)})")
    return index.keep_leaves(hits)


def _read_item_profile(path: Path) -> tuple[pa.Array, np.ndarray]:
    """Ids and solved flags (1 solved, 0 not, -1 null) of the per-item profile."""
    if not path.exists():
        raise InputError("item profile not found", file=path)
    schema = pq.read_schema(path)
    for col in ("id", "solved"):
        if col not in schema.names:
            raise InputError(f"missing column {col!r}", file=path, field=col)
    if not pa.types.is_boolean(schema.field("solved").type):
        raise InputError(f"'solved' must be bool, got {schema.field('solved').type}", file=path, field="solved")
    prof = pq.read_table(path, columns=["id", "solved"])
    solved = prof.column("solved").combine_chunks()
    flags = np.where(pc.fill_null(solved, False).to_numpy(zero_copy_only=False), 1, 0).astype(np.int8)
    flags[solved.is_null().to_numpy(zero_copy_only=False)] = -1
    return prof.column("id").combine_chunks(), flags


@dataclass
class _PoolScan:
    n_items: int
    index: LeafIndex | None
    excluded_by_id: np.ndarray
    excluded_by_question: np.ndarray
    solved: np.ndarray | None
    source_counts: dict[str, int] | None


def _chain_keys(skills: pa.Array, file: Path) -> tuple[np.ndarray, pa.Array]:
    """(row of each chain, chain key) for a ``list<list<string>>`` array; empty/null chains dropped."""
    t = skills.type
    if not (_is_list(t) and _is_list(t.value_type)
            and (pa.types.is_string(t.value_type.value_type) or pa.types.is_large_string(t.value_type.value_type))):
        raise InputError(f"'skills' must be list<list<string>>, got {t}", file=file, field="skills")
    parent = pc.list_parent_indices(skills).to_numpy(zero_copy_only=False)
    keys = pc.binary_join(pc.list_flatten(skills), _KEY_SEP)
    valid = pc.and_(pc.is_valid(keys), pc.not_equal(pc.fill_null(keys, ""), ""))
    return parent[valid.to_numpy(zero_copy_only=False)], keys.filter(valid)


def _scan_pool(
    src: Path, names: Sequence[str], *, exclude_ids: set[str], banned_questions: set[str] | None,
    profile_ids: pa.Array | None, profile_solved: np.ndarray | None, progress: bool,
) -> _PoolScan:
    """One pass over the pool by record batch: leaf pairs, exclusion masks, solved flags, sources."""
    from .progress import StageProgress
    from .textutil import normalize_question

    cols = ["id"] + [c for c in ("skills", "source") if c in names]
    if banned_questions is not None:
        cols.append("question")
    pf = pq.ParquetFile(src)
    n = pf.metadata.num_rows
    by_id = np.zeros(n, dtype=bool)
    by_question = np.zeros(n, dtype=bool)
    solved = np.full(n, -1, dtype=np.int8) if profile_ids is not None else None
    sources: Counter[str] | None = Counter() if "source" in cols else None
    ex_ids = pa.array(sorted(exclude_ids), pa.string()) if exclude_ids else None
    key_to_leaf: dict[str, int] = {}
    pair_items: list[np.ndarray] = []
    pair_leaves: list[np.ndarray] = []
    offset = 0
    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("reading the pool", total=n)
        for batch in pf.iter_batches(batch_size=65536, columns=cols):
            m = batch.num_rows
            ids = batch.column("id")
            if ids.null_count:
                first = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
                raise InputError("null id", file=src, row=offset + first + 1, field="id")
            if ex_ids is not None:
                by_id[offset:offset + m] = pc.is_in(ids, value_set=ex_ids).to_numpy(zero_copy_only=False)
            if banned_questions is not None:
                qs = batch.column("question").to_pylist()
                by_question[offset:offset + m] = [q is not None and normalize_question(q) in banned_questions for q in qs]
            if solved is not None:
                assert profile_ids is not None and profile_solved is not None
                pos = pc.index_in(ids, value_set=profile_ids)
                found = pos.is_valid().to_numpy(zero_copy_only=False)
                where = pc.fill_null(pos, 0).to_numpy(zero_copy_only=False)
                solved[offset:offset + m] = np.where(found, profile_solved[where], -1)
            if sources is not None:
                for v in pc.value_counts(batch.column("source")).to_pylist():
                    sources[str(v["values"])] += int(v["counts"])
            if "skills" in cols:
                parent, keys = _chain_keys(batch.column("skills"), src)
                enc = pc.dictionary_encode(keys)
                local = np.array([key_to_leaf.setdefault(k, len(key_to_leaf)) for k in enc.dictionary.to_pylist()],
                                 dtype=np.int64)
                pair_items.append(parent.astype(np.int64) + offset)
                pair_leaves.append(local[enc.indices.to_numpy(zero_copy_only=False)] if len(local) else
                                   np.zeros(0, dtype=np.int64))
            offset += m
            bar.advance(task, m)
    index = None
    if "skills" in cols:
        keys_list = [tuple(k.split(_KEY_SEP)) for k in key_to_leaf]
        items = np.concatenate(pair_items) if pair_items else np.zeros(0, dtype=np.int64)
        leaves = np.concatenate(pair_leaves) if pair_leaves else np.zeros(0, dtype=np.int64)
        index = LeafIndex.from_pairs(items, leaves, keys_list, n)
    return _PoolScan(n, index, by_id, by_question, solved, dict(sources) if sources is not None else None)


def _profile_order(keys: Sequence[tuple[str, ...]], profile: dict) -> np.ndarray:
    """Leaves in the profile's node order (the tree's pre-order), unknown ones after, by name."""
    rank: dict[tuple[str, ...], int] = {}
    for i, node in enumerate(profile.get("nodes") or []):
        if isinstance(node, dict) and isinstance(node.get("path"), list):
            rank.setdefault(tuple(node["path"]), i)
    big = len(rank)
    return np.array(sorted(range(len(keys)), key=lambda j: (rank.get(tuple(keys[j]), big), keys[j])), dtype=np.int64)


class _LengthCheck:
    """Formats and tokenises one drawn item; accepts it if it fits ``max_tokens``."""

    def __init__(self, table: pa.Table, file: Path, fmt: ExampleFormat, tokenizer: Any, max_tokens: int) -> None:
        self.q = table.column("question")
        self.r = table.column("response")
        self.s = table.column("skills") if "skills" in table.column_names else None
        self.file = file
        self.fmt = fmt
        self.tok = tokenizer
        self.max_tokens = max_tokens
        self.lengths: dict[int, int] = {}

    def __call__(self, i: int) -> bool:
        q, r = self.q[i].as_py(), self.r[i].as_py()
        if not isinstance(r, str) or not r.strip():
            raise InputError("empty or missing value", file=self.file, row=i + 1, field="response")
        if not isinstance(q, str) or not q.strip():
            raise InputError("empty or missing value", file=self.file, row=i + 1, field="question")
        chains = self.s[i].as_py() if self.s is not None else None
        n = count_tokens(self.tok, [build_messages(q, r, chains, self.fmt)])[0]
        self.lengths[i] = n
        return n <= self.max_tokens


def _take_rows(path: Path, indices: np.ndarray) -> pa.Table:
    """Full rows at ``indices`` (in that order), reading one row group at a time."""
    pf = pq.ParquetFile(path)
    if len(indices) == 0:
        return pf.schema_arrow.empty_table()
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    order = np.argsort(indices, kind="stable")
    sorted_idx = indices[order]
    groups = np.searchsorted(starts, sorted_idx, side="right") - 1
    pieces = []
    for g in np.unique(groups).tolist():
        local = sorted_idx[groups == g] - starts[g]
        pieces.append(pf.read_row_group(g).take(pa.array(local)))
    got = pa.concat_tables(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return got.take(pa.array(inverse))


def _shortfall_messages(draws: list[tuple[str, Draw, int]], config: SelectConfig, pool: dict) -> list[str]:
    out = []
    for name, d, budget in draws:
        if len(d.items) < budget:
            what = "the pool" if name == "all" else f"the {name} part of the pool (correct_portion {config.correct_portion})"
            why = d.reason
            if d.rejected:
                why += f"; {d.rejected} item(s) refused as longer than {config.max_tokens} tokens"
            out.append(f"selected {len(d.items)} of {budget} from {what}: {why} ({pool['eligible']} eligible items in all)")
    return out


def _difficulty(meta: str | None) -> str | None:
    if not meta:
        return None
    try:
        m = json.loads(meta)
    except (TypeError, json.JSONDecodeError):
        return None
    if not isinstance(m, dict):
        return None
    for k in ("level", "difficulty"):
        if m.get(k) is not None:
            return str(m[k])
    return None


def _build_report(
    config: SelectConfig, pool: dict, draws: list[tuple[str, Draw, int]], sel_items: np.ndarray,
    sel_leaves: np.ndarray, index: LeafIndex | None, acc_info: LeafAccuracy | None,
    weights: np.ndarray | None, rows: pa.Table, pool_sources: dict[str, int] | None,
    messages: list[str], length_check: _LengthCheck | None,
) -> dict[str, Any]:
    n_sel = len(sel_items)
    report: dict[str, Any] = {
        "strategy": config.strategy,
        "budget": config.budget,
        "selected": n_sel,
        "shortfall": config.budget - n_sel,
        "stop_reason": "budget met" if n_sel >= config.budget else "; ".join(messages),
        "messages": messages,
        "seed": config.seed,
        "pool": pool,
        "parts": [
            {"part": name, "budget": b, "selected": len(d.items), "rejected_too_long": d.rejected,
             "exhausted_leaves": d.exhausted_leaves, "reason": d.reason if len(d.items) < b else "budget met"}
            for name, d, b in draws
        ],
    }
    if length_check is not None:
        report["length"] = {
            "max_tokens": config.max_tokens, "checked": len(length_check.lengths),
            "rejected": sum(d.rejected for _, d, _ in draws),
        }
    if config.correct_portion is not None:
        solved_col = rows.column("student_solved").to_pylist() if "student_solved" in rows.column_names else []
        solved_sel = sum(1 for v in solved_col if v)
        report["correct_portion"] = {
            "requested": config.correct_portion, "scope": config.correct_portion_scope, "selected_solved": solved_sel,
            "realised": round(solved_sel / n_sel, 6) if n_sel else None,
        }

    leaf_table: list[dict[str, Any]] = []
    if index is not None and index.n_leaves:
        sizes = index.sizes()
        nonempty = sizes > 0
        under = index.membership(sel_items)
        if config.strategy == "forced" and weights is not None:
            target = np.where(nonempty, weights, 0.0)
            realised = under.copy()
            report["distributions"] = ("target = leaf weights normalised over leaves with eligible items, realised = "
                                       "selected items under each leaf (the forced projection's own measure)")
        elif weights is None:
            target = index.membership(fractional=True)
            realised = index.membership(sel_items, fractional=True)
            report["distributions"] = "target = pool share, realised = selected share (an item with k leaves counts 1/k for each)"
        else:
            target = np.where(nonempty, weights, 0.0)
            realised = np.bincount(sel_leaves[sel_leaves >= 0], minlength=index.n_leaves).astype(np.float64)
            report["distributions"] = "target = leaf weights normalised over leaves with eligible items, realised = items per drawn leaf"
        t_sum = target.sum()
        target_p = target / t_sum if t_sum > 0 else target
        r_sum = realised.sum()
        realised_p = realised / r_sum if r_sum > 0 else realised
        kl = kl_divergence(target_p, realised_p) if r_sum > 0 and t_sum > 0 else math.inf
        alpha = 0.5
        m = int(np.sum(target_p > 0))
        smoothed = (realised + alpha) / (r_sum + alpha * index.n_leaves)
        report["kl_target_realised"] = None if math.isinf(kl) else round(kl, 6)
        report["kl_target_realised_smoothed"] = round(kl_divergence(target_p, smoothed), 6) if t_sum > 0 else None
        report["kl_note"] = (
            "KL(target || realised) in nats; null = infinite (a leaf with target > 0 got no item, "
            f"unavoidable when the budget is below the {m} leaves with target > 0); the smoothed value adds 0.5 to each realised count"
        )
        touched = int(np.sum(under > 0))
        report["coverage"] = {
            "leaves_with_eligible_items": int(nonempty.sum()),
            "leaves_drawn": int(np.sum(realised > 0)),
            "leaves_touched": touched,
            "fraction_touched": round(touched / max(int(nonempty.sum()), 1), 6),
            "note": "touched: at least one selected item sits under the leaf",
        }
        if acc_info is not None:
            report["leaves"] = {
                "in_profile": acc_info.in_profile,
                "profile_leaves_without_items": acc_info.profile_leaves_without_items,
                "accuracy_field": config.accuracy,
                "accuracy_source": dict(Counter(s for s, ne in zip(acc_info.source, nonempty, strict=True) if ne)),
                "global_accuracy": acc_info.global_accuracy,
            }
        for j in range(index.n_leaves):
            if not nonempty[j] and realised[j] == 0:
                continue
            leaf_table.append({
                "leaf": CHAIN_SEP.join(index.keys[j]),
                "depth": len(index.keys[j]),
                "pool_items": int(sizes[j]),
                "accuracy": round(float(acc_info.accuracy[j]), 6) if acc_info is not None else None,
                "accuracy_source": acc_info.source[j] if acc_info is not None else None,
                "graded": int(acc_info.graded[j]) if acc_info is not None else None,
                "weight": round(float(weights[j]), 6) if weights is not None else None,
                "target_p": round(float(target_p[j]), 8),
                "target_count": round(float(target_p[j]) * n_sel, 3),
                "realised_count": round(float(realised[j]), 3),
                "realised_p": round(float(realised_p[j]), 8),
                "selected_under_leaf": int(under[j]),
            })
    report["leaf_table"] = leaf_table

    if pool_sources is not None:
        report["by_source"] = {
            "pool": dict(sorted(pool_sources.items(), key=lambda kv: (-kv[1], kv[0]))),
            "selected": _value_counts(rows.column("source")) if n_sel else {},
        }
    if "meta" in rows.column_names and n_sel:
        levels = Counter(d for d in (_difficulty(m) for m in rows.column("meta").to_pylist()) if d is not None)
        if levels:
            report["by_difficulty"] = {"selected": dict(sorted(levels.items()))}
    return report


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    pairs = [(str(v["values"]), int(v["counts"])) for v in vc.to_pylist()]
    return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def _leaf_csv(leaf_table: list[dict[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    fields = ["leaf", "depth", "pool_items", "accuracy", "accuracy_source", "graded", "weight",
              "target_p", "target_count", "realised_count", "realised_p", "selected_under_leaf"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in leaf_table:
        w.writerow(row)
    return buf.getvalue()


def plot_distribution(leaf_table: list[dict[str, Any]], path: str | Path, *, title: str = "", top: int = 30) -> Path:
    """Target vs realised share: the ``top`` leaves by target as bars, and every leaf sorted by target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts import atomic_path

    rows = sorted(leaf_table, key=lambda r: -r["target_p"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, max(4.0, 0.26 * min(top, len(rows)) + 1.5)),
                                   gridspec_kw={"width_ratios": [1.2, 1]})
    head = rows[:top][::-1]
    ypos = np.arange(len(head))
    ax1.barh(ypos - 0.2, [r["target_p"] for r in head], height=0.4, label="target", color="#4c72b0")
    ax1.barh(ypos + 0.2, [r["realised_p"] for r in head], height=0.4, label="realised", color="#dd8452")
    ax1.set_yticks(ypos, [_short(r["leaf"]) for r in head], fontsize=7)
    ax1.set_xlabel("share of the selection")
    ax1.set_title(f"top {len(head)} leaves by target")
    ax1.legend(loc="lower right")
    x = np.arange(len(rows))
    ax2.plot(x, [r["target_p"] for r in rows], color="#4c72b0", label="target")
    ax2.scatter(x, [r["realised_p"] for r in rows], s=6, color="#dd8452", label="realised")
    ax2.set_xlabel(f"leaves sorted by target ({len(rows)})")
    ax2.set_ylabel("share")
    ax2.set_title("all leaves")
    ax2.legend()
    fig.suptitle(title)
    # Fixed margins instead of tight_layout: the layout pass costs more than the drawing.
    fig.subplots_adjust(left=0.24, right=0.98, bottom=0.08, top=0.9, wspace=0.22)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else "..." + text[-(n - 3):]


__all__ = [
    "Draw",
    "LeafAccuracy",
    "LeafIndex",
    "SelectConfig",
    "SelectResult",
    "draw_quota",
    "draw_random",
    "draw_skill",
    "kl_divergence",
    "largest_remainder",
    "leaf_accuracies",
    "leaf_weights",
    "plot_distribution",
    "read_selected_ids",
    "run_select",
    "selection_file",
]
