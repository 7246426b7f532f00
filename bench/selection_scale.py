"""Selection at scale: synthetic pools of 100K and 1M items over a 120-leaf and a 3,000-leaf tree.

Run::

    python bench/selection_scale.py            # all 8 cases (pool x tree x budget), skill strategy
    python bench/selection_scale.py --strategy skill-quota --pools 100000

For each case a fresh child process runs ``run_select`` end to end (stream the Parquet,
build the leaf index, draw, write selection.parquet / report.json / leaf table /
manifest.json) and prints: wall time of that call, of the draw alone (index built
beforehand), of drawing distribution.png (a fixed cost of matplotlib, independent of the
pool), and the peak resident memory the call added on top of the process after its
imports (VmHWM minus the RSS before the call) in MB and in bytes per pool item,
and the traced peak of the draw alone ("draw MB": the one working copy of the index plus
the selection; it must not grow with the budget beyond the selected ids). Targets (issue 5): 100K/1K
under 1 s, 1M/10K under 20 s, memory per pool item constant and independent of the
budget (no per-draw copies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_tree(n_leaves: int) -> list[tuple[str, ...]]:
    """120 leaves: 7 domains x depth 2 (like skill_mix); 3,000: 10 x 10 x 30 (depth 3)."""
    if n_leaves == 120:
        per = [18, 17, 17, 17, 17, 17, 17]
        return [(f"Domain {d}", f"Skill {d}.{k} with a name of ordinary length") for d, m in enumerate(per) for k in range(m)]
    a, b = 10, 10
    c = n_leaves // (a * b)
    return [(f"Area {i}", f"Topic {i}.{j}", f"Skill {i}.{j}.{k}: a long sentence-like capability name as in EvalTree")
            for i in range(a) for j in range(b) for k in range(c)]


def make_pool(path: Path, n_items: int, leaves: list[tuple[str, ...]], seed: int = 0) -> None:
    """A skills Parquet in the corpus schema, built column-wise (no Python loop per row)."""
    rng = np.random.default_rng(seed)
    n_leaves = len(leaves)
    depth = len(leaves[0])
    # Skewed leaf popularity (some skills are rare), 1-3 chains per item.
    pop = rng.zipf(1.6, size=n_leaves).astype(np.float64)
    pop /= pop.sum()
    k = rng.choice([1, 2, 3], size=n_items, p=[0.6, 0.3, 0.1])
    chain_leaf = rng.choice(n_leaves, size=int(k.sum()), p=pop)
    names = sorted({name for chain in leaves for name in chain})
    name_pos = {nm: i for i, nm in enumerate(names)}
    leaf_names = np.array([[name_pos[nm] for nm in chain] for chain in leaves], dtype=np.int32)
    values = pa.array(names).take(pa.array(leaf_names[chain_leaf].ravel()))
    inner = pa.ListArray.from_arrays(pa.array(np.arange(len(chain_leaf) + 1, dtype=np.int32) * depth), values)
    outer_offsets = np.zeros(n_items + 1, dtype=np.int32)
    np.cumsum(k, out=outer_offsets[1:])
    skills = pa.ListArray.from_arrays(pa.array(outer_offsets), inner)
    ids = pa.array([f"item-{i}" for i in range(n_items)])
    levels = rng.integers(1, 6, size=n_items)
    meta = pa.array([f'{{"level": "Level {v}"}}' for v in levels.tolist()])
    table = pa.table({
        "id": ids,
        "question": pa.array([f"Problem {i}: compute the value." for i in range(n_items)]),
        "response": pa.array(["<think>short synthetic reasoning</think> The answer is $\\boxed{1}$."] * n_items),
        "answer": pa.array(["1"] * n_items),
        "source": pa.array(np.array(["omr", "math", "gsm8k"])[rng.integers(0, 3, size=n_items)]),
        "meta": meta,
        "skills": skills,
    })
    pq.write_table(table, path, row_group_size=65536)


def make_profile(path: Path, leaves: list[tuple[str, ...]], seed: int = 0) -> None:
    rng = np.random.default_rng(seed + 1)
    nodes = [{"path": [], "chain": "", "depth": 0, "is_leaf": False, "graded": 1000, "correct": 600,
              "accuracy": 0.6, "smoothed_accuracy": 0.6, "ci_low": 0.57, "ci_high": 0.63}]
    for chain in leaves:
        graded = int(rng.integers(0, 40))
        correct = int(rng.binomial(graded, rng.uniform(0.05, 0.95))) if graded else 0
        acc = correct / graded if graded else None
        smoothed = (correct + 0.6 * 4) / (graded + 4)
        nodes.append({"path": list(chain), "chain": "->".join(chain), "depth": len(chain), "is_leaf": True,
                      "graded": graded, "correct": correct, "accuracy": acc, "smoothed_accuracy": smoothed,
                      "ci_low": 0.0, "ci_high": 1.0})
    path.write_text(json.dumps({"nodes": nodes}), encoding="utf-8")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(pool: str, profile: str, budget: int, strategy: str, out: str) -> None:
    """One case in a fresh process, so peak memory is that case's alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (import cost is not the selection's)

    from skilldistill.select.config import SelectConfig
    from skilldistill.select.index import LeafIndex
    from skilldistill.select.plot import plot_distribution
    from skilldistill.select.stage import run_select
    from skilldistill.select.strategies.quota import draw_quota
    from skilldistill.select.strategies.skill import draw_skill
    from skilldistill.select.weights import leaf_accuracies, leaf_weights

    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    res = run_select(pool, out, SelectConfig(strategy=strategy, budget=budget, seed=0), profile_json=profile,
                     progress=False, force=True, plot=False)
    wall = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    t1 = time.perf_counter()
    plot_distribution(res.report["leaf_table"], Path(out) / "distribution.png")
    plot_s = time.perf_counter() - t1
    # The draw alone, on an index built beforehand.
    table = pq.read_table(pool, columns=["skills"])
    index = LeafIndex.from_skills(table.column("skills"))
    prof = json.loads(Path(profile).read_text())
    w = leaf_weights(leaf_accuracies(index.keys, prof).accuracy)
    fn = draw_skill if strategy == "skill" else draw_quota
    t2 = time.perf_counter()
    d = fn(index, w, budget, np.random.default_rng(0))
    draw_s = time.perf_counter() - t2
    # Memory of the draw itself (numpy allocations are traced): one copy of the index, no per-draw copies.
    import tracemalloc

    tracemalloc.start()
    fn(index, w, budget, np.random.default_rng(0))
    draw_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"wall_s": wall, "plot_s": plot_s, "draw_s": draw_s, "selected": res.n_selected,
                      "drawn": len(d.items), "peak_added_mb": (peak - rss0) / 2**20, "nnz": int(len(index.items)),
                      "draw_peak_mb": draw_peak / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--leaves", type=int, nargs="+", default=[120, 3000])
    ap.add_argument("--budgets", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--strategy", default="skill", choices=["skill", "skill-quota"])
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        pool, profile, budget, strategy, out = args.child
        child(pool, profile, int(budget), strategy, out)
        return
    print(f"strategy {args.strategy}; times in seconds; memory = peak RSS added by run_select")
    header = (f"{'pool':>9} {'leaves':>6} {'budget':>6} {'run_select':>10} {'draw':>7} {'png':>6} "
              f"{'selected':>8} {'peak MB':>8} {'B/item':>7} {'draw MB':>7} target (run_select)")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for n_leaves in args.leaves:
            leaves = make_tree(n_leaves)
            profile = Path(tmp) / f"profile_{n_leaves}.json"
            make_profile(profile, leaves)
            for n_items in args.pools:
                pool = Path(tmp) / f"pool_{n_items}_{n_leaves}.parquet"
                make_pool(pool, n_items, leaves)
                for budget in args.budgets:
                    out = Path(tmp) / f"out_{n_items}_{n_leaves}_{budget}"
                    cmd = [sys.executable, __file__, "--child", str(pool), str(profile), str(budget), args.strategy, str(out)]
                    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    r = json.loads(res.stdout.strip().splitlines()[-1])
                    target = ""
                    if n_items == 100_000 and budget == 1_000:
                        target = f"< 1 s: {'ok' if r['wall_s'] < 1 else 'MISSED'}"
                    elif n_items == 1_000_000 and budget == 10_000:
                        target = f"< 20 s: {'ok' if r['wall_s'] < 20 else 'MISSED'}"
                    print(f"{n_items:>9} {n_leaves:>6} {budget:>6} {r['wall_s']:>10.3f} {r['draw_s']:>7.3f} {r['plot_s']:>6.2f} "
                          f"{r['selected']:>8} {r['peak_added_mb']:>8.1f} {r['peak_added_mb'] * 2**20 / n_items:>7.0f} {r['draw_peak_mb']:>7.1f} {target}",
                          flush=True)
                pool.unlink()


if __name__ == "__main__":
    main()
