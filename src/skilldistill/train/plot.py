"""The training-loss plot (``loss.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import atomic_path


def plot_loss(history: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Training loss per logged step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if points:
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, lw=1.2, color="#1f77b4", label="training loss")
        if len(points) >= 10:
            k = max(2, len(points) // 20)
            smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
            ax.plot(steps, smooth, lw=2, color="#d62728", label=f"mean of {k} steps")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title or "training loss", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
