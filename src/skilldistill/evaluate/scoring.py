"""One benchmark scored: generated samples graded against the gold answers, written as
``samples.parquet`` (one row per problem x sample) and ``results.json`` (avg@n, by subject,
per skill)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..artifacts import write_json, write_parquet
from ..benchmarks import BenchItem
from ..grading import grade_many
from ..textutil import normalize_question
from .config import EvaluateConfig
from .metrics import avg_at_n, per_skill_accuracy

# One row per problem x sample; `skills` holds the problem's skill chains when the
# benchmark is annotated (EvaluateConfig.skills), else null.
SAMPLES_SCHEMA = pa.schema([
    ("id", pa.string()), ("sample", pa.int64()), ("question", pa.string()), ("answer", pa.string()),
    ("response", pa.string()), ("pred", pa.string()), ("correct", pa.bool_()), ("truncated", pa.bool_()),
    ("finish_reason", pa.string()), ("completion_tokens", pa.int64()), ("seed", pa.int64()),
    ("skills", pa.list_(pa.list_(pa.string()))),
])


def load_item_skills(skills_parquet: str | Path, items: list[BenchItem]) -> dict[str, list[list[str]]]:
    """Skill chains for benchmark items, joined by normalised question text."""
    t = pq.read_table(skills_parquet, columns=["question", "skills"])
    by_q = {normalize_question(q): s for q, s in zip(t.column("question").to_pylist(), t.column("skills").to_pylist(), strict=True)}
    out = {}
    for it in items:
        chains = by_q.get(normalize_question(it.question))
        if chains:
            out[it.id] = [list(c) for c in chains]
    return out


def evaluate_benchmark(
    name: str,
    items: list[BenchItem],
    rows: list[dict[str, Any]],
    out_dir: Path,
    *,
    config: EvaluateConfig,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """Grade generated ``rows`` (id, sample, response, finish_reason, ...) against ``items``;
    write ``samples.parquet`` and ``results.json`` in ``out_dir``."""
    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    by_id = {it.id: it for it in items}
    grades = grade_many([by_id[r["id"]].answer for r in rows], [r["response"] for r in rows],
                        processes=config.grading_processes, timeout_s=config.grading_timeout_s)
    item_skills = load_item_skills(config.skills[name], items) if name in config.skills else {}
    samples = _sample_rows(by_id, rows, grades, item_skills)
    write_parquet(out_dir / "samples.parquet", pa.Table.from_pylist(samples, schema=SAMPLES_SCHEMA))
    results = _benchmark_results(name, items, samples, item_skills if name in config.skills else None)
    results["grading_time_s"] = round(time.time() - t0, 2)
    results.update(run_info)
    write_json(out_dir / "results.json", results)
    return results


def _sample_rows(by_id: dict[str, BenchItem], rows: list[dict[str, Any]], grades: list[Any],
                 item_skills: dict[str, list[list[str]]]) -> list[dict[str, Any]]:
    """The rows of samples.parquet."""
    samples = []
    for r, g in zip(rows, grades, strict=True):
        # Cut off by the token cap (or an unclosed <think>): wrong, whatever it boxed before the cut.
        truncated = bool(g.truncated or r.get("finish_reason") == "length")
        samples.append({
            "id": r["id"], "sample": int(r["sample"]), "question": by_id[r["id"]].question,
            "answer": by_id[r["id"]].answer, "response": r["response"], "pred": g.pred,
            "correct": bool(g.correct) and not truncated,
            "truncated": truncated,
            "finish_reason": r.get("finish_reason"), "completion_tokens": r.get("completion_tokens"),
            "seed": r.get("seed"),
            "skills": item_skills.get(r["id"]),
        })
    return samples


def _benchmark_results(name: str, items: list[BenchItem], samples: list[dict[str, Any]],
                       item_skills: dict[str, list[list[str]]] | None) -> dict[str, Any]:
    """avg@n, by subject and per skill (``item_skills`` None: the benchmark is not annotated)."""
    correct: dict[str, list[bool]] = {}
    for s in sorted(samples, key=lambda s: (s["id"], s["sample"])):
        correct.setdefault(s["id"], []).append(s["correct"])
    ordered = [correct[it.id] for it in items if it.id in correct]
    metric = avg_at_n(ordered)
    item_acc = {iid: sum(c) / len(c) for iid, c in correct.items()}
    by_subject: dict[str, list[float]] = {}
    for it in items:
        if it.subject and it.id in item_acc:
            by_subject.setdefault(it.subject, []).append(item_acc[it.id])
    return {
        "benchmark": name,
        "n_problems": len(ordered),
        "n_samples": metric["n"],
        "accuracy": metric["accuracy"],
        "std": metric["std"],
        "per_sample_accuracy": metric["per_sample_accuracy"],
        "pass_at_n": metric["pass_at_n"],
        "truncated_share": sum(s["truncated"] for s in samples) / len(samples) if samples else None,
        "mean_completion_tokens": _mean([s["completion_tokens"] for s in samples if s["completion_tokens"] is not None]),
        "by_subject": {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_subject.items())},
        "per_skill": per_skill_accuracy(item_acc, item_skills) if item_skills is not None else {},
        "seeds": sorted({s["seed"] for s in samples if s["seed"] is not None}),
    }


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
