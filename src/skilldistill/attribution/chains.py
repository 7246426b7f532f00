"""What the recorded decisions say about an item: its chains, whether they are complete,
and which decisions they rest on. Each follows the item's path down the tree from the root
through the children its decisions chose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..tree import Chain, SkillTree
from .cache import FAILED, OK, UNPARSEABLE, Decisions
from .decision_keys import DecisionKeys

# A record flag: the decider had nothing to decide below this inner node with (the distilled
# backend learning from a labels file whose chains end there, no LLM to ask): its chain ends here.
ENDS_CHAIN = "ends_chain"

DecisionAt = Callable[[Chain], dict[str, Any] | None]  # node path -> the item's decision there, if any


def chains_for(tree: SkillTree, max_depth: int | None, decision: DecisionAt) -> list[list[str]]:
    """Depth-first over the recorded decisions, children in the order chosen."""
    chains: list[list[str]] = []
    stack: list[Chain] = [()]
    while stack:
        path = stack.pop()
        node = tree.node(path)
        if path and (node.is_leaf or (max_depth is not None and len(path) >= max_depth)):
            chains.append(list(path))
            continue
        if node.is_leaf:
            continue
        rec = decision(path)
        if rec is None:
            continue
        if rec.get(ENDS_CHAIN) and path:  # nothing decides below this node: the chain ends at it
            chains.append(list(path))
        chosen = [c for c in rec.get("chosen", []) if (path + (c,)) in tree]
        stack.extend(path + (c,) for c in reversed(chosen))
    return [list(c) for c in dict.fromkeys(tuple(c) for c in chains)]


def item_status(tree: SkillTree, max_depth: int | None, decision: DecisionAt) -> str:
    """``failed`` when a decision the item's walk reached was refused by the server,
    ``unparseable`` when one stayed unreadable (and none was refused), else ``ok``."""
    worst = OK
    stack: list[Chain] = [()]
    while stack:
        path = stack.pop()
        node = tree.node(path)
        if node.is_leaf or (path and max_depth is not None and len(path) >= max_depth):
            continue
        rec = decision(path)
        if rec is None:
            continue
        if rec.get("status") == FAILED:
            return FAILED
        if rec.get("status") == UNPARSEABLE:
            worst = UNPARSEABLE
        stack.extend(path + (c,) for c in rec.get("chosen", []) if (path + (c,)) in tree)
    return worst


def decisions_used(tree: SkillTree, max_depth: int | None, text_hashes: Sequence[str], item_keys: Sequence[DecisionKeys],
                   cache: Decisions) -> Decisions:
    """key -> record of every decision the items' chains rest on (``item_keys[i]``: the keys
    item i's decisions are filed under)."""
    used: Decisions = {}
    for h, keys in zip(text_hashes, item_keys, strict=True):
        stack: list[Chain] = [()]
        while stack:
            path = stack.pop()
            node = tree.node(path)
            if node.is_leaf or (max_depth is not None and len(path) >= max_depth):
                continue
            key = keys(path, h)
            rec = cache.get(key)
            if rec is None:
                continue
            used[key] = rec
            stack.extend(path + (c,) for c in rec.get("chosen", []) if (path + (c,)) in tree)
    return used
