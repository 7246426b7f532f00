r"""The benchmark registry: where each evaluation benchmark lives and how its rows are read.

:data:`BENCHMARKS` is a table, not code branches (add a row to add a benchmark). Each
benchmark loads from its usual Hugging Face id when online, or from a local file in the
common harness layout ``<data-dir>/<name>/test.jsonl`` (the layout of
math-evaluation-harness, which ``../shared/data/benchmarks`` follows). ``skilldistill
evaluate`` measures a model on them and decontamination removes their problems from a corpus.

Light to import (no pyarrow): the evaluation config names the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .rows import ANSWER_EXTRACTORS, iter_local_rows, list_local_files


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


@dataclass
class BenchItem:
    id: str
    question: str
    answer: str
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


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
    rows = _local_rows(Path(path)) if path is not None else _hub_rows(name, spec)
    items: list[BenchItem] = []
    for file, line, data in rows:
        if spec.keep_if is not None:
            fld, allowed = spec.keep_if
            if data.get(fld) not in allowed:
                continue
        items.append(_bench_item(spec, data, file, line, position=len(items)))
        if limit is not None and len(items) >= limit:
            break
    return items


def _local_rows(path: Path) -> list[tuple[str, int, dict]]:
    rows: list[tuple[str, int, dict]] = []
    for f in list_local_files(path):
        for r in iter_local_rows(f):
            if r.data is None:
                raise InputError(r.error or "unreadable row", file=r.file, row=r.line)
            rows.append((r.file, r.line, r.data))
    return rows


def _hub_rows(name: str, spec: BenchmarkSpec) -> list[tuple[str, int, dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(spec.hf_id, spec.hf_config, split=spec.hf_split)
    except Exception as e:
        raise InputError(
            f"cannot load benchmark {name!r} from {spec.hf_id}: {e}. Offline? Pass --data-dir with "
            f"<dir>/{spec.local_name or spec.name}/test.jsonl"
        ) from e
    return [(spec.hf_id, i, dict(r)) for i, r in enumerate(ds, start=1)]


def _bench_item(spec: BenchmarkSpec, data: dict, file: str, line: int, *, position: int) -> BenchItem:
    """One benchmark row as an item; ``position`` (items so far) names a row without an id."""
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
    return BenchItem(
        id=str(rid) if rid is not None else f"{spec.name}-{position}",
        question=str(data[qfield]).strip(),
        answer=answer,
        subject=str(data[spec.subject_field]) if spec.subject_field and data.get(spec.subject_field) else None,
        meta={k: data[k] for k in ("level", "unit", "answer_type") if k in data and data[k] is not None},
    )
