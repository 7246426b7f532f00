"""The report's figures (matplotlib, Agg): per-skill accuracy, selection per leaf, emphasis
against gain, training loss. Each returns the PNG it wrote, or None when there is nothing
to draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .analysis import SkillTable, is_leaf
from .run_folder import BASE, ArmRuns, arm_order

_SEED_LINESTYLES = ("-", "--", ":", "-.")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def arm_colors(arms: list[str]) -> dict[str, Any]:
    """One colour per arm (tab10 in the given order), ``base`` grey."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {a: ("#7f7f7f" if a == BASE else cmap(i % 10)) for i, a in enumerate(a for a in arms)}


def _short_leaf(chain: str) -> str:
    return chain.split("->")[-1]


def plot_per_skill(skills: SkillTable, path: Path, *, weak: set[str] | None = None,
                   leaves_only: bool = True) -> Path | None:
    """Horizontal bars, one group per leaf (full names, legible at page width); weak
    leaves marked; error bars (std over seeds) kept inside [0, 1]."""
    rows = {c: v for c, v in skills.items() if not leaves_only or is_leaf(c, skills)}
    if not rows:
        return None
    plt = _pyplot()
    arms = arm_order({a for per in rows.values() for a in per})
    colors = arm_colors(arms)
    chains = list(rows)
    n_arms = max(1, len(arms))
    height = 0.8 / n_arms
    fig_h = min(40.0, 1.2 + 0.22 * len(chains) * n_arms)
    fig, ax = plt.subplots(figsize=(9.5, fig_h))
    for i, arm in enumerate(arms):
        ys = [j + (i - (n_arms - 1) / 2) * height for j in range(len(chains))]
        means = [rows[c].get(arm, {}).get("mean") for c in chains]
        stds = [rows[c].get(arm, {}).get("std") or 0.0 for c in chains]
        vals = [m if m is not None else 0.0 for m in means]
        lo = [min(s, v) for s, v in zip(stds, vals, strict=True)]
        hi = [min(s, 1.0 - v) for s, v in zip(stds, vals, strict=True)]
        ax.barh(ys, vals, height, xerr=[lo, hi], label=arm, color=colors[arm], capsize=1.5,
                error_kw={"elinewidth": 0.8})
    ax.set_yticks(range(len(chains)))
    labels = [("★ " if weak and c in weak else "") + _short_leaf(c) for c in chains]
    ax.set_yticklabels(labels, fontsize=9)
    for tick, c in zip(ax.get_yticklabels(), chains, strict=True):
        if weak and c in weak:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("accuracy (mean over seeds; whiskers: std, clipped to [0, 1])")
    title = "per-skill accuracy"
    if weak:
        title += " (★ = weak leaf)"
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_loss(arms: dict[str, ArmRuns], path: Path, *, styles: dict[str, str] | None = None) -> Path | None:
    """Training loss: one colour per arm, one line style per seed."""
    curves = [(a.name, s, c) for a in arms.values() for s, c in sorted(a.loss.items())]
    if not curves:
        return None
    plt = _pyplot()
    names = arm_order({a for a, _, _ in curves})
    colors = arm_colors(names)
    seeds = sorted({s for _, s, _ in curves}, key=lambda s: int(s[4:]) if s[4:].isdigit() else 0)
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for arm, seed, curve in curves:
        steps, losses = zip(*curve, strict=True)
        style = _SEED_LINESTYLES[seeds.index(seed) % len(_SEED_LINESTYLES)]
        ax.plot(steps, losses, color=colors[arm], linestyle=style, alpha=0.9, lw=1.2, label=f"{arm} {seed}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    note = ""
    if styles and len(set(styles.values())) > 1:
        note = "\nplain and skill-aware arms train on different targets (the plan adds tokens): compare within a style"
    ax.set_title("training loss per arm (colour) and seed (line style)" + note, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_selection(dists: dict[str, dict[str, float]], path: Path, *, weak: set[str] | None = None) -> Path | None:
    """Each arm's share of its selected items per leaf, one group of bars per leaf."""
    if not dists:
        return None
    plt = _pyplot()
    chains = sorted({c for d in dists.values() for c in d})
    arms = arm_order(list(dists))
    colors = arm_colors(arms)
    n = len(arms)
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(9.5, min(40.0, 1.2 + 0.22 * len(chains) * n)))
    for i, arm in enumerate(arms):
        ys = [j + (i - (n - 1) / 2) * height for j in range(len(chains))]
        ax.barh(ys, [dists[arm].get(c, 0.0) for c in chains], height, label=arm, color=colors[arm])
    ax.set_yticks(range(len(chains)))
    ax.set_yticklabels([("★ " if weak and c in weak else "") + _short_leaf(c) for c in chains], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("share of the selected items under the leaf (mean over seeds; multi-skill items count under each)")
    ax.set_title("selected items per leaf skill" + (" (★ = weak leaf)" if weak else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_emphasis(emph: dict[str, Any], path: Path, *, weak: set[str] | None = None) -> Path | None:
    """One point per leaf and skill-selection arm: emphasis (log scale) against gain."""
    pairs = {a: e for a, e in emph.get("pairs", {}).items() if e.get("points")}
    if not pairs:
        return None
    plt = _pyplot()
    colors = arm_colors(arm_order(list(pairs)))
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    for arm, entry in pairs.items():
        xs = [point["emphasis"] for point in entry["points"]]
        ys = [100 * point["gain"] for point in entry["points"]]
        corr = entry.get("correlation")
        label = f"{arm} vs {entry['against']}"
        if corr and all(corr[k] is not None for k in ("r", "low", "high")):
            label += f": r = {corr['r']:+.2f} [{corr['low']:+.2f}, {corr['high']:+.2f}]"
        ax.scatter(xs, ys, color=colors[arm], label=label, s=28, zorder=3)
        for point, x, y in zip(entry["points"], xs, ys, strict=True):
            if weak and point["leaf"] in weak:
                ax.scatter([x], [y], s=90, facecolors="none", edgecolors=colors[arm], zorder=2)
            ax.annotate(_short_leaf(point["leaf"]), (x, y), fontsize=6.5, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.axhline(0, color="#999", lw=0.8)
    ax.axvline(1, color="#999", lw=0.8)
    ax.set_xlabel("emphasis: leaf's share in the skill arm ÷ its share in the random arm (log scale)")
    ax.set_ylabel("gain on the leaf: skill arm − random arm (pp)")
    ax.set_title("where the budget went vs where the accuracy went" + (" (circled: weak leaves)" if weak else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
