"""Statistics for comparing arms: paired bootstrap confidence intervals and sample sizes.

    from skilldistill.stats import paired_bootstrap
    ci = paired_bootstrap({"demo_eval": arm_matrix}, {"demo_eval": base_matrix})
    ci.delta, ci.low, ci.high            # mean difference and its 95% interval

An arm's results on a benchmark are a matrix ``[seed, problem]`` of per-problem accuracy
(the mean over that problem's samples, so avg@n keeps its n samples inside the unit).
Two arms evaluated on the same problems are compared by a *paired* bootstrap: every
replicate draws the problems with replacement, the same draw for both arms, so the
problem-to-problem variation that both arms share cancels out. When both arms ran the
same seeds, each replicate also draws the seeds with replacement (the same draw for both),
so the interval covers seed-to-seed variation (which selection and training draw) as
well; an arm with one run (the untrained ``base``) contributes its one row to every
replicate. With several benchmarks, each replicate draws problems within each benchmark
and averages the per-benchmark differences with equal weight (the paper's "average"
column), using one seed draw for all of them.

The interval is the percentile interval of the replicate differences; ``p_value`` is the
two-sided bootstrap p-value ``2 * min(P(d* <= 0), P(d* >= 0))``, capped at 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_REPLICATES = 10_000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A difference of means with its bootstrap interval (fractions, not percent)."""

    delta: float
    low: float
    high: float
    level: float
    p_value: float
    replicates: int
    n_problems: int
    n_seeds: int  # seeds resampled (1 when seeds were not resampled)
    seeds_paired: bool

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return asdict(self)


def _as_matrix(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    m = np.asarray(values, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] == 0:
        raise ValueError(f"expected a [seed, problem] matrix, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("per-problem accuracies contain NaN")
    return m


def _seed_weights(rng: np.random.Generator, n_seeds: int, replicates: int) -> np.ndarray:
    """[replicate, seed] weights summing to 1: a resample of the seeds with replacement."""
    if n_seeds == 1:
        return np.ones((replicates, 1))
    counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=replicates)
    return counts / n_seeds


def _problem_means(rng: np.random.Generator, diff_rows: list[np.ndarray], replicates: int) -> np.ndarray:
    """Per replicate and row: the mean of ``row`` over one shared resample of its problems."""
    n = diff_rows[0].shape[0]
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)  # [R, P]
    stacked = np.stack(diff_rows, axis=1)  # [P, rows]
    return counts @ stacked / n  # [R, rows]


def paired_bootstrap(
    arm: Mapping[str, Sequence[Sequence[float]] | np.ndarray],
    baseline: Mapping[str, Sequence[Sequence[float]] | np.ndarray],
    *,
    replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    pair_seeds: bool | None = None,
) -> Interval:
    """Mean of ``arm - baseline`` over benchmarks (equal weight) with a bootstrap interval.

    ``arm`` and ``baseline`` map benchmark -> matrix ``[seed, problem]`` with the problems
    in the same order for both (the caller aligns them by problem id). ``pair_seeds``
    (default: both have the same number of seeds, more than one) resamples seed indices
    jointly for both arms; otherwise each arm's seeds are resampled on their own, and an
    arm with a single row keeps it.
    """
    if not arm or set(arm) != set(baseline):
        raise ValueError(f"arm and baseline must cover the same benchmarks: {sorted(arm)} vs {sorted(baseline)}")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    names = sorted(arm)
    a = {b: _as_matrix(arm[b]) for b in names}
    z = {b: _as_matrix(baseline[b]) for b in names}
    for b in names:
        if a[b].shape[1] != z[b].shape[1]:
            raise ValueError(f"{b}: arm has {a[b].shape[1]} problems, baseline {z[b].shape[1]}")
    sa, sz = a[names[0]].shape[0], z[names[0]].shape[0]
    if any(a[b].shape[0] != sa or z[b].shape[0] != sz for b in names):
        raise ValueError("every benchmark must have the same seeds for one arm")
    if pair_seeds is None:
        pair_seeds = sa == sz and sa > 1
    if pair_seeds and sa != sz:
        raise ValueError(f"paired seeds need equal seed counts ({sa} vs {sz})")

    point = float(np.mean([a[b].mean() - z[b].mean() for b in names]))
    rng = np.random.default_rng(seed)
    reps = np.empty(replicates)
    # Replicates in blocks, so memory stays bounded on benchmarks with thousands of problems.
    block = max(1, min(replicates, 4_000_000 // max(1, max(a[b].shape[1] for b in names))))
    for start in range(0, replicates, block):
        r = min(block, replicates - start)
        wa = _seed_weights(rng, sa, r)
        wz = wa if pair_seeds else _seed_weights(rng, sz, r)
        total = np.zeros(r)
        for b in names:
            # One problem resample per replicate, shared by both arms (the pairing).
            rows = [a[b][i] for i in range(sa)] + [z[b][i] for i in range(sz)]
            means = _problem_means(rng, rows, r)  # [r, sa + sz]
            total += (means[:, :sa] * wa).sum(axis=1) - (means[:, sa:] * wz).sum(axis=1)
        reps[start:start + r] = total / len(names)
    alpha = (1 - level) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha])
    p = min(1.0, 2 * min(float(np.mean(reps <= 0)), float(np.mean(reps >= 0))))
    return Interval(
        delta=point, low=float(low), high=float(high), level=level, p_value=p, replicates=replicates,
        n_problems=sum(a[b].shape[1] for b in names), n_seeds=sa if pair_seeds else max(sa, sz),
        seeds_paired=bool(pair_seeds),
    )


