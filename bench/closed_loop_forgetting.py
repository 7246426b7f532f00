"""The closed loop's forgetting, on the development split: which lever to ship?

    python bench/closed_loop_forgetting.py                     # 3 seeds, the demo's closed-loop arm and two levers
    python bench/closed_loop_forgetting.py --lr-scale 0.3 --seeds 0,1,2 --out runs/bench-forgetting

The demo's closed-loop arm (skill-skillaware in 2 rounds of 128, re-profiled on 600 pool items
in between) finished below the one-shot arm: its round-1 model forgot strong leaves, so round 2
spread its items over them too (docs/demo.md). Two levers are tried here, each as an arm of the
demo recipe beside the shipped closed loop and the one-shot arm, same seeds, same budget:

- ``closed-loop-replay``: ``loop.replay: true`` (round 2 trains on both slices);
- ``closed-loop-lr<s>``: ``loop.later_rounds_lr_scale: s`` (round 2 at s x the learning rate);
- ``closed-loop-replay-lr<s>``: both.

Everything is evaluated on the demo's **development** split (``generate_eval_set(split="dev")``:
problems disjoint from the held-out set by hash), never on the held-out set the demo prints.
It prints each arm against the one-shot arm (95% paired bootstrap over problems and seeds) and
each arm's mean per-leaf gain over the base student on the weak and the other leaves.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
ONE_SHOT = "skill-skillaware"


def dev_set(path: Path, per_leaf: int, seed: int) -> Path:
    """The development split's single-skill problems with their true skills as ``skills``."""
    from skilldistill.artifacts import write_parquet
    from skilldistill.demo.generator import generate_eval_set

    table = generate_eval_set(per_leaf, seed, split="dev")
    write_parquet(path, table.append_column("skills", table.column("true_skills")))
    return path


def arms(lr_scale: float) -> list[dict]:
    loop = {"name": "closed-loop", "rounds": 2, "select": {"strategy": "skill"}, "format": {"style": "skill-aware"}}
    return [
        {"name": ONE_SHOT, "select": {"strategy": "skill"}, "format": {"style": "skill-aware"}},
        loop,
        {**loop, "name": "closed-loop-replay", "loop": {"replay": True}},
        {**loop, "name": f"closed-loop-lr{lr_scale:g}", "loop": {"later_rounds_lr_scale": lr_scale}},
        {**loop, "name": f"closed-loop-replay-lr{lr_scale:g}", "loop": {"replay": True, "later_rounds_lr_scale": lr_scale}},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-closed-loop-forgetting")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lr-scale", type=float, default=0.3)
    ap.add_argument("--per-leaf", type=int, default=15, help="development problems per leaf (as bench/demo_world.py)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    from skilldistill.orchestration.pipeline import run_recipe
    from skilldistill.orchestration.recipe import load_recipe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = dev_set(out / "dev.parquet", args.per_leaf, seed=0)  # bench/demo_world.py's development set
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", [
        f"arms={json.dumps(arms(args.lr_scale))}", f"seeds={json.dumps(seeds)}", f"jobs={args.jobs}",
        "loop.profile_sample=600", f"report.baseline={ONE_SHOT}", "report.method=closed-loop",
        f"report.one_shot={ONE_SHOT}", "evaluate.benchmarks=[demo_dev]",
        f"evaluate.files={{demo_dev: {dev}}}", f"evaluate.skills={{demo_dev: {dev}}}",
    ])
    t0 = time.time()
    pipe = run_recipe(recipe, run_dir=out / "run", show_progress=False)
    summary = pipe.summary()
    print(f"\n{len(seeds)} seeds, development split ({args.per_leaf} problems per leaf), "
          f"{time.time() - t0:.0f} s")
    print_table(summary)


def print_table(summary: dict) -> None:
    table = summary["benchmarks"]["arms"]
    gains = (summary.get("weak_skill_gains") or {}).get("by_arm", {})
    print(f"{'arm':<26}{'dev acc':>9}{'vs one-shot (pp, 95% CI)':>30}{'weak leaves':>13}{'other leaves':>14}")
    for name, row in table.items():
        cell = row["average"]
        ci = cell.get("ci")
        vs = f"{100 * ci['delta']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]" if ci else "-"
        g = gains.get(name, {})
        weak = f"{100 * g['weak']:+.1f}" if g.get("weak") is not None else "-"
        other = f"{100 * g['strong']:+.1f}" if g.get("strong") is not None else "-"
        print(f"{name:<26}{100 * cell['mean']:>8.1f}%{vs:>30}{weak:>13}{other:>14}")
    print("weak / other leaves: mean per-leaf gain over the base student (pp)")


if __name__ == "__main__":
    main()
