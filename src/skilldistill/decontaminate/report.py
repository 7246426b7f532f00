"""What decontamination found: the ``decontamination.json`` report, and :func:`decontaminate`,
which loads the benchmarks, matches and reports in one call."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import DecontaminationConfig
from .matcher import Decontaminator, Match
from .problems import BenchmarkProblems, load_benchmark_problems

_EXAMPLES_PER_METHOD = 5


def contamination_report(
    problems: BenchmarkProblems, matches: Sequence[Match | None], ids: Sequence[str], questions: Sequence[str],
    config: DecontaminationConfig, *, wall_s: float | None = None,
) -> dict[str, Any]:
    """``decontamination.json``: per benchmark, items matched by each method, with examples."""
    per: dict[str, dict[str, Any]] = {}
    for name, n in problems.counts().items():
        per[name] = {"problems": n, "source": problems.sources.get(name), "items_removed": {m: 0 for m in config.methods},
                     "problems_hit": 0, "examples": {m: [] for m in config.methods}}
    hit: dict[str, set[int]] = defaultdict(set)
    for i, m in enumerate(matches):
        if m is None:
            continue
        name = problems.benchmark[m.problem]
        b = per[name]
        b["items_removed"][m.method] += 1
        hit[name].add(m.problem)
        if len(b["examples"][m.method]) < _EXAMPLES_PER_METHOD:
            b["examples"][m.method].append({
                "corpus_id": ids[i], "benchmark_id": problems.ids[m.problem], "score": m.score,
                "corpus_question": questions[i][:400], "benchmark_question": problems.questions[m.problem][:400],
            })
    for name, b in per.items():
        b["problems_hit"] = len(hit[name])
    removed = Counter(m.method for m in matches if m is not None)
    return {
        "config": config.model_dump(mode="json"),
        "items_checked": len(matches),
        "items_removed": sum(removed.values()),
        "items_removed_by_method": {m: removed.get(m, 0) for m in config.methods},
        "benchmarks": per,
        **({"wall_s": round(wall_s, 3)} if wall_s is not None else {}),
    }


def decontaminate(
    ids: Sequence[str], questions: Sequence[str], entries: Sequence[str | Path], config: DecontaminationConfig | None = None,
    *, progress: Callable[[int], None] | None = None,
) -> tuple[list[Match | None], dict[str, Any], BenchmarkProblems]:
    """Match ``questions`` against the benchmarks ``entries``: (matches, report, problems)."""
    cfg = config or DecontaminationConfig()
    t0 = time.time()
    problems = load_benchmark_problems(entries, data_dir=cfg.data_dir)
    matches = Decontaminator(problems, cfg).find(questions, progress)
    return matches, contamination_report(problems, matches, ids, questions, cfg, wall_s=time.time() - t0), problems
