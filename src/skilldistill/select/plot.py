"""``distribution.png``: target vs realised share of the selection per leaf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import atomic_path


def plot_distribution(leaf_table: list[dict[str, Any]], path: str | Path, *, title: str = "", top: int = 30) -> Path:
    """Target vs realised share: the ``top`` leaves by target as bars, and every leaf sorted by target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(leaf_table, key=lambda r: -r["target_p"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, max(4.0, 0.26 * min(top, len(rows)) + 1.5)),
                                   gridspec_kw={"width_ratios": [1.2, 1]})
    head = rows[:top][::-1]
    ypos = np.arange(len(head))
    ax1.barh(ypos - 0.2, [r["target_p"] for r in head], height=0.4, label="target", color="#4c72b0")
    ax1.barh(ypos + 0.2, [r["realised_p"] for r in head], height=0.4, label="realised", color="#dd8452")
    ax1.set_yticks(ypos, [_shorten_leaf(r["leaf"]) for r in head], fontsize=7)
    ax1.set_xlabel("share of the selection")
    ax1.set_title(f"top {len(head)} leaves by target")
    ax1.legend(loc="lower right")
    x = np.arange(len(rows))
    ax2.plot(x, [r["target_p"] for r in rows], color="#4c72b0", label="target")
    ax2.scatter(x, [r["realised_p"] for r in rows], s=6, color="#dd8452", label="realised")
    ax2.set_xlabel(f"leaves sorted by target ({len(rows)})")
    ax2.set_ylabel("share")
    ax2.set_title("all leaves")
    ax2.legend()
    fig.suptitle(title)
    # Fixed margins instead of tight_layout: the layout pass costs more than the drawing.
    fig.subplots_adjust(left=0.24, right=0.98, bottom=0.08, top=0.9, wspace=0.22)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _shorten_leaf(text: str, n: int = 60) -> str:
    """The last ``n`` characters of a long leaf chain (its most specific steps)."""
    return text if len(text) <= n else "..." + text[-(n - 3):]
