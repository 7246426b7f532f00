"""A simulated student with a known truth, for measuring profiling plans without a model:
``bench/profile_fidelity.py``, ``skilldistill plan``'s estimate of what adaptive profiling
would cost, and the tests.

The world (stated wherever a figure comes from it, since figures depend on it):
- items carry the chains of an item resampled from ``chain_sets`` (e.g. an attributed pool's
  ``skills``) when given, else 1 to 3 leaves of the tree (probabilities 0.6 / 0.3 / 0.1) drawn
  with Zipf(1.1) popularity over the leaves in a seeded order;
- per leaf a true accuracy ``sigmoid(N(logit 0.55, 1.2))`` (a small student's leaves spread from
  about 0.1 to 0.95), per item an accuracy drawn from ``Beta`` with the mean of its leaves and
  concentration 2 (items of a leaf differ a lot), and ``n`` samples per item drawn from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tree import SkillTree
from .accuracy import skill_stats
from .adaptive import AdaptivePlan, selection_distribution
from .config import AdaptiveConfig

WORLD = ("leaf accuracies sigmoid(N(logit 0.55, 1.2)), item accuracies Beta(mean of its leaves, concentration 2), "
         "items on 1-3 leaves with Zipf(1.1) popularity (or resampled from an attributed pool)")


def simulated_pool(tree: SkillTree, n_items: int, n_samples: int, rng: np.random.Generator,
                   chain_sets: Sequence[list[list[str]]] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Items (``id``, ``skills``) and their profile rows (``n_samples``, ``n_correct``) in the world above."""
    leaves = tree.leaves()
    if chain_sets:
        sets = [[list(c) for c in s if tuple(c) in tree] for s in chain_sets]
        sets = [s for s in sets if s]
        skills = [sets[i] for i in rng.integers(len(sets), size=n_items)]
    else:
        popularity = 1.0 / np.arange(1, len(leaves) + 1) ** 1.1
        popularity = rng.permutation(popularity / popularity.sum())
        k = rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1], size=n_items)
        skills = [[list(leaves[j]) for j in rng.choice(len(leaves), size=kk, replace=False, p=popularity)] for kk in k]
    logit = np.log(0.55 / 0.45) + 1.2 * rng.standard_normal(len(leaves))
    truth = dict(zip(leaves, 1 / (1 + np.exp(-logit)), strict=True))
    items, rows = [], []
    for i, s in enumerate(skills):
        known = [truth[tuple(c)] for c in s if tuple(c) in truth]
        mean = float(np.clip(np.mean(known) if known else 0.5, 0.01, 0.99))
        correct = int(rng.binomial(n_samples, rng.beta(2 * mean, 2 * (1 - mean))))
        items.append({"id": f"i{i}", "skills": s})
        rows.append({"id": f"i{i}", "skills": s, "n_samples": n_samples, "n_correct": correct})
    return items, rows


def profile_selection(rows: Sequence[dict[str, Any]], tree: SkillTree, leaves: Sequence[tuple[str, ...]],
                      config: AdaptiveConfig, prior_strength: float) -> np.ndarray:
    """The skill strategy's leaf distribution from a profile of ``rows`` (a leaf without data: its
    nearest ancestor with data, else the overall accuracy, as selection reads it)."""
    nodes, overall, _ = skill_stats(rows, tree, prior_strength=prior_strength)
    key = "accuracy" if config.accuracy == "raw" else "smoothed_accuracy"
    by_path = {tuple(n["path"]): n for n in nodes if n["graded"]}
    acc = []
    for leaf in leaves:
        node = next((by_path[leaf[:d]] for d in range(len(leaf), 0, -1) if leaf[:d] in by_path), None)
        acc.append(node[key] if node else overall.get(key) or 0.5)
    return selection_distribution(np.array(acc), config.temperature, config.w_max)


def simulate_adaptive(plan: AdaptivePlan, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``plan``'s rounds on known profile ``rows`` (one per item of the plan); the rows profiled."""
    plan.first_round()
    while True:
        profiled = [rows[i] for i in np.flatnonzero(plan.profiled)]
        assessment = plan.assess(profiled, np.random.default_rng([plan.seed, len(plan.rounds)]))
        plan.record(assessment, 0)
        plan.stop_reason = plan.should_stop(assessment)
        if plan.stop_reason is not None:
            return profiled
        plan.next_round(assessment)


def adaptive_items_estimate(tree: SkillTree, n_items: int, n_samples: int, config: AdaptiveConfig,
                            prior_strength: float, *, seed: int = 0,
                            chain_sets: Sequence[list[list[str]]] | None = None) -> tuple[int, str]:
    """Items adaptive profiling profiles on a simulated pool of ``n_items`` (one replicate), and why it stopped."""
    items, rows = simulated_pool(tree, n_items, n_samples, np.random.default_rng(seed), chain_sets)
    plan = AdaptivePlan(items, config, n_samples=n_samples, prior_strength=prior_strength, tree=tree, seed=seed)
    return len(simulate_adaptive(plan, rows)), plan.stop_reason or ""


__all__ = ["WORLD", "adaptive_items_estimate", "profile_selection", "simulate_adaptive", "simulated_pool"]
