"""Adaptive profiling (``profile.adaptive``): profile in rounds until the selection the
profile drives is known to within a stated bound.

Selection reads the profile through one smoothed accuracy per leaf, turned into the
distribution over leaves ``pi_l = w_l / sum(w)``, ``w = min((1/acc)**T, w_max**T)``. A leaf near
accuracy 0 moves ``pi`` far more per point of accuracy than one near 1, so an equal sample per
leaf (the stratified ``profile.sample``) spends most generations where they change nothing.

Each round here:

1. estimates ``pi`` from the items profiled so far, exactly as selection will (the profile's
   smoothed accuracies, :func:`~skilldistill.profile.accuracy.skill_stats`, or the raw ones
   with ``accuracy: raw``);
2. draws what the *full-pool* profile could be, given the data: per leaf a rate from the Beta
   posterior of its counts (Jeffreys' prior), binomial counts for the leaf's unprofiled items,
   and the accuracy selection would read from those full counts (smoothed toward the parent
   with the profile's ``prior_strength``, or raw); each draw gives a ``pi_full``;
3. stops when the ``confidence`` quantile of ``TV(pi, pi_full) = 1/2 sum |pi - pi_full|`` over
   the draws is at most ``tv_bound`` (or every item is profiled, or ``max_rounds`` is reached);
4. else gives the next round's items to the leaves in proportion to their share of the
   expected distance, ``E|pi_l - pi_full_l|``, each leaf taking its items in a seeded order.

Everything is a function of the seed and the grades, and generations are kept in the stage's
append-only log, so a rerun after a kill replays the finished rounds from the log and resumes
the round it was in. The posterior ignores that an item under two leaves ties them (it treats
leaves as independent), and the full-pool draw keeps the parents' smoothed accuracies fixed;
``bench/profile_fidelity.py`` measures the distance actually reached against the full profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..select.weights import leaf_weights
from ..tree import Chain, SkillTree, chain_str
from .accuracy import skill_stats
from .config import AdaptiveConfig

STOP_BOUND = "bound met"
STOP_EXHAUSTED = "every item profiled"
STOP_ROUNDS = "max_rounds reached"


def selection_distribution(accuracy: np.ndarray, temperature: float, w_max: float) -> np.ndarray:
    """The ``skill`` strategy's leaf distribution, ``w / sum(w)`` with select's own weights
    (:func:`~skilldistill.select.weights.leaf_weights`), along the last axis."""
    w = leaf_weights(accuracy, temperature, w_max)
    return w / w.sum(axis=-1, keepdims=True)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``1/2 sum |p - q|`` along the last axis."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


@dataclass
class _Parents:
    """Per leaf: its parent's index, the parent's own prior mean, observed samples and correct ones."""

    index: np.ndarray
    prior: np.ndarray
    graded: np.ndarray
    correct: np.ndarray


@dataclass
class Assessment:
    """What one round found: the estimate, how far the full-pool distribution may be from it."""

    pi: np.ndarray  # per leaf: the selection distribution from the items profiled so far
    tv_quantile: float  # the ``confidence`` quantile of TV(pi, pi_full) over the posterior draws
    tv_mean: float
    leaf_error: np.ndarray  # per leaf: E|pi_l - pi_full_l|


@dataclass
class RoundRecord:
    round: int
    items_added: int
    items_profiled: int
    samples: int
    tv_quantile: float
    tv_mean: float

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "items_added": self.items_added, "items_profiled": self.items_profiled,
                "samples": self.samples, "tv_quantile": round(self.tv_quantile, 6), "tv_mean": round(self.tv_mean, 6)}


@dataclass
class AdaptivePlan:
    """The leaves of a pool, each with its items in a seeded order, and how far each has been profiled.

    ``items`` are the pool's items (dicts with ``id`` and ``skills``); a leaf is a chain an item
    carries (the key selection draws by); an item without skills is never profiled (selection
    cannot place it on a leaf)."""

    items: Sequence[dict[str, Any]]
    config: AdaptiveConfig
    n_samples: int  # samples per item (generation.n)
    prior_strength: float
    tree: SkillTree
    seed: int = 0
    leaves: list[Chain] = field(init=False)
    order: list[list[int]] = field(init=False)  # per leaf: its item indices, seeded order
    taken: list[int] = field(init=False)  # per leaf: how many of its items (in order) are profiled
    profiled: np.ndarray = field(init=False)  # per item: profiled yet
    rounds: list[RoundRecord] = field(init=False, default_factory=list)
    stop_reason: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        by_leaf: dict[Chain, list[int]] = {}
        for i, it in enumerate(self.items):
            for c in {tuple(c) for c in it["skills"]}:
                by_leaf.setdefault(c, []).append(i)
        self.leaves = sorted(by_leaf)
        rng = np.random.default_rng(self.seed)
        self.order = [[int(i) for i in rng.permutation(by_leaf[leaf])] for leaf in self.leaves]
        self.taken = [0] * len(self.leaves)
        self.profiled = np.zeros(len(self.items), dtype=bool)

    # -- choosing items ------------------------------------------------------------------
    def first_round(self) -> list[int]:
        """Up to ``initial_per_leaf`` items of every leaf (items already counted through another leaf count here too)."""
        return self._take({j: self.config.initial_per_leaf for j in range(len(self.leaves))}, top_up=True)

    def next_round(self, assessment: Assessment) -> list[int]:
        """``round_items`` new items over the leaves, in proportion to their share of the expected distance."""
        self._skip_profiled()
        room = np.array([len(o) - t for o, t in zip(self.order, self.taken, strict=True)], dtype=np.float64)
        need = np.where(room > 0, assessment.leaf_error, 0.0)
        if need.sum() <= 0:  # no leaf with items left carries any doubt: spread by room
            need = room.copy()
        quota = _apportion(self.round_size(), need, room)
        return self._take({j: int(q) for j, q in enumerate(quota) if q > 0}, top_up=False)

    def round_size(self) -> int:
        """``round_items``, else two items per leaf or a quarter of the items profiled so far, whichever is more
        (rounds grow geometrically, so a tight bound is reached in a few dozen rounds)."""
        return self.config.round_items or max(2 * len(self.leaves), int(self.profiled.sum()) // 4, 1)

    def _take(self, quota: dict[int, int], *, top_up: bool) -> list[int]:
        """Each leaf's next items in its order: ``quota[j]`` new ones, or with ``top_up`` until ``quota[j]`` of
        its items are profiled (an item profiled through another leaf counts for this one too)."""
        new: list[int] = []
        for j, q in quota.items():
            order = self.order[j]
            want = q - self.taken[j] if top_up else q
            while want > 0 and self.taken[j] < len(order):
                i = order[self.taken[j]]
                self.taken[j] += 1
                if not self.profiled[i]:
                    self.profiled[i] = True
                    new.append(i)
                    want -= 1
                elif top_up:
                    want -= 1
        return sorted(new)

    def _skip_profiled(self) -> None:
        """Advance each leaf past items profiled through other leaves, so its room counts unprofiled items only."""
        for j, order in enumerate(self.order):
            while self.taken[j] < len(order) and self.profiled[order[self.taken[j]]]:
                self.taken[j] += 1

    def leaf_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per leaf: items profiled, items in the pool."""
        profiled = np.array([int(self.profiled[o].sum()) for o in map(np.asarray, self.order)], dtype=np.int64)
        return profiled, np.array([len(o) for o in self.order], dtype=np.int64)

    # -- judging a round -----------------------------------------------------------------
    def assess(self, item_rows: Sequence[dict[str, Any]], rng: np.random.Generator) -> Assessment:
        """The distribution selection would use now, and the posterior spread of the full-pool one."""
        nodes, overall, _ = skill_stats(item_rows, self.tree, prior_strength=self.prior_strength)
        by_path = {tuple(n["path"]): n for n in nodes}
        acc, graded, correct = (np.empty(len(self.leaves)) for _ in range(3))
        up_prior, up_graded, up_correct = (np.empty(len(self.leaves)) for _ in range(3))
        parent_of = {p: i for i, p in enumerate(sorted({leaf[:-1] for leaf in self.leaves}))}
        parent_idx = np.array([parent_of[leaf[:-1]] for leaf in self.leaves], dtype=np.int64)
        for j, leaf in enumerate(self.leaves):
            node = by_path.get(leaf)
            up = by_path.get(leaf[:-1], overall) if len(leaf) > 1 else overall
            grand = by_path.get(leaf[:-2]) if len(leaf) > 2 else None
            up_prior[j] = grand["smoothed_accuracy"] if grand else (0.5 if len(leaf) <= 1 else overall["smoothed_accuracy"])
            up_graded[j], up_correct[j] = up.get("graded") or 0, up.get("correct") or 0
            graded[j] = node["graded"] if node else 0
            correct[j] = node["correct"] if node else 0
            acc[j] = node["smoothed_accuracy"] if node else up.get("smoothed_accuracy", 0.5)
            if self.config.accuracy == "raw" and graded[j]:
                acc[j] = correct[j] / graded[j]
        profiled, pool = self.leaf_counts()
        pi = selection_distribution(acc, self.config.temperature, self.config.w_max)
        full = self._full_pool_draws(graded, correct, pool - profiled,
                                     _Parents(parent_idx, up_prior, up_graded, up_correct), rng)
        pi_full = selection_distribution(full, self.config.temperature, self.config.w_max)
        tv = total_variation(pi[None, :], pi_full)
        return Assessment(pi=pi, tv_quantile=float(np.quantile(tv, self.config.confidence)), tv_mean=float(tv.mean()),
                          leaf_error=np.abs(pi_full - pi[None, :]).mean(axis=0))

    def _full_pool_draws(self, graded: np.ndarray, correct: np.ndarray, rest_items: np.ndarray, parents: _Parents,
                         rng: np.random.Generator) -> np.ndarray:
        """``posterior_draws`` x leaves: the accuracy each leaf would have with every item profiled.

        The unit is the item, not the sample: an item's ``n`` samples share its difficulty, so the
        posterior counts each item as one trial (its share of correct samples a fractional success)
        and an unprofiled item adds ``n`` samples all right or all wrong. Exact for ``n = 1``, and
        wider than the truth (never narrower) for ``n > 1``. With smoothing, a leaf is pulled
        toward its parent's *full-pool* accuracy, drawn too: rounds that favour uncertain leaves
        leave the profiled parent unlike the pool's."""
        k, n = self.prior_strength, self.n_samples
        # Jeffreys' prior for the rate, not the smoothing prior: a leaf need not resemble its
        # parent, and a prior pulling it there would make the draws too sure of a few items
        theta = rng.beta(0.5 + correct / n, 0.5 + (graded - correct) / n, size=(self.config.posterior_draws, len(graded)))
        extra = rng.binomial(rest_items.astype(np.int64), theta) * n
        full_correct, full_graded = correct + extra, graded + rest_items * n
        if self.config.accuracy == "raw":
            return full_correct / np.maximum(full_graded, 1)
        n_parents = int(parents.index.max()) + 1
        add_correct = np.zeros((extra.shape[0], n_parents))
        np.add.at(add_correct.T, parents.index, extra.T)
        add_graded = np.bincount(parents.index, weights=rest_items * n, minlength=n_parents)
        parent_graded = parents.graded + add_graded[parents.index]
        parent_acc = (k * parents.prior + parents.correct + add_correct[:, parents.index]) / (k + parent_graded)
        return (k * parent_acc + full_correct) / (k + full_graded)

    def record(self, assessment: Assessment, items_added: int) -> RoundRecord:
        profiled = int(self.profiled.sum())
        rec = RoundRecord(len(self.rounds) + 1, items_added, profiled, profiled * self.n_samples,
                          assessment.tv_quantile, assessment.tv_mean)
        self.rounds.append(rec)
        return rec

    def should_stop(self, assessment: Assessment) -> str | None:
        if assessment.tv_quantile <= self.config.tv_bound:
            return STOP_BOUND
        if all(t >= len(o) for o, t in zip(self.order, self.taken, strict=True)):
            return STOP_EXHAUSTED
        if len(self.rounds) >= self.config.max_rounds:
            return STOP_ROUNDS
        return None

    def summary(self, assessment: Assessment) -> dict[str, Any]:
        """``adaptive.json``: the rounds, why profiling stopped, and per leaf the items profiled and why it stopped."""
        profiled, pool = self.leaf_counts()
        total = float(assessment.leaf_error.sum()) or 1.0
        leaves = []
        for j, leaf in enumerate(self.leaves):
            if profiled[j] >= pool[j]:
                why = STOP_EXHAUSTED.replace("every", "all its")
            else:
                why = self.stop_reason or "running"
            leaves.append({"leaf": chain_str(leaf), "items_profiled": int(profiled[j]), "items_in_pool": int(pool[j]),
                           "selection_share": round(float(assessment.pi[j]), 6),
                           "share_of_expected_distance": round(float(assessment.leaf_error[j]) / total, 6),
                           "stopped_because": why})
        cfg = self.config
        return {
            "method": "adaptive: rounds until the confidence quantile of TV(selection from the profile so far, "
                      "selection from a full-pool profile drawn from the Beta posteriors) <= tv_bound",
            "tv_bound": cfg.tv_bound, "confidence": cfg.confidence, "temperature": cfg.temperature, "w_max": cfg.w_max,
            "accuracy": cfg.accuracy,
            "posterior_draws": cfg.posterior_draws, "seed": self.seed,
            "stop_reason": self.stop_reason,
            "bound_met": self.stop_reason in (STOP_BOUND, STOP_EXHAUSTED),
            "items_in_pool": len(self.items), "items_profiled": int(self.profiled.sum()),
            "items_without_skills": sum(1 for it in self.items if not it["skills"]),
            "tv_quantile": round(assessment.tv_quantile, 6), "tv_mean": round(assessment.tv_mean, 6),
            "rounds": [r.to_json() for r in self.rounds],
            "leaves": leaves,
        }


def _apportion(total: int, need: np.ndarray, room: np.ndarray) -> np.ndarray:
    """``total`` whole items over leaves in proportion to ``need``, none past its ``room`` (largest remainders;
    what a full leaf cannot take goes to the others)."""
    quota = np.zeros(len(need), dtype=np.int64)
    left = int(min(total, room.sum()))
    active = (room > 0) & (need > 0)
    while left > 0 and active.any():
        share = np.where(active, need, 0.0)
        raw = left * share / share.sum()
        add = np.minimum(np.floor(raw).astype(np.int64), (room - quota).astype(np.int64))
        rem = raw - np.floor(raw)
        spare = left - int(add.sum())
        for j in np.argsort(-rem, kind="stable"):
            if spare <= 0:
                break
            if active[j] and quota[j] + add[j] < room[j]:
                add[j] += 1
                spare -= 1
        if add.sum() == 0:
            break
        quota += add
        left -= int(add.sum())
        active &= quota < room
    return quota


__all__ = ["STOP_BOUND", "STOP_EXHAUSTED", "STOP_ROUNDS", "AdaptivePlan", "Assessment", "RoundRecord",
           "selection_distribution", "total_variation"]
