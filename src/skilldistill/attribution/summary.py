"""``summary.json`` of `skilldistill annotate`: the outcome counted over every decision the
output rests on (cached or new), and what this run asked."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from ..tree import SkillTree
from .anchor import ANCHOR_SOURCE
from .cache import FAILED, NONE, UNPARSEABLE, Decisions, unreadable_reason
from .chains import decisions_used
from .config import AnnotateConfig
from .deciders import Decider
from .decision_keys import DecisionKeys
from .walk import RunCounters

SUMMARY_FILE = "summary.json"


def build_summary(
    ids: list[str],
    skills: list[list[list[str]]],
    cache: Decisions,
    text_hashes: list[str],
    tree: SkillTree,
    cfg: AnnotateConfig,
    decider: Decider,
    item_keys: Sequence[DecisionKeys],
    counters: RunCounters,
    wall: float,
) -> dict[str, Any]:
    # Outcome over every decision the output rests on (cached or new).
    used = decisions_used(tree, cfg.max_depth, text_hashes, item_keys, cache)
    # an anchored walk's labelled decisions were made by no decider: counted in its own section
    used = {k: r for k, r in used.items() if r.get("source") != ANCHOR_SOURCE}
    statuses = collections.Counter(r.get("status") for r in used.values())
    unmatched = collections.Counter(name for r in used.values() for name in r.get("unmatched", []))
    n = len(ids)
    chains = sum(len(s) for s in skills)
    return {
        "items": n,
        "items_with_skills": sum(1 for s in skills if s),
        "chains": chains,
        "chains_per_item": round(chains / n, 3) if n else 0.0,
        "backend": cfg.backend,
        "model": decider.model_id,
        "template": decider.version,
        "decisions": len(used),
        "decisions_this_run": sum(1 for k in used if k in counters.new_keys),
        "decisions_cached": sum(1 for k in used if k not in counters.new_keys),
        "calls_total": sum(r.get("calls", 0) for r in used.values()),
        "calls_this_run": counters.calls,
        "calls_per_item": round(sum(r.get("calls", 0) for r in used.values()) / n, 3) if n else 0.0,
        "prompt_tokens_this_run": counters.prompt_tokens,
        "completion_tokens_this_run": counters.completion_tokens,
        "repaired": sum(1 for r in used.values() if r.get("repair_answer") is not None),
        "failures": {"unparseable": statuses.get(UNPARSEABLE, 0), "failed": statuses.get(FAILED, 0)},
        "failed_reasons": [[r, c] for r, c in collections.Counter(
            (r.get("error") or "")[:120] for r in used.values() if r.get("status") == FAILED).most_common(5)],
        "unreadable_reasons": [[r, c] for r, c in collections.Counter(
            unreadable_reason(r) for r in used.values() if r.get("status") == UNPARSEABLE).most_common(5)],
        "no_valid_choice": statuses.get(NONE, 0),
        "unmatched_names": sum(unmatched.values()),
        "top_unmatched": [[name, count] for name, count in unmatched.most_common(20)],
        "per_level": counters.per_level,
        "wall_time_s": round(wall, 3),
        "items_per_s": round(n / wall, 2) if wall > 0 else None,
    }
