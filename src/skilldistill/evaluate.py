r"""Evaluation: avg@n accuracy of a model on math benchmarks, with per-skill breakdowns.

    skilldistill evaluate --model runs/demo/train/skill/final --benchmarks aime24,math500 \
        --data-dir ../shared/data/benchmarks --out runs/x/evaluate/skill

Benchmarks come from the registry :data:`BENCHMARKS` (a table, not code branches): each
loads from its usual Hugging Face id when online, or from a local file in the common
harness layout ``<data-dir>/<name>/test.jsonl`` (the layout of math-evaluation-harness,
which ``../shared/data/benchmarks`` follows). Generation and grading are the profiling
stage's modules (:mod:`skilldistill.generate`, :mod:`skilldistill.grading`), so the
student is measured the same way before and after training. Per benchmark the stage
writes ``samples.parquet`` (one row per problem x sample) and ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .artifacts import library_versions, sha256_file, write_json, write_parquet
from .corpus import ANSWER_EXTRACTORS, iter_local_rows, list_local_files
from .errors import ConfigError, InputError
from .textutil import normalize_question

if TYPE_CHECKING:
    from .generate import GenerationConfig
    from .llm.base import ChatBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and how to read its rows."""

    name: str
    hf_id: str
    hf_split: str = "test"
    hf_config: str | None = None
    local_name: str | None = None  # folder in the harness layout (default: name)
    question_fields: tuple[str, ...] = ("problem", "question")
    answer_field: str = "answer"
    answer_extractor: str = "auto"
    id_field: str | None = None
    subject_field: str | None = None
    # row filter: (field, allowed values); e.g. MATH-L5 keeps level 5 of MATH-500
    keep_if: tuple[str, tuple[Any, ...]] | None = None
    n_samples: int = 1  # the paper: 8 for AIME24/25, AMC23 and MATH-L5, 1 for MATH-500 and OlympiadBench
    description: str = ""


BENCHMARKS: dict[str, BenchmarkSpec] = {
    b.name: b
    for b in [
        BenchmarkSpec("aime24", "HuggingFaceH4/aime_2024", hf_split="train", id_field="id", n_samples=8,
                      description="AIME 2024, 30 problems"),
        BenchmarkSpec("aime25", "math-ai/aime25", n_samples=8, description="AIME 2025, 30 problems"),
        BenchmarkSpec("amc23", "math-ai/amc23", id_field="id", n_samples=8, description="AMC 2023, 40 problems"),
        BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", id_field="unique_id", subject_field="subject",
                      description="MATH-500 (PRM800K split of MATH)"),
        BenchmarkSpec("math_l5", "HuggingFaceH4/MATH-500", local_name="math500", id_field="unique_id",
                      subject_field="subject", keep_if=("level", (5, "5", "Level 5")), n_samples=8,
                      description="the 134 level-5 problems of MATH-500"),
        BenchmarkSpec("olympiadbench", "Hothan/OlympiadBench", hf_split="train", hf_config="OE_TO_maths_en_COMP",
                      answer_field="final_answer", id_field="id", subject_field="subfield",
                      keep_if=("is_multiple_answer", (False,)),
                      description="OlympiadBench English text-only math, single-answer subset"),
        BenchmarkSpec("gsm8k", "openai/gsm8k", hf_config="main", answer_extractor="gsm8k",
                      description="GSM8K test, 1,319 problems"),
        BenchmarkSpec("minerva", "math-ai/minervamath", local_name="minerva_math", answer_field="solution",
                      answer_extractor="boxed", id_field="idx", subject_field="type",
                      description="Minerva OCW problems (answer: the solution's \\boxed{})"),
    ]
}
PAPER_BENCHMARKS = ("aime24", "aime25", "amc23", "math_l5", "olympiadbench")


# One row per problem x sample; `skills` holds the problem's skill chains when the
# benchmark is annotated (EvaluateConfig.skills), else null.
SAMPLES_SCHEMA = pa.schema([
    ("id", pa.string()), ("sample", pa.int64()), ("question", pa.string()), ("answer", pa.string()),
    ("response", pa.string()), ("pred", pa.string()), ("correct", pa.bool_()), ("truncated", pa.bool_()),
    ("finish_reason", pa.string()), ("completion_tokens", pa.int64()), ("seed", pa.int64()),
    ("skills", pa.list_(pa.list_(pa.string()))),
])


