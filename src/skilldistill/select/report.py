"""The selection report: target vs realised leaf distribution, KL, coverage, the leaf table,
and the breakdowns by source and difficulty (``report.json`` and ``leaf_distribution.csv``)."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..tree import CHAIN_SEP
from .config import SelectConfig
from .state import DrawnPart, SelectRun
from .weights import LeafAccuracy

_KL_SMOOTHING = 0.5  # added to each realised count for the smoothed KL

LEAF_COLUMNS = ["leaf", "depth", "pool_items", "accuracy", "accuracy_source", "graded", "weight",
                "target_p", "target_count", "realised_count", "realised_p", "selected_under_leaf"]


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


def shortfall_messages(drawn: list[DrawnPart], config: SelectConfig, pool: dict) -> list[str]:
    """One message per part of the budget that fell short: how many, from what, and why."""
    out = []
    for part in drawn:
        name, d, budget = part.name, part.draw, part.budget
        if len(d.items) < budget:
            what = "the pool" if name == "all" else f"the {name} part of the pool (correct_portion {config.correct_portion})"
            why = d.reason
            if d.rejected:
                why += f"; {d.rejected} item(s) refused as longer than {config.max_tokens} tokens"
            out.append(f"selected {len(d.items)} of {budget} from {what}: {why} ({pool['eligible']} eligible items in all)")
    return out


def build_report(run: SelectRun, strategy_detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """``report.json`` of a finished draw (its keys in a fixed order); ``strategy_detail``: what a
    baseline strategy (all, length, diversity, loss) did, under that key."""
    report = _summary(run)
    if strategy_detail is not None:
        report["strategy_detail"] = strategy_detail
    if run.length_check is not None:
        report["length"] = {
            "max_tokens": run.config.max_tokens, "checked": len(run.length_check.lengths),
            "rejected": sum(part.draw.rejected for part in run.drawn),
        }
    if run.config.correct_portion is not None:
        report["correct_portion"] = _correct_portion(run)
    leaf_table: list[dict[str, Any]] = []
    if run.index is not None and run.index.n_leaves:
        leaf_table = _add_distributions(report, run)
    report["leaf_table"] = leaf_table
    _add_breakdowns(report, run)
    return report


def _summary(run: SelectRun) -> dict[str, Any]:
    config = run.config
    n_sel = len(run.items)
    if config.strategy == "all":  # the whole eligible pool: the budget plays no part
        aimed = sum(part.budget for part in run.drawn)
        head: dict[str, Any] = {"budget_ignored": True, "shortfall": aimed - n_sel,
                                "stop_reason": "; ".join(run.messages) or "every eligible item (budget ignored)"}
    else:
        head = {"shortfall": config.budget - n_sel,
                "stop_reason": "budget met" if n_sel >= config.budget else "; ".join(run.messages)}
    return {
        "strategy": config.strategy,
        "budget": config.budget,
        "selected": n_sel,
        **head,
        "messages": run.messages,
        "seed": config.seed,
        "pool": run.pool.summary,
        "parts": [
            {"part": part.name, "budget": part.budget, "selected": len(part.draw.items),
             "rejected_too_long": part.draw.rejected, "exhausted_leaves": part.draw.exhausted_leaves,
             "reason": part.draw.reason if len(part.draw.items) < part.budget else "budget met"}
            for part in run.drawn
        ],
    }


def _correct_portion(run: SelectRun) -> dict[str, Any]:
    rows, n_sel = run.rows, len(run.items)
    solved_col = rows.column("student_solved").to_pylist() if "student_solved" in rows.column_names else []
    solved_sel = sum(1 for v in solved_col if v)
    return {
        "requested": run.config.correct_portion, "scope": run.config.correct_portion_scope, "selected_solved": solved_sel,
        "realised": round(solved_sel / n_sel, 6) if n_sel else None,
    }


def _add_distributions(report: dict[str, Any], run: SelectRun) -> list[dict[str, Any]]:
    """Target and realised leaf distributions, their KL, the coverage; returns the leaf table."""
    index = run.index
    assert index is not None
    nonempty = index.sizes() > 0
    under = index.membership(run.items)
    target, realised, report["distributions"] = _target_and_realised(run, nonempty, under)
    t_sum = target.sum()
    target_p = target / t_sum if t_sum > 0 else target
    r_sum = realised.sum()
    realised_p = realised / r_sum if r_sum > 0 else realised
    kl = kl_divergence(target_p, realised_p) if r_sum > 0 and t_sum > 0 else math.inf
    m = int(np.sum(target_p > 0))
    smoothed = (realised + _KL_SMOOTHING) / (r_sum + _KL_SMOOTHING * index.n_leaves)
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
    if run.accuracy is not None:
        report["leaves"] = _leaves_section(run.accuracy, run.config, nonempty) | {"profile_overlap": run.profile_overlap}
    return _leaf_table(run, target_p, realised, realised_p, under)


def _target_and_realised(run: SelectRun, nonempty: np.ndarray, under: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Per leaf: the target and realised (unnormalised) distributions, and what they measure."""
    index, weights = run.index, run.weights
    assert index is not None
    if run.config.strategy == "forced" and weights is not None:
        return (np.where(nonempty, weights, 0.0), under.copy(),
                "target = leaf weights normalised over leaves with eligible items, realised = "
                "selected items under each leaf (the forced projection's own measure)")
    if weights is None:
        return (index.membership(fractional=True), index.membership(run.items, fractional=True),
                "target = pool share, realised = selected share (an item with k leaves counts 1/k for each)")
    drawn_for = run.leaves[run.leaves >= 0]
    return (np.where(nonempty, weights, 0.0), np.bincount(drawn_for, minlength=index.n_leaves).astype(np.float64),
            "target = leaf weights normalised over leaves with eligible items, realised = items per drawn leaf")


