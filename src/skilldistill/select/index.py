"""The leaf -> item index of a pool: CSR arrays, one segment of item positions per leaf.

Drawing swaps the chosen item to the end of its leaf's live segment (a partial Fisher-Yates
per leaf, see ``strategies.draw``), so a draw is O(1), memory is one copy of the index, and
nothing is copied per draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError

_KEY_SEP = "\x1f"  # joins chain names into one key; cannot occur in a node name


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
        names = [_chain_of_key(k) for k in enc.dictionary.to_pylist()]
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


class LeafIndexBuilder:
    """Collects (item, leaf) pairs batch by batch while the pool is streamed; ``build`` makes the index."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.key_to_leaf: dict[str, int] = {}
        self.pair_items: list[np.ndarray] = []
        self.pair_leaves: list[np.ndarray] = []

    def add(self, skills: pa.Array | pa.ChunkedArray, offset: int) -> None:
        """The chains of one batch whose first row is pool item ``offset``."""
        parent, keys = _chain_keys(skills, self.file)
        enc = pc.dictionary_encode(keys)
        local = np.array([self.key_to_leaf.setdefault(k, len(self.key_to_leaf)) for k in enc.dictionary.to_pylist()],
                         dtype=np.int64)
        self.pair_items.append(parent.astype(np.int64) + offset)
        self.pair_leaves.append(local[enc.indices.to_numpy(zero_copy_only=False)] if len(local) else
                                np.zeros(0, dtype=np.int64))

    def build(self, n_items: int) -> LeafIndex:
        keys_list = [_chain_of_key(k) for k in self.key_to_leaf]
        items = np.concatenate(self.pair_items) if self.pair_items else np.zeros(0, dtype=np.int64)
        leaves = np.concatenate(self.pair_leaves) if self.pair_leaves else np.zeros(0, dtype=np.int64)
        return LeafIndex.from_pairs(items, leaves, keys_list, n_items)


def _chain_of_key(key: str) -> tuple[str, ...]:
    return tuple(key.split(_KEY_SEP))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


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
