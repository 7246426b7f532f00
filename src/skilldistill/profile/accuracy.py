"""Per-skill accuracy: counts rolled up the skill tree, smoothed toward the parent.

Raw per-skill accuracy is noisy for skills with a handful of problems, so each node also
gets a smoothed accuracy: the mean of a Beta posterior whose prior has mean equal to
the parent's smoothed accuracy and strength ``prior_strength`` pseudo-samples
(Beta-binomial shrinkage toward the parent; the root's prior is Beta(k/2, k/2)). The 95%
interval is the 2.5% and 97.5% quantiles of that posterior (computed here, without scipy).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..tree import Chain, SkillTree, chain_str


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    # Converges in O(sqrt(max(a, b))) steps on the side of x chosen by betainc.
    for m in range(1, 20000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), the CDF of Beta(a, b) at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of Beta(a, b) by bisection on the CDF (monotone, so this cannot miss)."""
    lo, hi = 0.0, 1.0
    for _ in range(64):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def beta_posterior(correct: int, graded: int, prior_mean: float, prior_strength: float) -> tuple[float, float, float]:
    """(posterior mean, 2.5% quantile, 97.5% quantile) of Beta(k*m + c, k*(1-m) + g - c)."""
    eps = 1e-6  # keep the prior proper when the parent sits at exactly 0 or 1
    m = min(max(prior_mean, eps), 1 - eps)
    k = max(prior_strength, 0.0)
    a = k * m + correct
    b = k * (1 - m) + (graded - correct)
    if a <= 0 or b <= 0:
        # No prior and all-or-nothing data: the posterior is a point mass.
        point = correct / graded if graded else m
        return point, point, point
    return a / (a + b), beta_ppf(0.025, a, b), beta_ppf(0.975, a, b)


def skill_stats(
    item_rows: Sequence[dict[str, Any]],
    tree: SkillTree,
    *,
    prior_strength: float,
) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Per-node counts, raw and smoothed accuracy, 95% intervals, in tree pre-order.

    ``item_rows``: dicts with ``skills``, ``n_samples``, ``n_correct``. Returns (nodes,
    overall, number of item chains not found in the tree).
    """
    graded: dict[Chain, int] = defaultdict(int)
    correct: dict[Chain, int] = defaultdict(int)
    unknown = 0
    for r in item_rows:
        paths: set[Chain] = {()}
        for c in r["skills"]:
            chain = tuple(c)
            if chain not in tree:
                unknown += 1
                continue
            paths.update(chain[:d] for d in range(1, len(chain) + 1))
        for p in paths:
            graded[p] += r["n_samples"]
            correct[p] += r["n_correct"]

    smoothed: dict[Chain, float] = {}
    nodes: list[dict[str, Any]] = []
    overall: dict[str, Any] = {}
    for path, node in tree.nodes():  # pre-order: a parent is smoothed before its children
        g, c = graded.get(path, 0), correct.get(path, 0)
        prior_mean = smoothed[path[:-1]] if path else 0.5
        mean, lo, hi = beta_posterior(c, g, prior_mean, prior_strength)
        smoothed[path] = mean
        entry = {
            "path": list(path),
            "chain": chain_str(path),
            "depth": len(path),
            "is_leaf": node.is_leaf,
            "graded": g,
            "correct": c,
            "accuracy": (c / g) if g else None,
            "smoothed_accuracy": mean,
            "ci_low": lo,
            "ci_high": hi,
        }
        if path:
            nodes.append(entry)
        else:
            overall = {k: entry[k] for k in ("graded", "correct", "accuracy", "smoothed_accuracy", "ci_low", "ci_high")}
    return nodes, overall, unknown
