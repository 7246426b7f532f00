"""Profiling fidelity at the paper's scale, by simulation with a known truth: generations spent
against the distance of the selection distribution from the one a full-pool profile gives.

    python bench/profile_fidelity.py                      # 100K items, skill_mix (118 leaves), 3 replicates
    python bench/profile_fidelity.py --pool 20000 --reps 2 --chains runs/math/annotate/skills.parquet

The world (stated, since the curve depends on it):
- the tree: the paper's skill_mix.json (7 top levels, 118 leaves), from ../shared/data;
- the pool: ``--pool`` items; each item carries the chains of an item resampled from
  ``--chains`` (a skills.parquet, e.g. the offline attributor's labels of MATH) when given, else
  1 to 3 leaves (probabilities 0.6/0.3/0.1) drawn with Zipf(1.1) popularity over the leaves;
- the student: per leaf a true accuracy ``sigmoid(N(logit 0.55, 1.2))`` (a 4B student: its
  leaves spread from about 0.1 to 0.95), per item an accuracy ``Beta`` with that mean and
  concentration 2 (items of a leaf differ a lot), ``--n`` samples per item drawn from it.

For each replicate the full-pool profile is simulated once; then stratified samples of several
sizes (the existing ``profile.sample``) and adaptive profiling at several bounds
(``profile.adaptive``) are scored by TV(selection from their profile, selection from the full
profile), the selection being the paper's (T = 1, w_max = 1000, smoothed accuracy). Printed:
generations per method (mean over replicates), as a share of the full pool's, and the distance
(mean and max over replicates); for adaptive also the share of replicates whose distance met the
bound. Pure numpy and the profile stage's own code: no model is run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from skilldistill.profile.adaptive import AdaptivePlan, total_variation  # noqa: E402
from skilldistill.profile.config import AdaptiveConfig  # noqa: E402
from skilldistill.profile.simulation import (  # noqa: E402
    WORLD,
    profile_selection,
    simulate_adaptive,
    simulated_pool,
)
from skilldistill.profile.stratify import stratified_sample  # noqa: E402
from skilldistill.tree import SkillTree  # noqa: E402

TREE = ROOT.parent / "shared" / "data" / "skill_trees" / "skill_mix.json"
PRIOR_STRENGTH = 4.0  # the profile stage's default


def run_adaptive(items, rows, tree, n, bound, accuracy, seed):
    cfg = AdaptiveConfig(tv_bound=bound, accuracy=accuracy)
    plan = AdaptivePlan(items, cfg, n_samples=n, prior_strength=PRIOR_STRENGTH, tree=tree, seed=seed)
    return simulate_adaptive(plan, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=1, help="samples per item (the paper's profile: 1)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="0.01,0.02,0.05,0.1,0.2,0.5", help="stratified sample sizes (share of the pool)")
    ap.add_argument("--bounds", default="0.1,0.05,0.03", help="adaptive tv_bound values")
    ap.add_argument("--chains", default=None, help="skills.parquet whose items' chains are resampled")
    ap.add_argument("--tree", default=str(TREE))
    ap.add_argument("--accuracy", default="smoothed", choices=["smoothed", "raw"],
                    help="the selection's leaf accuracy (the paper recipe: raw)")
    args = ap.parse_args()
    tree = SkillTree.resolve(args.tree)
    sizes = [float(x) for x in args.sizes.split(",")]
    bounds = [float(x) for x in args.bounds.split(",")]
    results: dict[str, list[tuple[int, float, bool]]] = {}
    t0 = time.time()
    select = AdaptiveConfig(accuracy=args.accuracy)  # T = 1, w_max = 1000: the paper's selection
    chain_sets = None
    if args.chains:
        import pyarrow.parquet as pq

        chain_sets = [s for s in pq.read_table(args.chains, columns=["skills"]).column("skills").to_pylist() if s]
    for rep in range(args.reps):
        items, rows = simulated_pool(tree, args.pool, args.n, np.random.default_rng(rep), chain_sets)
        keys = sorted({tuple(c) for it in items for c in it["skills"]})
        full = profile_selection(rows, tree, keys, select, PRIOR_STRENGTH)
        for share in sizes:
            k = int(round(share * len(items)))
            sample, _ = stratified_sample(items, k, seed=rep)
            ids = {it["id"] for it in sample}
            sampled = profile_selection([r for r in rows if r["id"] in ids], tree, keys, select, PRIOR_STRENGTH)
            results.setdefault(f"stratified {share:g}", []).append((k * args.n, float(total_variation(sampled, full)), True))
        for bound in bounds:
            profiled = run_adaptive(items, rows, tree, args.n, bound, args.accuracy, rep)
            tv = float(total_variation(profile_selection(profiled, tree, keys, select, PRIOR_STRENGTH), full))
            results.setdefault(f"adaptive tv<={bound:g}", []).append((len(profiled) * args.n, tv, tv <= bound))
        print(f"replicate {rep + 1}/{args.reps} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    full_gens = args.pool * args.n
    print(f"pool {args.pool} items x {args.n} sample(s), tree {Path(args.tree).name} ({len(keys)} leaves with items), "
          f"{args.reps} replicates, {args.accuracy} accuracy; distance = TV(selection from the profile, selection "
          f"from the full profile)\nworld: {WORLD}")
    print(f"{'method':<22} {'generations':>12} {'share of full':>14} {'TV mean':>9} {'TV max':>8} {'bound met':>10}")
    for name, rs in results.items():
        gens = np.mean([r[0] for r in rs])
        tvs = [r[1] for r in rs]
        met = f"{sum(r[2] for r in rs)}/{len(rs)}" if name.startswith("adaptive") else ""
        print(f"{name:<22} {gens:>12.0f} {gens / full_gens:>14.3f} {np.mean(tvs):>9.4f} {max(tvs):>8.4f} {met:>10}")


if __name__ == "__main__":
    main()