@dataclass
class BenchItem:
    id: str
    question: str
    answer: str
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_benchmark(
    name: str, *, data_dir: str | Path | None = None, path: str | Path | None = None, limit: int | None = None
) -> list[BenchItem]:
    """Rows of a registered benchmark from ``path``, ``data_dir/<name>/``, or the HF hub."""
    spec = get_spec(name, custom=path is not None)
    if path is None and data_dir is not None:
        folder = Path(data_dir) / (spec.local_name or spec.name)
        if not folder.exists():
            raise InputError(f"benchmark {name!r} not found under the data dir", file=folder)
        path = folder
    rows: list[tuple[str, int, dict]] = []
    if path is not None:
        for f in list_local_files(Path(path)):
            for r in iter_local_rows(f):
                if r.data is None:
                    raise InputError(r.error or "unreadable row", file=r.file, row=r.line)
                rows.append((r.file, r.line, r.data))
    else:
        import datasets

        try:
            ds = datasets.load_dataset(spec.hf_id, spec.hf_config, split=spec.hf_split)
        except Exception as e:
            raise InputError(
                f"cannot load benchmark {name!r} from {spec.hf_id}: {e}. Offline? Pass --data-dir with "
                f"<dir>/{spec.local_name or spec.name}/test.jsonl"
            ) from e
        rows = [(spec.hf_id, i, dict(r)) for i, r in enumerate(ds, start=1)]

    items: list[BenchItem] = []
    for file, line, data in rows:
        if spec.keep_if is not None:
            fld, allowed = spec.keep_if
            if data.get(fld) not in allowed:
                continue
        qfield = next((f for f in spec.question_fields if data.get(f)), None)
        if qfield is None:
            raise InputError(f"no question (looked for {', '.join(spec.question_fields)})", file=file, row=line)
        if spec.answer_field not in data:
            raise InputError("no answer field", file=file, row=line, field=spec.answer_field)
        raw_answer = data[spec.answer_field]
        if isinstance(raw_answer, list) and len(raw_answer) == 1:
            raw_answer = raw_answer[0]
        answer = ANSWER_EXTRACTORS[spec.answer_extractor](raw_answer)
        if not answer:
            raise InputError("no extractable answer", file=file, row=line, field=spec.answer_field)
        rid = data.get(spec.id_field) if spec.id_field else None
        items.append(
            BenchItem(
                id=str(rid) if rid is not None else f"{spec.name}-{len(items)}",
                question=str(data[qfield]).strip(),
                answer=answer,
                subject=str(data[spec.subject_field]) if spec.subject_field and data.get(spec.subject_field) else None,
                meta={k: data[k] for k in ("level", "unit", "answer_type") if k in data and data[k] is not None},
            )
        )
        if limit is not None and len(items) >= limit:
            break
    return items


def get_spec(name: str, *, custom: bool = False) -> BenchmarkSpec:
    """The registered spec; with ``custom``, an unregistered name read from a given file
    (fields problem/question, answer, id; e.g. an annotated held-out set)."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if custom:
        from .textutil import check_safe_name

        try:
            check_safe_name(name, "benchmark name")  # it becomes <out>/<name>/
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return BenchmarkSpec(name, hf_id="", id_field="id", description="custom file")
    raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (or give a file for it)")


# ----------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------
def avg_at_n(correct: list[list[bool]]) -> dict[str, Any]:
    """avg@n over problems x samples: mean, spread over sample indices, pass@n.

    ``correct[i][s]`` is whether sample ``s`` of problem ``i`` is right. The spread is the
    standard deviation of the per-sample-index accuracies (each index is one full run of
    the benchmark), the usual way avg@n papers report seed variation.
    """
    if not correct:
        return {"accuracy": None, "std": None, "per_sample_accuracy": [], "pass_at_n": None, "n": 0}
    n = min(len(c) for c in correct)
    per_problem = [sum(c[:n]) / n for c in correct]
    per_sample = [sum(c[s] for c in correct) / len(correct) for s in range(n)]
    mean = sum(per_problem) / len(per_problem)
    std = math.sqrt(sum((a - mean) ** 2 for a in per_sample) / (n - 1)) if n > 1 else 0.0
    return {
        "accuracy": mean,
        "std": std,
        "per_sample_accuracy": per_sample,
        "pass_at_n": sum(any(c[:n]) for c in correct) / len(correct),
        "n": n,
    }


def per_skill_accuracy(
    item_accuracy: dict[str, float], item_skills: dict[str, list[list[str]]]
) -> dict[str, dict[str, Any]]:
    """Accuracy per skill node (every prefix of every chain) over the items under it."""
    sums: dict[tuple[str, ...], list[float]] = {}
    for iid, chains in item_skills.items():
        if iid not in item_accuracy:
            continue
        nodes = {tuple(chain[: d + 1]) for chain in chains for d in range(len(chain))}
        for node in nodes:
            sums.setdefault(node, []).append(item_accuracy[iid])
    return {
        "->".join(node): {"path": list(node), "depth": len(node), "n": len(v), "accuracy": sum(v) / len(v)}
        for node, v in sorted(sums.items())
    }


def load_item_skills(skills_parquet: str | Path, items: list[BenchItem]) -> dict[str, list[list[str]]]:
    """Skill chains for benchmark items, joined by normalised question text."""
    import pyarrow.parquet as pq

    t = pq.read_table(skills_parquet, columns=["question", "skills"])
    by_q = {normalize_question(q): s for q, s in zip(t.column("question").to_pylist(), t.column("skills").to_pylist(), strict=True)}
    out = {}
    for it in items:
        chains = by_q.get(normalize_question(it.question))
        if chains:
            out[it.id] = [list(c) for c in chains]
    return out


def git_commit() -> str | None:
    """The commit of the skilldistill source tree, when it is a git checkout."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------
