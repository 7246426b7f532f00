"""The paired bootstrap against distributions worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skilldistill.stats import bootstrap_correlation, paired_bootstrap, samples_needed


def test_two_problems_one_seed_matches_the_exact_bootstrap_distribution():
    # Differences [1, 0]: a resample of 2 problems has mean 0, 1/2 or 1 with
    # probabilities 1/4, 1/2, 1/4. So the 95% interval is [0, 1], P(d* <= 0) = 1/4 and
    # the two-sided p-value is 1/2.
    ci = paired_bootstrap({"b": [[1, 0]]}, {"b": [[0, 0]]}, replicates=40_000)
    assert ci.delta == 0.5
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert ci.p_value == pytest.approx(0.5, abs=0.015)
    assert not ci.significant
    assert ci.n_seeds == 1 and not ci.seeds_paired


def test_four_problems_binomial_case_gives_the_hand_computed_quantiles_and_p_value():
    # Differences [1, 1, 1, 0]: the resampled mean is Binomial(4, 3/4) / 4, whose CDF is
    # 1/256, 13/256, 67/256, 175/256, 1 at 0, 1/4, 1/2, 3/4, 1. The 2.5% quantile is
    # therefore 1/4 and the 97.5% quantile 1; p = 2 * P(d* <= 0) = 2/256.
    arm = {"b": [[1, 1, 1, 0]]}
    base = {"b": [[0, 0, 0, 0]]}
    ci = paired_bootstrap(arm, base, replicates=60_000)
    assert ci.delta == 0.75
    assert ci.low == 0.25 and ci.high == 1.0
    assert ci.p_value == pytest.approx(2 / 256, abs=0.003)
    assert ci.significant


def test_seed_resampling_carries_seed_to_seed_variation():
    # Seed 0 wins every problem, seed 1 none; problem resampling alone cannot move a
    # seed's mean, so the whole spread comes from drawing seeds: {s0, s0} -> 1,
    # {s0, s1} -> 1/2, {s1, s1} -> 0 with probabilities 1/4, 1/2, 1/4.
    arm = {"b": [[1, 1], [0, 0]]}
    base = {"b": [[0, 0], [0, 0]]}
    ci = paired_bootstrap(arm, base, replicates=40_000)
    assert ci.seeds_paired and ci.n_seeds == 2
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert ci.p_value == pytest.approx(0.5, abs=0.015)


def test_pairing_problems_cancels_shared_difficulty():
    # The arm solves exactly what the baseline solves plus 10 more of 200 problems: the
    # paired difference is +5 pp on every resample of problems that keeps those 10 in
    # proportion, so the interval is narrow and excludes 0; an unpaired comparison of
    # the two accuracies (about 50% each) would have a standard error near 5 pp.
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.5).astype(float)
    arm = base.copy()
    arm[np.flatnonzero(base == 0)[:10]] = 1.0
    ci = paired_bootstrap({"b": arm}, {"b": base})
    assert ci.delta == pytest.approx(0.05)
    assert ci.low > 0.02 and ci.high < 0.085
    assert ci.significant


def test_average_over_benchmarks_weights_each_benchmark_equally():
    # +1 on a 2-problem benchmark and 0 on a 100-problem one: the average is +0.5.
    ci = paired_bootstrap({"small": [[1, 1]], "big": [[0] * 100]}, {"small": [[0, 0]], "big": [[0] * 100]})
    assert ci.delta == 0.5
    assert ci.low == ci.high == 0.5  # neither benchmark varies under resampling
    assert ci.n_problems == 102


def test_single_run_baseline_against_seeded_arm():
    arm = {"b": [[1, 0, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1]]}
    base = {"b": [[0, 0, 1, 0]]}
    ci = paired_bootstrap(arm, base, replicates=2000)
    assert not ci.seeds_paired and ci.n_seeds == 3
    assert ci.delta == pytest.approx(np.mean(arm["b"]) - 0.25)
    assert ci.low <= ci.delta <= ci.high


def test_same_seed_same_interval():
    arm, base = {"b": [[1, 0, 1, 0, 1]]}, {"b": [[0, 0, 1, 1, 0]]}
    assert paired_bootstrap(arm, base, seed=3) == paired_bootstrap(arm, base, seed=3)


@pytest.mark.parametrize("bad", [
    ({"b": [[1, 0]]}, {"b": [[1, 0, 1]]}),          # different problem counts
    ({"b": [[1, 0]]}, {"c": [[1, 0]]}),             # different benchmarks
    ({"b": [[1, float("nan")]]}, {"b": [[1, 0]]}),  # a missing verdict
])
def test_misaligned_inputs_are_refused(bad):
    with pytest.raises(ValueError):
        paired_bootstrap(*bad)


def test_samples_needed_for_a_target_standard_error():
    # 30 problems observed at p = 0.5 over 8 samples: each problem's per-sample variance,
    # estimated without bias, is 8/7 * 0.25 = 2/7; their sum 60/7. Sampling variance of avg@n:
    # (60/7) / (900 n); for SE 0.01, n = (60/7) / (900 * 1e-4) = 95.2 -> 96.
    out = samples_needed([0.5] * 30, n_samples=8, target_se=0.01)
    assert out["samples_needed"] == 96
    assert out["sampling_se"] == pytest.approx(math.sqrt((60 / 7) / (900 * 8)))
    assert out["problem_se"] == 0.0 and out["note"] is None
    # one row per seed: the variance is estimated per seed, then averaged (seed 2's problems
    # at 0 and 1 have none), so the difference between the seeds is not sampling noise
    two = samples_needed([[0.5] * 30, [0.0] * 15 + [1.0] * 15], n_samples=8, target_se=0.01)
    assert two["samples_needed"] == math.ceil((30 / 7) / (900 * 1e-4))  # 47.6 -> 48
    # one sample per problem: every p is 0 or 1, which says nothing about the variance
    one = samples_needed([0.0, 1.0, 1.0], n_samples=1, target_se=0.01)
    assert one["samples_needed"] is None and one["sampling_se"] is None
    assert one["note"].startswith("one sample per problem")
    # greedy decoding has no sampling variance: one sample is all there is to take
    greedy = samples_needed([0.0, 1.0, 1.0], n_samples=1, target_se=0.01, greedy=True)
    assert greedy["samples_needed"] == 1 and greedy["sampling_se"] == 0.0


def test_bootstrap_correlation_of_a_perfect_line():
    out = bootstrap_correlation([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12], replicates=500)
    assert out["r"] == pytest.approx(1.0)
    assert out["low"] == pytest.approx(1.0) and out["high"] == pytest.approx(1.0)