def samples_needed(per_problem: Sequence[float] | Sequence[Sequence[float]], n_samples: int, target_se: float,
                   *, greedy: bool = False) -> dict:
    """Samples per problem so the *sampling* standard error of a benchmark's avg@n is at most
    ``target_se`` (fraction), from the observed per-problem accuracies.

    ``per_problem``: the accuracies ``p_i`` over each problem's ``n_samples`` samples, one row,
    or one row per seed (``[seed][problem]``: the variance is estimated per seed, then averaged,
    so differences between seeds do not count as sampling noise). With the problems fixed,
    avg@n has sampling variance ``sum_i v_i / (n P^2)``, where ``v_i`` is problem i's
    per-sample variance, estimated without bias as ``n / (n - 1) * p_i (1 - p_i)``: that needs
    ``n >= 2``. With one sample per problem ``sampling_se`` and ``samples_needed`` are None
    (every ``p_i`` is 0 or 1, which says nothing about the variance), unless decoding is
    ``greedy``, which has no sampling variance at all. The n that brings the variance to
    ``target_se**2`` is ``sum_i v_i / (P^2 target_se**2)``. The problem set itself (which
    problems the benchmark happens to hold) adds variance no number of samples removes:
    ``problem_se`` is the standard error of the mean over problems.
    """
    rows = np.atleast_2d(np.asarray(per_problem, dtype=float))
    if rows.size == 0:
        raise ValueError("no problems")
    if target_se <= 0:
        raise ValueError("target_se must be positive")
    n_problems = rows.shape[1]
    p = rows.mean(axis=0)
    problem_se = float(np.std(p, ddof=1) / math.sqrt(n_problems)) if n_problems > 1 else 0.0
    out = {"n_problems": n_problems, "n_samples": n_samples, "target_se": target_se, "problem_se": problem_se}
    if greedy:
        return {**out, "sampling_se": 0.0, "samples_needed": 1, "note": "greedy decoding: no sampling variance"}
    if n_samples < 2:
        return {**out, "sampling_se": None, "samples_needed": None,
                "note": "one sample per problem: its sampling variance cannot be estimated (sample n >= 2)"}
    var_sum = float(np.mean(np.sum(rows * (1 - rows), axis=1))) * n_samples / (n_samples - 1)
    sampling_se = math.sqrt(var_sum / (n_samples * n_problems**2))
    needed = math.ceil(var_sum / (n_problems**2 * target_se**2)) if var_sum > 0 else 1
    return {**out, "sampling_se": sampling_se, "samples_needed": max(1, needed), "note": None}


def bootstrap_correlation(x: Sequence[float], y: Sequence[float], *, replicates: int = DEFAULT_REPLICATES,
                          level: float = DEFAULT_LEVEL, seed: int = 0) -> dict:
    """Pearson correlation of ``x`` and ``y`` with a percentile bootstrap interval over pairs."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.size < 3:
        raise ValueError("need at least 3 (x, y) pairs of equal length")

    def corr(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        u = u - u.mean(axis=-1, keepdims=True)
        v = v - v.mean(axis=-1, keepdims=True)
        den = np.sqrt((u * u).sum(axis=-1) * (v * v).sum(axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (u * v).sum(axis=-1) / den

    r = float(corr(xs, ys))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, xs.size, size=(replicates, xs.size))
    reps = corr(xs[idx], ys[idx])
    reps = reps[np.isfinite(reps)]  # a resample of identical x values has no correlation
    alpha = (1 - level) / 2
    low, high = (np.quantile(reps, [alpha, 1 - alpha]) if reps.size else (math.nan, math.nan))
    return {"r": r, "low": float(low), "high": float(high), "level": level, "n": int(xs.size),
            "replicates": int(reps.size)}


__all__ = ["Interval", "bootstrap_correlation", "paired_bootstrap", "samples_needed"]