class EvaluateConfig(BaseModel):
    """Which benchmarks, how many samples each, and how to decode."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: list[str] = Field(default_factory=lambda: list(PAPER_BENCHMARKS))
    data_dir: str | None = Field(None, description="Folder with <name>/test.jsonl per benchmark (offline).")
    files: dict[str, str] = Field(default_factory=dict, description="Explicit file per benchmark name.")
    n_samples: dict[str, int] = Field(default_factory=dict, description="Override avg@n per benchmark.")
    limit: int | None = Field(None, ge=1, description="Evaluate at most this many problems per benchmark.")
    skills: dict[str, str] = Field(default_factory=dict, description="Annotated benchmark Parquet per name (per-skill accuracy).")
    grading_processes: int | None = None
    grading_timeout_s: float = Field(30.0, gt=0, description="Hard limit per graded answer (seconds).")

    def n_for(self, name: str) -> int:
        return self.n_samples.get(name, get_spec(name, custom=name in self.files).n_samples)


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
    from .grading import grade_many

    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    by_id = {it.id: it for it in items}
    golds = [by_id[r["id"]].answer for r in rows]
    grades = grade_many(golds, [r["response"] for r in rows], processes=config.grading_processes,
                        timeout_s=config.grading_timeout_s)
    item_skills = load_item_skills(config.skills[name], items) if name in config.skills else {}
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
    write_parquet(out_dir / "samples.parquet", pa.Table.from_pylist(samples, schema=SAMPLES_SCHEMA))

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
    per_skill = per_skill_accuracy(item_acc, item_skills) if name in config.skills else {}
    results = {
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
        "per_skill": per_skill,
        "seeds": sorted({s["seed"] for s in samples if s["seed"] is not None}),
        "grading_time_s": round(time.time() - t0, 2),
        **run_info,
    }
    write_json(out_dir / "results.json", results)
    return results


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-benchmark accuracy plus the unweighted mean over benchmarks (the paper's 'avg')."""
    accs = {k: v["accuracy"] for k, v in results.items() if v.get("accuracy") is not None}
    return {"benchmarks": accs, "average": sum(accs.values()) / len(accs) if accs else None}


def benchmark_inputs(config: EvaluateConfig) -> dict[str, str]:
    """Hashes of the local benchmark files (for stage manifests)."""
    out = {}
    for name in config.benchmarks:
        spec = get_spec(name, custom=name in config.files)
        path = config.files.get(name) or (
            str(Path(config.data_dir) / (spec.local_name or spec.name)) if config.data_dir else None
        )
        if path and Path(path).exists():
            for f in list_local_files(Path(path)):
                out[str(f)] = sha256_file(f)
        else:
            out[name] = spec.hf_id
    return out


def run_info_for(model: str, decoding: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "decoding": decoding, "versions": library_versions(), "git_commit": git_commit()}


