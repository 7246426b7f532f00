"""Profiling fidelity on the demo world, where the full-pool profile can be computed: what a
partial profile (stratified samples, adaptive profiling) costs the selection, and the held-out
accuracy skill-plain reaches from it. On the development split, as bench/demo_world.py.

    python bench/demo_profile_fidelity.py                 # 3 seeds, the demo world's defaults
    python bench/demo_profile_fidelity.py --seeds 1 --shares 0.1,0.3 --bounds 0.1

1. builds (or reuses, under ``--out``) the demo's uneven base student, greedy-decodes the whole
   pool once (``--pool`` problems, their true skills): the full-pool profile, one generation
   per problem;
2. for stratified samples of ``--shares`` of the pool (``profile.sample``'s own sampler) and for
   adaptive profiling at ``--bounds`` (``profile.adaptive``'s own rounds, replayed on the
   pool's real answers), the profile of the problems each one would have generated, and the
   total-variation distance of its selection distribution (the skill strategy's, smoothed,
   T = 1, w_max = 1000) from the full profile's;
3. trains skill-plain from the full profile, from adaptive profiling at the first bound and
   from a stratified sample of the same cost, ``--seeds`` seeds each (the demo's training
   settings), and prints their dev accuracy with 95% paired-bootstrap intervals against the
   full profile's arm (problems x seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from demo_world import evaluate, run_arm, select  # noqa: E402

from skilldistill.profile.accuracy import skill_stats  # noqa: E402
from skilldistill.profile.adaptive import AdaptivePlan, total_variation  # noqa: E402
from skilldistill.profile.config import AdaptiveConfig  # noqa: E402
from skilldistill.profile.simulation import profile_selection, simulate_adaptive  # noqa: E402
from skilldistill.profile.stratify import stratified_sample  # noqa: E402
from skilldistill.tree import SkillTree  # noqa: E402

PRIOR = 4.0  # the profile stage's default prior strength


def leaf_accuracy(rows, tree) -> dict[str, float]:
    """Per leaf ("A->b"), the profile's smoothed accuracy, as selection reads it."""
    nodes, overall, _ = skill_stats(rows, tree, prior_strength=PRIOR)
    by = {tuple(n["path"]): n for n in nodes}
    return {"->".join(leaf): (by[leaf]["smoothed_accuracy"] if leaf in by else overall["smoothed_accuracy"])
            for leaf in tree.leaves()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/skilldistill_demo_world")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pool", type=int, default=1500)
    ap.add_argument("--pool-seed", type=int, default=101, help="not the demo's seed (0)")
    ap.add_argument("--per-leaf", type=int, default=15, help="dev problems per leaf")
    ap.add_argument("--shares", default="0.05,0.1,0.2,0.5")
    ap.add_argument("--bounds", default="0.05,0.1")
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-train", action="store_true", help="distances only")
    args = ap.parse_args()

    import torch

    from skilldistill.artifacts import hash_obj
    from skilldistill.demo.generator import generate_corpus, generate_eval_set, skewed_weights
    from skilldistill.demo.student import build_base_student, load_student
    from skilldistill.orchestration.recipe import load_recipe
    from skilldistill.stats import paired_bootstrap

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    demo = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml")
    cfg = demo.demo.student
    base_dir = build_base_student(Path(args.out) / f"base-{hash_obj(cfg.model_dump(mode='json'))[:10]}", seed=0,
                                  config=cfg)
    tree = SkillTree.resolve("demo")
    dev = generate_eval_set(args.per_leaf, seed=0, as_table=False, split="dev")
    pool = generate_corpus(args.pool, seed=args.pool_seed, as_table=False,
                           leaf_weights=skewed_weights(demo.demo.pool_weak_weight))
    model, tok = load_student(base_dir)
    flags, _ = evaluate(model, tok, pool)  # the full profile: one greedy answer per pool problem
    items = [{"id": str(i), "skills": [list(c) for c in r["true_skills"]]} for i, r in enumerate(pool)]
    rows = [{**it, "n_samples": 1, "n_correct": f} for it, f in zip(items, flags, strict=True)]
    leaves = sorted({tuple(c) for it in items for c in it["skills"]})
    select_cfg = AdaptiveConfig()  # the demo's selection: smoothed, T = 1, w_max = 1000
    full = profile_selection(rows, tree, leaves, select_cfg, PRIOR)

    profiles: dict[str, list[dict]] = {"full pool": rows}
    for bound in (float(b) for b in args.bounds.split(",")):
        plan = AdaptivePlan(items, AdaptiveConfig(tv_bound=bound), n_samples=1, prior_strength=PRIOR, tree=tree, seed=0)
        profiles[f"adaptive tv<={bound:g}"] = simulate_adaptive(plan, rows)
    first_adaptive = next(k for k in profiles if k.startswith("adaptive"))
    same_cost = len(profiles[first_adaptive])
    for share in [float(s) for s in args.shares.split(",")]:
        k = int(round(share * len(items)))
        sample, _ = stratified_sample(items, k, seed=0)
        ids = {it["id"] for it in sample}
        profiles[f"stratified {share:g}"] = [r for r in rows if r["id"] in ids]
    sample, _ = stratified_sample(items, same_cost, seed=0)
    ids = {it["id"] for it in sample}
    profiles[f"stratified, adaptive's cost ({same_cost})"] = [r for r in rows if r["id"] in ids]

    print(f"demo world (dev split): pool {len(pool)} problems, {len(leaves)} leaves, base student "
          f"{sum(flags) / len(flags):.3f} on the pool; distance = TV(selection from the profile, from the full profile)")
    print(f"{'profile':<36} {'generations':>11} {'share':>6} {'TV':>7}")
    for name, prof in profiles.items():
        tv = float(total_variation(profile_selection(prof, tree, leaves, select_cfg, PRIOR), full))
        print(f"{name:<36} {len(prof):>11} {len(prof) / len(rows):>6.3f} {tv:>7.4f}")
    if args.no_train:
        return 0

    trained = ["full pool", first_adaptive, f"stratified, adaptive's cost ({same_cost})"]
    tasks = []
    for name in trained:
        acc = leaf_accuracy(profiles[name], tree)
        for seed in range(args.seeds):
            tasks.append({"arm": "skill-plain", "seed": seed, "base": str(base_dir), "rows": dev,
                          "epochs": demo.train.num_train_epochs, "lr": demo.train.learning_rate,
                          "batch": demo.train.per_device_train_batch_size, "scheduler": demo.train.lr_scheduler_type,
                          "lora": None, "out": str(Path(args.out) / "fidelity" / f"{name.replace(' ', '_')}-{seed}"),
                          "chosen": select(pool, "skill-plain", seed, args.budget, acc, 1000.0, 1.0), "profile": name})
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        done = list(ex.map(run_arm, tasks))
    by: dict[str, list[list[int]]] = {name: [] for name in trained}
    for task, d in zip(tasks, done, strict=True):
        by[task["profile"]].append(d["flags"])
    print(f"\nskill-plain on the dev split ({len(dev)} problems x {args.seeds} seeds), by the profile it selected from:")
    for name in trained:
        acc = [sum(f) / len(f) for f in by[name]]
        line = f"{name:<36} {statistics.mean(acc):.3f} (seeds {', '.join(f'{a:.3f}' for a in acc)})"
        if name != "full pool":
            ci = paired_bootstrap({"d": by[name]}, {"d": by["full pool"]})
            line += f" | vs full pool {100 * ci.delta:+.1f} pp [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]"
        print(line)
    print(f"\n{len(tasks)} arm runs in {time.perf_counter() - t0:.0f}s; whole bench {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
