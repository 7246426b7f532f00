"""Is the demo world fit for the method's claim? Tune it here, on the development split.

    python bench/demo_world.py                                   # the default world, 3 seeds, 4 arms
    python bench/demo_world.py --lr 3e-4 --epochs 3 --budget 256 --jobs 2
    python bench/demo_world.py --student '{"weak_weight": 0.02}' --arms random-plain,skill-plain

Settings of the demo are chosen here, never on the held-out set the demo prints: problems
are split by hash into train / dev / eval (docs/demo.md), this script evaluates on ``dev``
and draws its pools with other seeds than the demo's. It

1. builds (or reuses, cached by config under ``--out``) the uneven base student;
2. greedy-decodes the dev set (``--per-leaf`` single-skill problems per leaf) with the base;
3. profiles the base on a pool (ground-truth skills stand in for attribution; accuracy
   smoothed as (correct + 1) / (n + 2) before the paper's rule);
4. fine-tunes each arm from the base on the same budget, ``--seeds`` times: selection
   ``random`` (uniform over the pool) or ``skill`` (leaf weight min(1/acc, w_max), a leaf by
   weight, then a uniform pool problem of it, duplicates skipped), format ``plain`` or
   ``skillaware`` (the ``Skills:`` plan first);
5. prints per-leaf accuracy, weak / other leaves, and each arm against random-plain and
   against the base with 95% paired-bootstrap intervals (problems x seeds).

Arm runs go ``--jobs`` at a time, each in its own process with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARMS = ("random-plain", "random-skillaware", "skill-plain", "skill-skillaware")


def _leaves() -> list[str]:
    from skilldistill.demo.generator import SKILLS

    return [s.name for s in SKILLS]


def evaluate(model, tok, rows, max_new_tokens=120) -> tuple[list[int], dict[str, float]]:
    from skilldistill.demo.student import greedy_generate
    from skilldistill.grading import grade

    resp = greedy_generate(model, tok, [r["question"] for r in rows], max_new_tokens=max_new_tokens, batch_size=96)
    flags = [int(bool(grade(r["answer"], t).correct)) for r, t in zip(rows, resp, strict=True)]
    hits: dict[str, list[int]] = defaultdict(list)
    for r, f in zip(rows, flags, strict=True):
        for c in r["true_skills"]:
            hits["->".join(c)].append(f)
    return flags, {leaf: (sum(hits[leaf]) / len(hits[leaf]) if hits[leaf] else float("nan")) for leaf in _leaves()}


def select(pool, arm: str, seed: int, budget: int, sel_acc: dict[str, float], w_max: float, temperature: float):
    rng = random.Random(seed)
    if arm.startswith("random"):
        return rng.sample(pool, budget)
    by_leaf: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(pool):
        for c in r["true_skills"]:
            by_leaf["->".join(c)].append(i)
    leaves = [leaf for leaf in _leaves() if by_leaf[leaf]]
    weights = [min((1 / sel_acc[leaf]) ** temperature, w_max ** temperature) for leaf in leaves]
    chosen: dict[int, None] = {}
    while len(chosen) < budget:
        leaf = rng.choices(leaves, weights=weights)[0]
        chosen.setdefault(rng.choice(by_leaf[leaf]), None)
    return [pool[i] for i in chosen]


def run_arm(task: dict) -> dict:
    import torch

    from skilldistill.demo.student import load_student, sft_train, to_messages
    from skilldistill.format.config import ExampleFormat
    from skilldistill.format.examples import assistant_target

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    chosen = task["chosen"]
    model, tok = load_student(task["base"])
    fmt = ExampleFormat(style="skill-aware", instruction=None)
    conv = [to_messages(r["question"], r["response"] if task["arm"].endswith("plain")
                        else assistant_target(r["response"], [tuple(c) for c in r["true_skills"]], fmt)) for r in chosen]
    model, _ = sft_train(model, tok, conv, Path(task["out"]), epochs=task["epochs"], learning_rate=task["lr"],
                         batch_size=task["batch"], seed=task["seed"], scheduler=task["scheduler"], warmup_ratio=0.1,
                         max_length=384, lora=task["lora"])
    model.eval()
    flags, acc = evaluate(model, tok, task["rows"])
    share: dict[str, int] = defaultdict(int)
    for r in chosen:
        for c in r["true_skills"]:
            share["->".join(c)] += 1
    return {"arm": task["arm"], "seed": task["seed"], "flags": flags, "acc": acc, "share": dict(share),
            "wall_s": time.perf_counter() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/skilldistill_demo_world")
    ap.add_argument("--student", default="{}", help="JSON overrides of StudentConfig")
    ap.add_argument("--base", default=None, help="use this student folder instead of building one")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--pool", type=int, default=1500)
    ap.add_argument("--pool-seed", type=int, default=101, help="not the demo's seed (0)")
    ap.add_argument("--pool-weak-weight", type=float, default=1.0,
                    help="a weak leaf's share of the pool relative to a strong one (1: uniform)")
    ap.add_argument("--per-leaf", type=int, default=15, help="dev problems per leaf")
    ap.add_argument("--dev-seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--scheduler", default="cosine")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--w-max", type=float, default=1000.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--lora", default=None, help='LoRA instead of full fine-tuning: JSON LoraConfig fields, e.g. {"r": 16, "lora_alpha": 32}')
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from skilldistill.demo.generator import generate_corpus, generate_eval_set
    from skilldistill.demo.student import build_base_student, load_student
    from skilldistill.demo.student_config import StudentConfig
    from skilldistill.stats import paired_bootstrap

    torch.set_num_threads(1)
    out = Path(args.out)
    cfg = StudentConfig(**json.loads(args.student))
    if args.base:
        base_dir = Path(args.base)
    else:
        from skilldistill.artifacts import hash_obj

        t = time.perf_counter()
        base_dir = build_base_student(out / f"base-{hash_obj(cfg.model_dump(mode='json'))[:10]}", seed=0, config=cfg)
        print(f"base student {base_dir} ({time.perf_counter() - t:.0f}s this call)", flush=True)
    weak = set(json.loads((base_dir / "base_training.json").read_text())["weak_leaves"])
    leaves = _leaves()
    rows = generate_eval_set(args.per_leaf, seed=args.dev_seed, as_table=False, split="dev")
    from skilldistill.demo.generator import skewed_weights

    pool = generate_corpus(args.pool, seed=args.pool_seed, as_table=False,
                           leaf_weights=None if args.pool_weak_weight == 1.0 else skewed_weights(args.pool_weak_weight))
    model, tok = load_student(base_dir)
    base_flags, base_acc = evaluate(model, tok, rows)
    _, pool_acc = evaluate(model, tok, pool)
    counts: dict[str, int] = defaultdict(int)
    for r in pool:
        for c in r["true_skills"]:
            counts["->".join(c)] += 1
    sel_acc = {leaf: (pool_acc[leaf] * counts[leaf] + 1) / (counts[leaf] + 2) for leaf in leaves}
    print(f"dev set {len(rows)} problems; base {sum(base_flags) / len(base_flags):.3f}", flush=True)

    tasks = []
    for arm in args.arms.split(","):
        for seed in range(args.seeds):
            tasks.append({"arm": arm, "seed": seed, "base": str(base_dir), "rows": rows, "epochs": args.epochs,
                          "lr": args.lr, "batch": args.batch, "scheduler": args.scheduler,
                          "lora": json.loads(args.lora) if args.lora else None,
                          "out": str(out / "arms" / f"{arm}-{seed}"),
                          "chosen": select(pool, arm, seed, args.budget, sel_acc, args.w_max, args.temperature)})
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        done = list(ex.map(run_arm, tasks))
    wall = time.perf_counter() - t0
    res: dict[str, list[dict]] = defaultdict(list)
    for d in done:
        res[d["arm"]].append(d)

    wl = [leaf for leaf in leaves if leaf in weak]
    sl = [leaf for leaf in leaves if leaf not in weak]
    print(f"\n{'leaf':48s} {'base':>5s} " + " ".join(f"{a:>22s}" for a in res))
    for leaf in leaves:
        cells = [f"{statistics.mean(x['acc'][leaf] for x in res[a]):5.2f} n={statistics.mean(x['share'].get(leaf, 0) for x in res[a]):5.1f}"
                 for a in res]
        print(f"{'*' if leaf in weak else ' '}{leaf:47s} {base_acc[leaf]:5.2f} " + " ".join(f"{c:>22s}" for c in cells))
    bw = statistics.mean(base_acc[leaf] for leaf in wl)
    bs = statistics.mean(base_acc[leaf] for leaf in sl)
    print(f"\nbase: overall {sum(base_flags) / len(base_flags):.3f}, weak {bw:.3f}, other {bs:.3f}")
    summary = {}
    for a, runs in res.items():
        overall = [sum(x["flags"]) / len(x["flags"]) for x in runs]
        w = statistics.mean(statistics.mean(x["acc"][leaf] for leaf in wl) for x in runs)
        s = statistics.mean(statistics.mean(x["acc"][leaf] for leaf in sl) for x in runs)
        vs_base = paired_bootstrap({"d": [x["flags"] for x in runs]}, {"d": [base_flags]})
        line = (f"{a:18s} overall {statistics.mean(overall):.3f} (seeds {', '.join(f'{v:.3f}' for v in overall)}) "
                f"weak {w - bw:+.3f} other {s - bs:+.3f} | vs base {100 * vs_base.delta:+.1f} "
                f"[{100 * vs_base.low:+.1f}, {100 * vs_base.high:+.1f}]")
        if "random-plain" in res and a != "random-plain":
            ci = paired_bootstrap({"d": [x["flags"] for x in runs]}, {"d": [x["flags"] for x in res["random-plain"]]})
            line += f" | vs random-plain {100 * ci.delta:+.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]"
        print(line)
        summary[a] = {"overall": overall, "weak_gain": w - bw, "other_gain": s - bs, "vs_base": vs_base.as_dict()}
    print(f"\n{len(tasks)} arm runs in {wall:.0f}s ({args.jobs} at a time)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "student": cfg.model_dump(mode="json"),
                                               "base_acc": base_acc, "summary": summary,
                                               "per_leaf": {a: [x["acc"] for x in r] for a, r in res.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