def write_summary(out_dir: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary = summarize(results)
    write_json(out_dir / "results.json", {"summary": summary, "benchmarks": results})
    return summary


def read_results(eval_dir: str | Path) -> dict[str, Any]:
    """The ``results.json`` summary of an evaluation folder."""
    p = Path(eval_dir) / "results.json"
    if not p.exists():
        raise InputError("no evaluation results", file=p)
    return json.loads(p.read_text())


def evaluable_model(model: str) -> str:
    """A model folder every backend can load. A LoRA adapter folder (``adapter_config.json``,
    no ``config.json``; what ``train`` leaves in final/ with ``merge_lora: false``) is merged
    into its base once, into a sibling ``<name>-merged`` folder, which is returned."""
    import json as _json

    path = Path(model)
    if not (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
        return model
    from .artifacts import read_json, sha256_file
    from .train import _merge_lora

    weights = next((path / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (path / n).exists()), None)
    if weights is None:
        raise InputError("LoRA adapter folder without adapter weights", file=path)
    stamp = {"adapter": sha256_file(weights)}
    merged = path.with_name(f"{path.name}-merged")
    if (merged / "merged_from.json").exists() and read_json(merged / "merged_from.json") == stamp:
        return str(merged)
    base = _json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise InputError("adapter_config.json names no base model", file=path, field="base_model_name_or_path")
    from transformers import AutoTokenizer

    log.info("evaluate: %s is a LoRA adapter of %s: merging it into %s", path, base, merged)
    _merge_lora(base, path, merged, AutoTokenizer.from_pretrained(str(path)), dtype="float32", trust_remote_code=False)
    write_json(merged / "merged_from.json", stamp)
    return str(merged)


def run_evaluate(
    out_dir: str | Path,
    config: EvaluateConfig,
    generation: GenerationConfig,
    *,
    backend: ChatBackend | None = None,
    show_progress: bool = True,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate ``generation.backend.model`` on every configured benchmark.

    Writes ``out_dir/<benchmark>/{generations.jsonl, generations.parquet, samples.parquet,
    results.json}`` and ``out_dir/results.json`` (summary + all benchmarks). Generation
    resumes from each benchmark's log, so a killed run repeats no finished sample;
    ``fresh`` first removes everything in ``out_dir`` (under its lock), so nothing is resumed.
    """
    import shutil

    from .artifacts import FolderLock

    with FolderLock(out_dir, what="evaluate"):
        if fresh:
            for child in Path(out_dir).iterdir():
                if child.name == FolderLock.NAME:
                    continue  # the lock held right now: removing it would let a second process in
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        return _run_evaluate_unlocked(out_dir, config, generation, backend=backend, show_progress=show_progress)


def _run_evaluate_unlocked(
    out_dir: str | Path,
    config: EvaluateConfig,
    generation: GenerationConfig,
    *,
    backend: ChatBackend | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``generation.backend.model`` on every configured benchmark.

    Writes ``out_dir/<benchmark>/{generations.jsonl, generations.parquet, samples.parquet,
    results.json}`` and ``out_dir/results.json`` (summary + all benchmarks). Generation
    resumes from each benchmark's log, so a killed run repeats no finished sample.
    """
    from .generate import run_generation
    from .llm.factory import make_backend

    out_dir = Path(out_dir)
    benches = {
        name: load_benchmark(name, data_dir=config.data_dir, path=config.files.get(name), limit=config.limit)
        for name in config.benchmarks
    }  # all loaded (and validated) before the model is
    if backend is None:
        model = evaluable_model(generation.backend.model)
        if model != generation.backend.model:
            generation = generation.model_copy(update={"backend": generation.backend.model_copy(update={"model": model})})
    own = backend is None
    backend = backend or make_backend(generation.backend)
    info = run_info_for(generation.backend.model, generation.model_dump(mode="json", exclude={"backend": {"api_key"}}))
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, items in benches.items():
            n = config.n_for(name)
            gen_cfg = generation.model_copy(update={"n": n})
            t0 = time.time()
            rows = run_generation([{"id": it.id, "question": it.question} for it in items], out_dir / name, gen_cfg,
                                  backend=backend, source=name, show_progress=show_progress).to_pylist()
            gen_time = {"generation_time_s": round(time.time() - t0, 2)}
            results[name] = evaluate_benchmark(name, items, rows, out_dir / name, config=config, run_info=info | gen_time)
            log.info("%s: avg@%d = %.3f", name, n, results[name]["accuracy"] or 0.0)
    finally:
        if own:
            backend.close()
    write_summary(out_dir, results)
    return results