def _leaves_section(acc_info: LeafAccuracy, config: SelectConfig, nonempty: np.ndarray) -> dict[str, Any]:
    return {
        "in_profile": acc_info.in_profile,
        "profile_leaves_without_items": acc_info.profile_leaves_without_items,
        "accuracy_field": config.accuracy,
        "accuracy_source": dict(Counter(s for s, ne in zip(acc_info.source, nonempty, strict=True) if ne)),
        "global_accuracy": acc_info.global_accuracy,
    }


def _leaf_table(run: SelectRun, target_p: np.ndarray, realised: np.ndarray, realised_p: np.ndarray,
                under: np.ndarray) -> list[dict[str, Any]]:
    """One row per leaf with eligible items or a realised count."""
    index, acc_info, weights = run.index, run.accuracy, run.weights
    assert index is not None
    sizes = index.sizes()
    nonempty = sizes > 0
    n_sel = len(run.items)
    table = []
    for j in range(index.n_leaves):
        if not nonempty[j] and realised[j] == 0:
            continue
        table.append({
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
    return table


def _add_breakdowns(report: dict[str, Any], run: SelectRun) -> None:
    """Selected items by source (beside the pool's) and by difficulty level, where the pool has them."""
    rows, n_sel = run.rows, len(run.items)
    pool_sources = run.pool.scan.source_counts
    if pool_sources is not None:
        report["by_source"] = {
            "pool": dict(sorted(pool_sources.items(), key=lambda kv: (-kv[1], kv[0]))),
            "selected": _value_counts(rows.column("source")) if n_sel else {},
        }
    if "meta" in rows.column_names and n_sel:
        levels = Counter(d for d in (_difficulty_level(m) for m in rows.column("meta").to_pylist()) if d is not None)
        if levels:
            report["by_difficulty"] = {"selected": dict(sorted(levels.items()))}


def _difficulty_level(meta: str | None) -> str | None:
    """The ``level`` (else ``difficulty``) of an item's meta JSON, if any."""
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


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    pairs = [(str(v["values"]), int(v["counts"])) for v in vc.to_pylist()]
    return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def leaf_csv(leaf_table: list[dict[str, Any]]) -> str:
    """``leaf_distribution.csv``: the leaf table as CSV."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LEAF_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in leaf_table:
        writer.writerow(row)
    return buf.getvalue()
