"""Accuracy metrics: avg@n over problems x samples, and accuracy per skill node."""

from __future__ import annotations

import math
from typing import Any


def avg_at_n(correct: list[list[bool]]) -> dict[str, Any]:
    """avg@n over problems x samples: mean, spread over sample indices, pass@n.

    ``correct[i][s]`` is whether sample ``s`` of problem ``i`` is right. The spread is the
    standard deviation of the per-sample-index accuracies (each index is one full run of
    the benchmark), the usual way avg@n papers report seed variation.
    """
    if not correct:
        return {"accuracy": None, "std": None, "per_sample_accuracy": [], "pass_at_n": None, "n": 0}
    n = min(len(c) for c in correct)
    per_problem = [sum(c[:n]) / n for c in correct]
    per_sample = [sum(c[s] for c in correct) / len(correct) for s in range(n)]
    mean = sum(per_problem) / len(per_problem)
    std = math.sqrt(sum((a - mean) ** 2 for a in per_sample) / (n - 1)) if n > 1 else 0.0
    return {
        "accuracy": mean,
        "std": std,
        "per_sample_accuracy": per_sample,
        "pass_at_n": sum(any(c[:n]) for c in correct) / len(correct),
        "n": n,
    }


def per_skill_accuracy(
    item_accuracy: dict[str, float], item_skills: dict[str, list[list[str]]]
) -> dict[str, dict[str, Any]]:
    """Accuracy per skill node (every prefix of every chain) over the items under it."""
    sums: dict[tuple[str, ...], list[float]] = {}
    for iid, chains in item_skills.items():
        if iid not in item_accuracy:
            continue
        nodes = {tuple(chain[: d + 1]) for chain in chains for d in range(len(chain))}
        for node in nodes:
            sums.setdefault(node, []).append(item_accuracy[iid])
    return {
        "->".join(node): {"path": list(node), "depth": len(node), "n": len(v), "accuracy": sum(v) / len(v)}
        for node, v in sorted(sums.items())
    }
