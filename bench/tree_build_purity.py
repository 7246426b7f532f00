"""How pure is the top level of a tree induced from MATH, against MATH's 7 subjects?

    python bench/tree_build_purity.py --base-url http://127.0.0.1:8000/v1 --model smollm2 --items 150

Runs ``skilldistill.tree_build.run_tree_build`` (``skilldistill tree build``) on a seeded sample of
the MATH test set (problem + human solution; ../shared/data beside the checkout) against any
OpenAI-compatible server, then compares each item's induced top-level node(s) with its MATH
subject (``type``). Prints, side by side in one run:

- purity: for each induced top-level node, the share of its items from its majority subject,
  weighted by the node's items (an item under two top-level nodes counts in both);
- the same purity with the subjects shuffled over the same items (mean of 20 shuffles): what
  these node sizes give by chance;
- the majority-subject share (the purity of one node holding everything);
- inverse purity: for each subject, the share of its items in its most common node, weighted.

Output goes to --out (default a temp dir); rerunning with the same --out reuses the answers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MATH = ROOT.parent / "shared" / "data" / "corpora" / "math_test" / "test.jsonl"


def write_math_corpus(path: Path) -> dict[str, str]:
    """The MATH test set as a corpus Parquet; returns id -> subject."""
    rows = [json.loads(line) for line in MATH.open(encoding="utf-8")]
    ids = [f"math-test-{r['idx']}" for r in rows]
    pq.write_table(pa.table({"id": ids, "question": [r["problem"] for r in rows],
                             "response": [r["solution"] for r in rows],
                             "meta": [json.dumps({"type": r["type"], "level": r["level"]}) for r in rows]}), path)
    return dict(zip(ids, (r["type"] for r in rows), strict=True))


def purity(nodes: dict[str, list[str]]) -> float:
    """Weighted purity of ``nodes`` (node -> the subjects of its items)."""
    total = sum(len(s) for s in nodes.values())
    return sum(collections.Counter(s).most_common(1)[0][1] for s in nodes.values() if s) / total if total else 0.0


def scores(items: list[dict], subject: dict[str, str], seed: int = 0) -> dict:
    placed = [(r["id"], sorted({n.split("->")[0] for n in r["nodes"]})) for r in items if r["nodes"]]
    nodes: dict[str, list[str]] = collections.defaultdict(list)
    by_subject: dict[str, list[str]] = collections.defaultdict(list)
    for item_id, tops in placed:
        for t in tops:
            nodes[t].append(subject[item_id])
            by_subject[subject[item_id]].append(t)
    rng = random.Random(seed)
    shuffled = []
    for _ in range(20):
        subjects = [subject[i] for i, _ in placed]
        rng.shuffle(subjects)
        fake: dict[str, list[str]] = collections.defaultdict(list)
        for (_, tops), s in zip(placed, subjects, strict=True):
            for t in tops:
                fake[t].append(s)
        shuffled.append(purity(fake))
    counts = collections.Counter(subject[i] for i, _ in placed)
    return {
        "items": len(items),
        "items_placed": len(placed),
        "top_level_nodes": len(nodes),
        "top_level_per_item": round(sum(len(t) for _, t in placed) / len(placed), 3) if placed else 0.0,
        "purity": round(purity(nodes), 4),
        "purity_shuffled_subjects": round(sum(shuffled) / len(shuffled), 4),
        "majority_subject_share": round(counts.most_common(1)[0][1] / len(placed), 4) if placed else 0.0,
        "inverse_purity": round(purity(by_subject), 4),
        "nodes": {t: dict(collections.Counter(s).most_common()) for t, s in sorted(nodes.items(), key=lambda kv: -len(kv[1]))},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", required=True, help="served model name")
    ap.add_argument("--items", type=int, default=150, help="MATH problems sampled (seeded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-chars", type=int, default=1500, help="characters of problem and of solution shown")
    ap.add_argument("--max-children", type=int, default=12)
    ap.add_argument("--merge-threshold", type=float, default=0.85)
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from skilldistill.llm.base import BackendConfig
    from skilldistill.tree_build import TreeBuildConfig, run_tree_build

    out = args.out or Path(tempfile.mkdtemp(prefix="tree_build_purity_"))
    out.mkdir(parents=True, exist_ok=True)
    subject = write_math_corpus(out / "corpus.parquet")
    cfg = TreeBuildConfig(
        llm=BackendConfig(kind="openai", model=args.model, base_urls=[args.base_url], max_concurrency=args.concurrency),
        items=args.items, seed=args.seed, max_tokens=args.max_tokens, max_chars=args.max_chars,
        max_children=args.max_children, merge_threshold=args.merge_threshold, min_count=args.min_count,
        max_failed_share=1.0)
    t0 = time.time()
    result = run_tree_build(out / "corpus.parquet", out / "build", cfg, show_progress=False)
    items = [json.loads(line) for line in (out / "build" / "items.jsonl").read_text().splitlines()]
    report = {"command": " ".join(sys.argv), "wall_s": round(time.time() - t0, 1), **scores(items, subject, args.seed),
              "summary": {k: result.summary[k] for k in ("items_with_chains", "items_failed", "chains_per_item",
                                                          "lines_dropped", "merges", "folded", "dropped_nodes", "tree")}}
    print(json.dumps(report, indent=2))
    print(f"purity {report['purity']:.3f} vs {report['purity_shuffled_subjects']:.3f} with shuffled subjects "
          f"(majority subject {report['majority_subject_share']:.3f}); {report['top_level_nodes']} top-level nodes, "
          f"{report['items_placed']}/{report['items']} items placed; tree in {result.tree_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
