"""Attribution scored against known skills: on a corpus with ``true_skills`` (the demo's
generated pool), how often the attributed ``skills`` agree, and the report section saying so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def attribution_accuracy(skills_parquet: str | Path) -> dict[str, Any]:
    """Agreement of attributed ``skills`` with known ``true_skills`` (leaf chains and top level).

    Per item: leaf precision/recall of the predicted chain set; exact set match; whether
    the top-level skill sets match. Also the majority-class and uniform-random rates of
    the top-level skill, the reference points an attribution method must beat.
    """
    t = pq.read_table(skills_parquet, columns=["skills", "true_skills"])
    pred_col, true_col = t.column("skills").to_pylist(), t.column("true_skills").to_pylist()
    n = len(pred_col)
    exact = top_exact = 0
    prec_sum = rec_sum = 0.0
    first_top_hit = 0
    top_counts: dict[str, int] = {}
    leaves: set[tuple[str, ...]] = set()
    for pred, true in zip(pred_col, true_col, strict=True):
        p = {tuple(c) for c in pred or []}
        g = {tuple(c) for c in true or []}
        leaves |= g
        exact += p == g
        prec_sum += len(p & g) / len(p) if p else 0.0
        rec_sum += len(p & g) / len(g) if g else 0.0
        pt, gt = {c[0] for c in p}, {c[0] for c in g}
        top_exact += pt == gt
        if pred and true:
            first_top_hit += pred[0][0] in gt
        for top in gt:
            top_counts[top] = top_counts.get(top, 0) + 1
    tops = sorted(top_counts)
    return {
        "items": n,
        "leaf_exact_set": exact / n if n else None,
        "leaf_precision": prec_sum / n if n else None,
        "leaf_recall": rec_sum / n if n else None,
        "top_level_exact_set": top_exact / n if n else None,
        "top_level_first_chain_hit": first_top_hit / n if n else None,
        "top_level_majority_rate": max(top_counts.values()) / n if n and top_counts else None,
        "top_level_random_rate": 1 / len(tops) if tops else None,
        "leaf_random_rate": 1 / len(leaves) if leaves else None,
    }


def attribution_markdown(acc: dict[str, Any]) -> str:
    """The report section of :func:`attribution_accuracy`'s numbers (a markdown table)."""
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    return "\n".join([
        f"Embedding attribution on the {acc['items']} generated problems, against the generator's skills:",
        "",
        "| measure | value |", "|---|---|",
        f"| leaf chains: exact set match | {pct(acc['leaf_exact_set'])} |",
        f"| leaf chains: precision / recall | {pct(acc['leaf_precision'])} / {pct(acc['leaf_recall'])} |",
        f"| top level: exact set match | {pct(acc['top_level_exact_set'])} |",
        f"| top level: first predicted domain is a true one | {pct(acc['top_level_first_chain_hit'])} |",
        f"| top level: majority class / random | {pct(acc['top_level_majority_rate'])} / {pct(acc['top_level_random_rate'])} |",
    ])


__all__ = ["attribution_accuracy", "attribution_markdown"]
