"""The per-leaf accuracy plot, ``skill_profile.png``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_skill_profile(nodes: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Per-leaf accuracy (smoothed, with 95% interval; raw as a hollow marker), grouped
    by top-level skill. Leaves with no graded sample are left out. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..artifacts import atomic_path

    leaves = [n for n in nodes if n["is_leaf"] and n["graded"] > 0]
    if not leaves:
        return None
    groups: dict[str, list[dict[str, Any]]] = {}
    for n in leaves:
        groups.setdefault(n["path"][0], []).append(n)
    n_leaves = len(leaves)
    label_leaves = n_leaves <= 150
    width = min(40.0, max(8.0, 0.14 * n_leaves + 2))
    fig, ax = plt.subplots(figsize=(width, 6.5 if label_leaves else 5.0))
    cmap = plt.get_cmap("tab10")
    x = 0
    ticks, labels = [], []
    for gi, (top, members) in enumerate(groups.items()):
        color = cmap(gi % 10)
        xs = list(range(x, x + len(members)))
        mean = [m["smoothed_accuracy"] for m in members]
        # For very skewed posteriors (a few items, a parent near 0) the posterior mean can lie
        # outside the equal-tailed interval; draw the bar up to the mean then, not backwards.
        err = [[max(0.0, m["smoothed_accuracy"] - m["ci_low"]) for m in members],
               [max(0.0, m["ci_high"] - m["smoothed_accuracy"]) for m in members]]
        ax.errorbar(xs, mean, yerr=err, fmt="o", ms=3.5, color=color, ecolor=color, elinewidth=0.8, capsize=1.5, label=top)
        ax.scatter(xs, [m["accuracy"] for m in members], s=14, facecolors="none", edgecolors=color, linewidths=0.7)
        ax.text((xs[0] + xs[-1]) / 2, 1.03, top if len(top) <= 28 else top[:26] + "…", ha="center", va="bottom", fontsize=7, rotation=0 if len(members) > 4 else 30, color=color)
        if gi:
            ax.axvline(x - 0.5, color="0.85", lw=0.8)
        ticks += xs
        labels += [m["path"][-1] if len(m["path"][-1]) <= 40 else m["path"][-1][:38] + "…" for m in members]
        x += len(members)
    ax.set_xlim(-0.8, x - 0.2)
    ax.set_ylim(-0.02, 1.12)
    ax.set_ylabel("accuracy (dot: smoothed, 95% interval; ring: raw)")
    if label_leaves:
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n_leaves} leaf skills, grouped by top-level skill")
    ax.set_title(title or "per-skill accuracy", fontsize=10, pad=22)
    ax.grid(axis="y", color="0.92")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
