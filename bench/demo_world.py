"""Is the demo world fit for the method's claim? Build the base student, fine-tune two arms.

    python bench/demo_world.py                      # default world, 2 seeds per arm
    python bench/demo_world.py --seeds 1 --budget 128 --epochs 3 --lr 3e-4 --out /tmp/demo_world

1. builds (or reuses) the uneven base student (``skilldistill.demo.student``);
2. greedy-decodes the held-out eval set (single-skill problems per leaf) and reports the
   base model's per-leaf accuracy;
3. profiles the base on a sample of the training pool (ground-truth skills stand in for
   attribution here), giving per-leaf accuracy;
4. fine-tunes from the base, on the same budget, two arms: ``random`` (uniform sample of
   the pool) and ``skill`` (the paper's rule: leaf weight min(1/acc, w_max), a leaf drawn
   by weight, then a uniform problem of that leaf, duplicates skipped);
5. evaluates each arm on the eval set; prints per-leaf and overall accuracy and wall times.

Grading: ``skilldistill.grading.grade`` (math-verify) when present, else exact match of the
last ``\\boxed{}``. Everything runs on CPU with ``--threads`` torch threads.
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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from skilldistill.demo.generator import SKILLS, generate_corpus, generate_eval_set  # noqa: E402
from skilldistill.demo.student import (  # noqa: E402
    StudentConfig,
    build_base_student,
    greedy_generate,
    load_student,
    sft_train,
    to_messages,
)
from skilldistill.textutil import last_boxed  # noqa: E402

try:  # the project's grader when it exists
    from skilldistill.grading import grade as _grade

    def is_correct(gold: str, response: str) -> bool:
        return bool(_grade(gold, response).correct)

    GRADER = "skilldistill.grading.grade"
except ImportError:  # pragma: no cover
    def is_correct(gold: str, response: str) -> bool:
        got = last_boxed(response)
        return got is not None and got.replace(" ", "") == gold.replace(" ", "")

    GRADER = "exact match of the last \\boxed{}"

LEAVES = [s.name for s in SKILLS]


def per_leaf_accuracy(rows: list[dict], responses: list[str]) -> tuple[dict[str, float], float, dict]:
    hits: dict[str, list[int]] = defaultdict(list)
    flags = []
    for row, resp in zip(rows, responses, strict=True):
        ok = int(is_correct(row["answer"], resp))
        flags.append(ok)
        for chain in row["true_skills"]:
            hits["->".join(chain)].append(ok)
    acc = {leaf: (sum(h) / len(h) if (h := hits.get(leaf)) else float("nan")) for leaf in LEAVES}
    counts = {leaf: len(hits.get(leaf, [])) for leaf in LEAVES}
    return acc, sum(flags) / max(1, len(flags)), counts


def evaluate(model, tok, rows, args) -> tuple[dict[str, float], float, float]:
    t = time.perf_counter()
    responses = greedy_generate(model, tok, [r["question"] for r in rows],
                                max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch)
    acc, overall, _ = per_leaf_accuracy(rows, responses)
    return acc, overall, time.perf_counter() - t


def select_random(pool: list[dict], budget: int, seed: int) -> list[dict]:
    return random.Random(seed).sample(pool, budget)


def select_skill(pool: list[dict], budget: int, seed: int, acc: dict[str, float],
                 w_max: float = 1000.0, temperature: float = 1.0) -> list[dict]:
    """The paper's rule: w = min((1/acc)^T, w_max^T); leaf by weight, then a uniform problem."""
    by_leaf: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(pool):
        for chain in row["true_skills"]:
            by_leaf["->".join(chain)].append(i)
    leaves = [leaf for leaf in LEAVES if by_leaf.get(leaf)]
    weights = []
    for leaf in leaves:
        a = acc.get(leaf, float("nan"))
        a = 0.0 if a != a else a
        weights.append(w_max ** temperature if a <= 0 else min((1 / a) ** temperature, w_max ** temperature))
    rng = random.Random(seed)
    chosen: dict[int, None] = {}
    tries = 0
    while len(chosen) < budget and tries < 100 * budget:
        tries += 1
        leaf = rng.choices(leaves, weights=weights)[0]
        chosen.setdefault(rng.choice(by_leaf[leaf]), None)
    return [pool[i] for i in chosen]


