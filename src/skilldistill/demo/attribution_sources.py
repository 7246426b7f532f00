"""What better attribution buys, in the demo world: skill-plain under each attribution source.

For each source (the demo's default attributor, classifiers learnt from seed labels, the true
skills) the arm that selected with it, and beside it random-plain:

- the attribution's leaf precision and recall against the true skills (``attribution_accuracy.json``
  of the attribution the arm read);
- the share of its budget on problems that truly involve a weak leaf (mean over seeds; the true
  skills of the selected items, whatever the attribution said);
- its mean per-leaf gain over the base student on the weak leaves, with the report's 95%
  paired-bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..json_files import load_object


@dataclass(frozen=True)
class SourceArm:
    """An arm of the table: the source its attribution came from, where that attribution is, and its selections."""

    arm: str
    source: str  # "random" for the random-selection reference
    attribution_dir: Path | None
    selections: list[Path]


def weak_budget_share(selection: Path, weak_leaves: set[str]) -> float | None:
    """The share of a selection's items whose true skills include a weak leaf."""
    table = pq.read_table(selection, columns=["true_skills"])
    chains = table.column("true_skills").to_pylist()
    if not chains:
        return None
    return sum(any("->".join(c) in weak_leaves for c in item) for item in chains) / len(chains)


def source_rows(arms: list[SourceArm], summary: dict[str, Any], weak_leaves: set[str]) -> list[dict[str, Any]]:
    """One row per arm: precision, recall, weak-leaf budget share, weak-leaf gain and its interval."""
    gains = (summary.get("weak_skill_gains") or {}).get("by_arm") or {}
    rows = []
    for a in arms:
        accuracy = {}
        if a.attribution_dir is not None and (a.attribution_dir / "attribution_accuracy.json").is_file():
            accuracy = load_object(a.attribution_dir / "attribution_accuracy.json")
        shares = [s for s in (weak_budget_share(p, weak_leaves) for p in a.selections if p.is_file()) if s is not None]
        gain = gains.get(a.arm) or {}
        rows.append({"arm": a.arm, "source": a.source,
                     "leaf_precision": accuracy.get("leaf_precision"), "leaf_recall": accuracy.get("leaf_recall"),
                     "weak_budget_share": sum(shares) / len(shares) if shares else None, "seeds": len(shares),
                     "weak_gain": gain.get("weak"), "weak_gain_ci": gain.get("weak_ci")})
    return rows


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _gain(v: float | None, ci: dict[str, Any] | None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:+.1f}" + (f" [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]" if ci else "")


def row_cells(row: dict[str, Any]) -> list[str]:
    """A row as the table prints it."""
    precision = "–" if row["leaf_precision"] is None else f"{row['leaf_precision']:.2f}"
    recall = "–" if row["leaf_recall"] is None else f"{row['leaf_recall']:.2f}"
    return [row["source"], row["arm"], precision, recall, _pct(row["weak_budget_share"]),
            _gain(row["weak_gain"], row["weak_gain_ci"])]


HEADER = ["source", "arm", "leaf precision", "leaf recall", "budget on weak leaves", "weak-leaf gain, pp [95% CI]"]


def sources_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["skill-plain under each attribution source, and random-plain (docs/demo.md, \"Attribution sources\"). "
             "Budget on weak leaves: the share of selected problems that truly involve a weak leaf (mean over "
             "seeds); gain: mean per-leaf gain over the base student on the weak leaves.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["HEADER", "SourceArm", "row_cells", "source_rows", "sources_markdown", "weak_budget_share"]
