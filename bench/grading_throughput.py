"""Grading throughput: one worker process vs all cores, side by side, on real data.

    python bench/grading_throughput.py                 # 5,000 MATH-test solutions x 2 gold columns
    python bench/grading_throughput.py --limit 1000 --processes 8

Pairs: every MATH test solution (human step-by-step, answer in ``\\boxed{}``) graded
against (a) its own gold answer and (b) the gold answer of another problem (a seeded
shuffle), so both the "correct" path (often an exact text match) and the "wrong" path
(a full math-verify parse and symbolic comparison) are timed. Each configuration runs
the whole set through :func:`skilldistill.grading.grade_many` (pool start-up included),
prints answers/s, the speed-up, and the correctness rates (own >= 99%, shuffled <= 2% is
the grader's acceptance bar).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from skilldistill.grading import extract_final_answer, grade_many

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_pairs(limit: int | None, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    path = DATA / "corpora" / "math_test" / "test.jsonl"
    if not path.exists():
        sys.exit(f"real data not found at {path} (shared/ must sit beside the checkout)")
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    if limit:
        rows = rows[:limit]
    solutions = [r["solution"] for r in rows]
    golds = [extract_final_answer(s)[0] for s in solutions]
    perm = list(range(len(golds)))
    random.Random(seed).shuffle(perm)
    return {"own": (golds, solutions), "shuffled": ([golds[i] for i in perm], solutions)}


def run(pairs: dict[str, tuple[list[str], list[str]]], processes: int) -> dict:
    golds = [g for gs, _ in pairs.values() for g in gs]
    responses = [r for _, rs in pairs.values() for r in rs]
    t0 = time.perf_counter()
    results = grade_many(golds, responses, processes=processes, timeout_s=30)
    wall = time.perf_counter() - t0
    out = {"processes": processes, "pairs": len(golds), "wall_s": round(wall, 2), "answers_per_s": round(len(golds) / wall, 1)}
    at = 0
    for name, (gs, _) in pairs.items():
        chunk = results[at : at + len(gs)]
        at += len(gs)
        out[f"{name}_correct_rate"] = round(sum(r.correct for r in chunk) / len(chunk), 4)
    out["errors"] = sum(r.error is not None for r in results)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="Use the first N MATH-test problems (default: all 5,000).")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="Worker count of the parallel run (default: all cores).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    pairs = load_pairs(args.limit, args.seed)
    n = sum(len(g) for g, _ in pairs.values())
    print(f"grading {n} real (solution, gold answer) pairs: {len(pairs['own'][0])} own + {len(pairs['shuffled'][0])} shuffled")
    single = run(pairs, 1)
    multi = run(pairs, args.processes)
    print(f"{'':<22}{'1 process':>14}{f'{args.processes} processes':>16}")
    for key in ("wall_s", "answers_per_s", "own_correct_rate", "shuffled_correct_rate", "errors"):
        print(f"{key:<22}{single[key]:>14}{multi[key]:>16}")
    print(f"speed-up: {single['wall_s'] / multi['wall_s']:.2f}x with {args.processes} processes ({os.cpu_count()} cores visible)")
    print(json.dumps({"single": single, "parallel": multi}))


if __name__ == "__main__":
    main()
