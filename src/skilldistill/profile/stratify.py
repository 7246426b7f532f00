"""A stratified sample of the pool by leaf skill (``ProfileConfig.sample``)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..tree import chain_str

NO_SKILL = "(no skill)"  # the stratum of items without skills


def stratified_sample(items: Sequence[dict[str, Any]], n: int, *, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pick ``n`` items so every leaf keeps roughly its share of the pool.

    Each leaf (and a "(no skill)" stratum) gets a quota proportional to its size (largest
    remainders; at least one per leaf while ``n`` allows), filled with a seeded shuffle;
    items under several leaves are taken once, and any shortfall is filled at random.
    Returns the sample (in pool order) and the number of sampled items per leaf.
    """
    if n >= len(items):
        chosen = list(items)
    else:
        rng = random.Random(seed)
        strata: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            leaves = {chain_str(c) for c in it["skills"]} or {NO_SKILL}
            for leaf in leaves:
                strata[leaf].append(i)
        names = sorted(strata)
        total = sum(len(strata[s]) for s in names)
        raw = {s: n * len(strata[s]) / total for s in names}
        quota = {s: int(raw[s]) for s in names}
        if n >= len(names):
            for s in names:
                quota[s] = max(quota[s], 1)
        left = n - sum(quota.values())
        while left < 0:  # the ones raised to 1 pushed the total past n: take back from the biggest
            s = max(names, key=lambda s: (quota[s], len(strata[s]), s))
            quota[s] -= 1
            left += 1
        for s in sorted(names, key=lambda s: (-(raw[s] - int(raw[s])), s)):
            if left <= 0:
                break
            quota[s] += 1
            left -= 1
        picked: set[int] = set()
        for s in names:
            pool = strata[s][:]
            rng.shuffle(pool)
            need = quota[s] - sum(1 for i in strata[s] if i in picked)
            for i in pool:
                if need <= 0 or len(picked) >= n:
                    break
                if i not in picked:
                    picked.add(i)
                    need -= 1
        rest = [i for i in range(len(items)) if i not in picked]
        rng.shuffle(rest)
        for i in rest[: max(0, n - len(picked))]:
            picked.add(i)
        chosen = [items[i] for i in sorted(picked)]
    per_leaf: dict[str, int] = defaultdict(int)
    for it in chosen:
        for leaf in {chain_str(c) for c in it["skills"]} or {NO_SKILL}:
            per_leaf[leaf] += 1
    return chosen, dict(sorted(per_leaf.items()))