def leaf_share(rows: list[dict]) -> dict[str, int]:
    c = {leaf: 0 for leaf in LEAVES}
    for r in rows:
        for chain in r["true_skills"]:
            c["->".join(chain)] += 1
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/skilldistill_demo_world")
    ap.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds per arm")
    ap.add_argument("--pool", type=int, default=2000, help="training pool size")
    ap.add_argument("--profile-n", type=int, default=480, help="pool problems profiled")
    ap.add_argument("--eval-per-leaf", type=int, default=20)
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--epochs", type=float, default=5.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--smooth", type=float, default=1.0,
                    help="Laplace pseudo-count on profile accuracy before 1/acc (0: the raw rule)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--gen-batch", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--student", default="{}", help="JSON overrides of StudentConfig")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cfg = StudentConfig(threads=args.threads, **json.loads(args.student))
    results: dict = {"args": vars(args), "student": cfg.model_dump(), "grader": GRADER}

    t = time.perf_counter()
    base_dir = build_base_student(out / "base", seed=0, config=cfg, force=args.rebuild)
    results["base_build_s"] = round(time.perf_counter() - t, 1)
    manifest = json.loads((base_dir / "manifest.json").read_text())
    print(f"base student: {base_dir} built in {manifest['wall_time_s']} s "
          f"({manifest['counts']['params'] / 1e6:.2f}M params, {manifest['counts']['steps']} steps); "
          f"this call {results['base_build_s']} s", flush=True)

    eval_rows = generate_eval_set(args.eval_per_leaf, seed=0, as_table=False)
    pool = generate_corpus(args.pool, seed=0, as_table=False)
    model, tok = load_student(base_dir)
    base_acc, base_overall, base_eval_s = evaluate(model, tok, eval_rows, args)
    print(f"base eval: {len(eval_rows)} problems in {base_eval_s:.1f} s, overall {base_overall:.3f}", flush=True)

    t = time.perf_counter()
    profile_rows = pool[: args.profile_n]
    prof_resp = greedy_generate(model, tok, [r["question"] for r in profile_rows],
                                max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch)
    prof_acc, prof_overall, prof_counts = per_leaf_accuracy(profile_rows, prof_resp)
    # (correct + k) / (n + 2k): a leaf with 0 of 20 right gets weight ~22, not w_max = 1000
    sel_acc = {leaf: (prof_acc[leaf] * prof_counts[leaf] + args.smooth) / (prof_counts[leaf] + 2 * args.smooth)
               if prof_counts[leaf] else 0.0 for leaf in LEAVES}
    profile_s = time.perf_counter() - t
    print(f"profile: {len(profile_rows)} pool problems in {profile_s:.1f} s, overall {prof_overall:.3f}", flush=True)
    results.update(base_eval_acc=base_acc, base_eval_overall=base_overall, base_eval_s=round(base_eval_s, 1),
                   profile_acc=prof_acc, profile_counts=prof_counts, profile_overall=prof_overall,
                   profile_s=round(profile_s, 1))

    arms: dict[str, list[dict]] = {"random": [], "skill": []}
    for seed in range(args.seeds):
        for arm in arms:
            t = time.perf_counter()
            if arm == "random":
                chosen = select_random(pool, args.budget, seed)
            else:
                chosen = select_skill(pool, args.budget, seed, sel_acc)
            model, tok = load_student(base_dir)
            conv = [to_messages(r["question"], r["response"]) for r in chosen]
            model, state = sft_train(model, tok, conv, out / "arms" / f"{arm}-{seed}", epochs=args.epochs,
                                     learning_rate=args.lr, batch_size=args.batch, seed=seed,
                                     scheduler="cosine", warmup_ratio=0.1)
            train_s = time.perf_counter() - t
            model.eval()
            acc, overall, eval_s = evaluate(model, tok, eval_rows, args)
            arms[arm].append({"seed": seed, "acc": acc, "overall": overall, "train_s": round(train_s, 1),
                              "eval_s": round(eval_s, 1), "share": leaf_share(chosen)})
            print(f"arm {arm} seed {seed}: overall {overall:.3f}  train {train_s:.1f} s  eval {eval_s:.1f} s",
                  flush=True)
    results["arms"] = arms

    # ---- table
    weak = set(cfg.weak_leaves)
    print(f"\n{'leaf':52s} {'base':>5s} {'prof':>5s} {'n_rand':>6s} {'n_skl':>6s} {'random':>7s} {'skill':>7s}")
    for leaf in LEAVES:
        r = statistics.mean(a["acc"][leaf] for a in arms["random"])
        s = statistics.mean(a["acc"][leaf] for a in arms["skill"])
        nr = statistics.mean(a["share"][leaf] for a in arms["random"])
        ns = statistics.mean(a["share"][leaf] for a in arms["skill"])
        mark = "*" if leaf in weak else " "
        print(f"{mark}{leaf:51s} {base_acc[leaf]:5.2f} {prof_acc[leaf]:5.2f} {nr:6.1f} {ns:6.1f} {r:7.3f} {s:7.3f}")

    def summary(arm: str, leaves: list[str]) -> tuple[float, float]:
        vals = [statistics.mean(a["acc"][leaf] for leaf in leaves) for a in arms[arm]]
        return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

    weak_list = [leaf for leaf in LEAVES if leaf in weak]
    strong_list = [leaf for leaf in LEAVES if leaf not in weak]
    base_w = statistics.mean(base_acc[leaf] for leaf in weak_list)
    base_s = statistics.mean(base_acc[leaf] for leaf in strong_list)
    print(f"\n{'':20s} {'overall':>16s} {'weak leaves':>16s} {'strong leaves':>16s} {'train s':>8s} {'eval s':>7s}")
    print(f"{'base':20s} {base_overall:16.3f} {base_w:16.3f} {base_s:16.3f}")
    for arm in arms:
        o = [a["overall"] for a in arms[arm]]
        om, osd = statistics.mean(o), (statistics.stdev(o) if len(o) > 1 else 0.0)
        wm, wsd = summary(arm, weak_list)
        sm, ssd = summary(arm, strong_list)
        tr = statistics.mean(a["train_s"] for a in arms[arm])
        ev = statistics.mean(a["eval_s"] for a in arms[arm])
        print(f"{arm:20s} {om:9.3f} ± {osd:4.3f} {wm:9.3f} ± {wsd:4.3f} {sm:9.3f} ± {ssd:4.3f} {tr:8.1f} {ev:7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
