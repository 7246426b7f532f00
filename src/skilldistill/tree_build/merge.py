"""Chains merged into one tree, top-down, one node at a time (parents before children).

At a node, the chains passing through it are grouped by their next name, names equal ignoring
case and spacing being one group (named as most chains spell it). Then, in this order:

1. **Near-duplicate siblings merge.** Groups are taken by item count (most first, then by
   name); each joins the first group before it whose name's MiniLM embedding has cosine
   similarity >= ``merge_threshold`` with its own, else starts a group. A merged group is named
   by its largest member; its chains go on below it together. Every merge is recorded
   (``merges``: the names, their similarity, the items).
2. **The cap.** At most ``max_children`` groups stay children (the most items; ties by name).
   With ``overflow: similar`` each other group folds into its most similar kept sibling
   (cosine of the names; its chains then continue below that sibling); with ``overflow: other``
   they fold into one ``Other`` child (an existing sibling named so, else a new one, which
   then is one of the ``max_children``). Every fold is recorded (``folded``).
3. **The minimum size.** A child with fewer than ``min_count`` items is dropped with its
   subtree: its items' chains stop at the node (``dropped``; a top-level one leaves the
   items at the root when no other chain of theirs goes on).

A node's count is the number of items with a chain through it (an item with several chains
through one node counts once), so a child never counts more than its parent. The result is
deterministic: the same chains and embedder give the same tree.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..attribution.labels import norm_name
from ..tree import Chain, chain_str

OTHER = "Other"

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit-norm vectors, one row each


@dataclass(frozen=True)
class MergeRules:
    threshold: float
    max_children: int
    overflow: Literal["similar", "other"]
    min_count: int


@dataclass
class Route:
    """One chain of one item, below the node it has reached."""

    item: int
    rest: Chain


@dataclass
class Group:
    """Sibling names that are one child: its name's folded form, members, chains."""

    key: str
    routes: list[Route] = field(default_factory=list)
    spelled: collections.Counter[str] = field(default_factory=collections.Counter)
    members: list[str] = field(default_factory=list)  # folded names merged into it

    @property
    def name(self) -> str:
        return self.spelled.most_common(1)[0][0]

    @property
    def items(self) -> set[int]:
        return {r.item for r in self.routes}

    def absorb(self, other: Group) -> None:
        self.routes.extend(other.routes)
        self.members.extend([other.key, *other.members])


@dataclass
class MergedTree:
    """The kept nodes (paths of names below the root), their counts, and what was merged."""

    root: str
    kept: set[Chain] = field(default_factory=set)
    items: dict[Chain, int] = field(default_factory=dict)
    ends: dict[Chain, int] = field(default_factory=dict)  # items with a chain stopping at the node
    item_ends: list[set[Chain]] = field(default_factory=list)  # per item: the nodes its chains stop at
    merges: list[dict[str, Any]] = field(default_factory=list)
    folded: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


class NameVectors:
    """Each folded name embedded once; all of a merge's names in one batch."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self.vectors: dict[str, np.ndarray] = {}

    def add(self, keys: Sequence[str]) -> None:
        new = sorted({k for k in keys if k not in self.vectors})
        if new:
            self.vectors.update(zip(new, np.asarray(self.embed(new), dtype=np.float32), strict=True))

    def sim(self, a: str, b: str) -> float:
        return float(self.vectors[a] @ self.vectors[b])


def merge_chains(chains: Sequence[Sequence[Chain]], root: str, embed: Embed, rules: MergeRules) -> MergedTree:
    """The tree of ``chains`` (per item, its chains below the root; see the module docstring)."""
    vectors = NameVectors(embed)
    vectors.add([norm_name(p) for item in chains for c in item for p in c])
    out = MergedTree(root, item_ends=[set() for _ in chains])
    queue = collections.deque([((), [Route(i, c) for i, item in enumerate(chains) for c in item])])
    while queue:
        path, routes = queue.popleft()
        children = _children(path, routes, vectors, rules, out)
        for group in children:
            child = path + (group.name,)
            members = group.items
            out.kept.add(child)
            out.items[child] = len(members)
            queue.append((child, [Route(r.item, r.rest[1:]) for r in group.routes]))
    return out


def _children(path: Chain, routes: list[Route], vectors: NameVectors, rules: MergeRules, out: MergedTree) -> list[Group]:
    """The kept children of the node at ``path``; the chains that stop there recorded."""
    where = chain_str(path) or out.root
    stopped = [r for r in routes if not r.rest]
    groups = _near_duplicates(_groups(r for r in routes if r.rest), vectors, rules.threshold, where, out)
    kept = _cap(groups, vectors, rules, where, out)
    small = [g for g in kept if len(g.items) < rules.min_count]
    for g in small:
        out.dropped.append({"parent": where, "node": g.name, "items": len(g.items)})
        stopped.extend(g.routes)
    for r in stopped:
        out.item_ends[r.item].add(path)
    if path:
        out.ends[path] = len({r.item for r in stopped})
    return [g for g in kept if len(g.items) >= rules.min_count]


def _by_size(groups: Sequence[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (-len(g.items), g.key))


def _groups(routes: Any) -> list[Group]:
    """Chains grouped by their next name, folded (case, spacing)."""
    groups: dict[str, Group] = {}
    for r in routes:
        key = norm_name(r.rest[0])
        g = groups.setdefault(key, Group(key))
        g.routes.append(r)
        g.spelled[r.rest[0]] += 1
    return _by_size(list(groups.values()))


def _near_duplicates(groups: list[Group], vectors: NameVectors, threshold: float, where: str,
                     out: MergedTree) -> list[Group]:
    """Step 1: each group joins the first larger one at ``threshold`` similarity or more."""
    heads: list[Group] = []
    for g in groups:
        sims = [vectors.sim(h.key, g.key) for h in heads]
        best = next((j for j, s in enumerate(sims) if s >= threshold), None)
        if best is None:
            heads.append(g)
            continue
        head = heads[best]
        out.merges.append({"parent": where, "into": head.name, "name": g.name, "similarity": round(sims[best], 4),
                           "items": len(g.items)})
        head.absorb(g)
    return _by_size(heads)


def _cap(groups: list[Group], vectors: NameVectors, rules: MergeRules, where: str, out: MergedTree) -> list[Group]:
    """Step 2: at most ``max_children`` groups; the rest folded (see the module docstring)."""
    if len(groups) <= rules.max_children:
        return groups
    if rules.overflow == "other":
        other = next((g for g in groups if g.key == norm_name(OTHER)), None)
        rest = [g for g in groups if g is not other]
        kept, extra = rest[: rules.max_children - 1], rest[rules.max_children - 1:]
        if other is None:
            other = Group(norm_name(OTHER))
            other.spelled[OTHER] += 1
        for g in extra:
            out.folded.append({"parent": where, "node": g.name, "into": OTHER, "items": len(g.items)})
            other.absorb(g)
        return _by_size([*kept, other])
    kept, extra = groups[: rules.max_children], groups[rules.max_children:]
    for g in extra:
        sims = [vectors.sim(k.key, g.key) for k in kept]
        j = int(np.argmax(sims))
        out.folded.append({"parent": where, "node": g.name, "into": kept[j].name, "similarity": round(sims[j], 4),
                           "items": len(g.items)})
        kept[j].absorb(g)
    return _by_size(kept)
