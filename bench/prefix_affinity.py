"""Attribution over vLLM servers: prefix-cache hits with item affinity vs round-robin.

    .venv-engines/bin/python bench/prefix_affinity.py --items 40
    .venv-engines/bin/python bench/prefix_affinity.py --items 40 --servers 4

With N servers, round-robin sends an item's next call to the server that already holds
its text about 1/N of the time, so the gap grows with N (a GPU node has 8). Measured on 2
cores: 2 servers 1.42x, 4 servers 2.35x (docs/engines.md).

All of one item's attribution calls share its text (up to 20k characters), and the prompt
template puts that text first. With ``routing: affinity`` (the default) every call about
one item goes to the same server (a stable hash of the item text over the base URLs), so
that server's prefix cache serves the repeat; round-robin sends the next level's call to
either server. Two ``vllm serve`` servers of SmolLM2-135M-Instruct (vLLM's CPU build)
annotate MATH test problems on skill_mix.json, once per routing, on disjoint halves of
the same item sample (a cache warmed by one mode must not help the other); the hit rate
is ``vllm:prefix_cache_hits / vllm:prefix_cache_queries`` (prompt tokens) from /metrics,
summed over both servers, printed side by side. Needs the engines environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=40, help="items per routing mode")
    ap.add_argument("--max-chars", type=int, default=1500, help="item text cap (short: a CPU prefill budget)")
    ap.add_argument("--servers", type=int, default=2, help="vllm serve servers (each holds ~1 GiB of KV cache here)")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from skilldistill.attribution import AnnotateConfig, annotate
    from skilldistill.llm.base import BackendConfig
    from skilldistill.llm.vllm_server import CPU_ARGS, VLLMServer
    from skilldistill.tree import SkillTree

    sys.path.insert(0, str(ROOT / "bench"))
    from generation_throughput import model_dir

    model = model_dir("smollm2")
    rows = [json.loads(line) for line in (SHARED / "corpora" / "math_test" / "test.jsonl").read_text().splitlines()]
    rows = rows[: 2 * args.items]
    tree = SkillTree.load(SHARED / "skill_trees" / "skill_mix.json")
    tmp = Path(tempfile.mkdtemp(prefix="affinity_"))
    servers = [VLLMServer(model, name="smollm2", log=tmp / f"server{i}.log", args=CPU_ARGS) for i in range(args.servers)]
    results = {}
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait()
        for k, routing in enumerate(("affinity", "round-robin")):
            part = rows[k * args.items:(k + 1) * args.items]
            table = pa.table({"id": [f"{routing}-{i}" for i in range(len(part))],
                              "question": [r["problem"] for r in part], "response": [r["solution"] for r in part],
                              "answer": ["" for _ in part], "source": ["math" for _ in part],
                              "meta": ["{}" for _ in part]})
            corpus = tmp / f"{routing}.parquet"
            pq.write_table(table, corpus)
            before = [s.metrics() for s in servers]
            llm = BackendConfig(kind="openai", model="smollm2", base_urls=[s.url for s in servers], routing=routing,
                                max_concurrency=16)
            cfg = AnnotateConfig(backend="openai", llm=llm, max_tokens=48, max_chars=args.max_chars)
            t0 = time.perf_counter()
            res = annotate(corpus, tree, tmp / f"out-{routing}", cfg, show_progress=False)
            wall = time.perf_counter() - t0
            after = [s.metrics() for s in servers]
            q = sum(a.get("vllm:prefix_cache_queries_total", 0) - b.get("vllm:prefix_cache_queries_total", 0)
                    for a, b in zip(after, before, strict=True))
            h = sum(a.get("vllm:prefix_cache_hits_total", 0) - b.get("vllm:prefix_cache_hits_total", 0)
                    for a, b in zip(after, before, strict=True))
            per = [a.get("vllm:request_success_total", 0) - b.get("vllm:request_success_total", 0)
                   for a, b in zip(after, before, strict=True)]
            results[routing] = {"calls": res.summary["calls_this_run"], "queries": q, "hits": h,
                                "hit_rate": h / q if q else 0.0, "per_server": per, "wall_s": wall}
    finally:
        for s in servers:
            s.stop()
    print(f"{args.items} MATH items per mode, skill_mix.json, {args.servers} servers of SmolLM2-135M (vLLM CPU build)\n")
    print(f"{'routing':12s} {'calls':>6s} {'prompt tokens':>14s} {'cache hits':>11s} {'hit rate':>9s} "
          f"{'requests per server':>20s} {'wall s':>7s}")
    for routing, r in results.items():
        print(f"{routing:12s} {r['calls']:6d} {r['queries']:14.0f} {r['hits']:11.0f} {r['hit_rate']:9.1%} "
              f"{str([int(x) for x in r['per_server']]):>20s} {r['wall_s']:7.1f}")
    rr = results["round-robin"]["hit_rate"]
    ratio = results["affinity"]["hit_rate"] / rr if rr else float("inf")
    print(f"\naffinity / round-robin hit rate: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
