"""What `skilldistill tree build` writes beside the tree: ``tree_counts.json`` (per node its
items; the merges, folds and drops), ``items.jsonl`` (per item its chains as read and the
nodes they stop at) and ``summary.json`` (the run in numbers)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from ..tree import SkillTree, chain_str
from .chains import DROP_REASONS, ReadChains
from .config import TreeBuildConfig
from .merge import MergedTree
from .prompt import PROMPT_VERSION
from .proposals import ANSWERED, Ask, AskCounters, Records

SUMMARY_FILE, ITEMS_FILE = "summary.json", "items.jsonl"


def build_counts(tree: SkillTree, merged: MergedTree, cfg: TreeBuildConfig) -> dict[str, Any]:
    nodes = [{"node": chain_str(p), "depth": len(p), "items": merged.items[p], "ends_here": merged.ends.get(p, 0),
              "leaf": node.is_leaf} for p, node in tree.nodes() if p]
    return {
        "root": cfg.root,
        "settings": {k: getattr(cfg, k) for k in ("merge_threshold", "max_children", "overflow", "min_count",
                                                  "max_depth")},
        "items": len(merged.item_ends),
        "items_with_chains": sum(1 for e in merged.item_ends if e),
        "at_root": at_root(merged),
        "tree": {"nodes": len(tree), "leaves": len(tree.leaves()), "depth": tree.depth},
        "nodes": nodes,
        "merges": merged.merges,
        "folded": merged.folded,
        "dropped": merged.dropped,
    }


def at_root(merged: MergedTree) -> int:
    """Items with chains, none of which got below the root."""
    return sum(1 for e in merged.item_ends if e == {()})


def item_rows(ids: Sequence[str], read: Sequence[ReadChains], merged: MergedTree) -> list[dict[str, Any]]:
    return [{"id": i, "chains": [chain_str(c) for c in r.chains], "nodes": sorted(chain_str(p) for p in ends if p)}
            for i, r, ends in zip(ids, read, merged.item_ends, strict=True)]


def build_summary(ids: Sequence[str], asks: Sequence[Ask], records: Records, read: Sequence[ReadChains],
                  merged: MergedTree, tree: SkillTree, counters: AskCounters, cfg: TreeBuildConfig,
                  wall: float) -> dict[str, Any]:
    n = len(ids)
    refused = sum(1 for a in asks if records[a.key].get("status") != ANSWERED)
    dropped: collections.Counter[str] = collections.Counter()
    for r in read:
        dropped.update(r.dropped)
    chains = sum(len(r.chains) for r in read)
    stats = tree.stats()
    return {
        "items": n,
        "sample": {"items": cfg.items, "seed": cfg.seed},
        "items_with_chains": sum(1 for r in read if r.chains),
        "items_failed": {"refused": refused, "no_chain": sum(1 for r in read if not r.chains) - refused},
        "items_at_root": at_root(merged),
        "chains": chains,
        "chains_per_item": round(chains / n, 3) if n else 0.0,
        "lines_dropped": {k: dropped.get(k, 0) for k in DROP_REASONS},
        "chains_cut_to_max_depth": sum(r.cut_to_depth for r in read),
        "model": cfg.llm.model,
        "prompt": PROMPT_VERSION,
        "calls_this_run": counters.calls,
        "answers_cached": n - len(counters.asked_ids),
        "refused_this_run": counters.refused,
        "prompt_tokens_this_run": counters.prompt_tokens,
        "completion_tokens_this_run": counters.completion_tokens,
        "tree": stats.as_dict(),
        "top_level": [{"node": c.name, "items": merged.items[(c.name,)]} for c in tree.root.children],
        "merges": len(merged.merges),
        "folded": len(merged.folded),
        "dropped_nodes": len(merged.dropped),
        "wall_time_s": round(wall, 3),
    }
