r"""Corpus ingestion: teacher-solution datasets -> one normalised Parquet table.

    skilldistill ingest nvidia/OpenMathReasoning --preset openmathreasoning --split cot \
        --limit 100000 --exclude benchmarks/*.jsonl --out runs/omr/corpus

Sources are a Hugging Face dataset id (loaded with ``datasets.load_dataset`` when you are
online) or local ``.jsonl``/``.json``/``.parquet`` files and folders of them. A *preset*
maps a published schema onto the normalised record; presets are rows of the
:data:`PRESETS` table, not code branches, and explicit ``--question-field`` /
``--response-field`` / ``--answer-field`` mappings cover any other schema.

Normalised record (``corpus.parquet``):

=========  ==================================================================
id         stable id: the source's id when it has one, else a content hash of
           the normalised question
question   the problem statement
response   the teacher solution, ``<think>`` block kept intact
answer     gold final answer (the answer field, or extracted from ``\boxed{}``
           or GSM8K's ``####`` when the source has no separate field)
source     where the row came from (the row's own source field, else the
           dataset id or file name)
meta       JSON object with the remaining fields (level, subject, ...)
=========  ==================================================================
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from .artifacts import hash_obj, sha256_file, write_json, write_manifest, write_parquet
from .decontaminate import (
    BenchmarkProblems,
    DecontaminationConfig,
    Decontaminator,
    contamination_report,
    load_benchmark_problems,
)
from .errors import InputError
from .textutil import gsm8k_final, last_boxed, normalize_question, question_id

log = logging.getLogger(__name__)

CORPUS_FILE = "corpus.parquet"
CORPUS_MANIFEST = "manifest.json"
DECONTAMINATION_FILE = "decontamination.json"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
CORPUS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("question", pa.string()),
        ("response", pa.string()),
        ("answer", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
    ]
)


# ----------------------------------------------------------------------------------
# Presets: how each published schema maps onto the normalised record.
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """Field mapping for one published dataset schema.

    ``response`` names the teacher-solution field (or the fields ``response_builder``
    combines). The gold answer is read from ``answer`` with ``answer_extractor``; when
    that field is absent or empty in a row, it is extracted with ``fallback_extractor``
    from ``fallback_from`` (default: the built response). ``answer_required``: fail on a
    file without the answer column (else every row falls back).
    """

    name: str
    hf_id: str | None
    question: str
    response: tuple[str, ...]
    answer: str | None = None
    answer_extractor: str = "auto"
    answer_required: bool = True
    fallback_from: str | None = None
    fallback_extractor: str = "final"
    response_builder: str = "first"
    id_field: str | None = None
    source_field: str | None = None
    default_split: str = "train"
    default_config: str | None = None
    notes: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("openmathreasoning", "nvidia/OpenMathReasoning", "problem", ("generated_solution",),
               answer="expected_answer", source_field="problem_source", default_split="cot",
               notes="DeepSeek-R1 / QwQ traces; splits cot, tir, genselect"),
        Preset("openr1-math", "open-r1/OpenR1-Math-220k", "problem", ("generations", "correctness_math_verify"),
               answer="answer", response_builder="first_verified", id_field="uuid", source_field="source",
               default_config="default",
               notes="R1 generations; the first one math-verify marked correct is used"),
        Preset("deepmath", "zwhe99/DeepMath-103K", "question", ("r1_solution_1",), answer="final_answer",
               notes="three R1 solutions per problem; r1_solution_1 is used (--response-field for another)"),
        Preset("numinamath", "AI-MO/NuminaMath-CoT", "problem", ("solution",), answer=None,
               answer_required=False, source_field="source", notes="answer from the last \\boxed{}"),
        Preset("math", "EleutherAI/hendrycks_math", "problem", ("solution",), answer="answer",
               answer_required=False, fallback_from="solution", fallback_extractor="boxed",
               id_field="unique_id", default_split="test",
               notes="MATH / MATH-500: the answer field when present, else the solution's last \\boxed{}"),
        Preset("gsm8k", "openai/gsm8k", "question", ("answer",), answer="answer", answer_extractor="gsm8k",
               response_builder="gsm8k", default_config="main",
               notes="answer after '####'; calculator notes removed and the answer boxed in the response"),
        Preset("s1k", "simplescaling/s1K-1.1", "question",
               ("deepseek_thinking_trajectory", "deepseek_attempt"), answer="solution",
               answer_extractor="boxed_or_short", response_builder="think_attempt", source_field="source_type",
               notes="trajectory wrapped in <think>, then the attempt (s1K 1.0: map thinking_trajectories/attempt)"),
        Preset("limo", "GAIR/LIMO", "question", ("solution",), answer="answer",
               notes="long R1-style solutions with a separate answer"),
    ]
}


# -- answer extractors: (raw value) -> gold answer or None ---------------------------
def _answer_auto(v: Any) -> str | None:
    s = _to_text(v)
    if s is None or not s.strip():
        return None
    if "\\boxed" in s or "\\fbox" in s:
        return last_boxed(s)
    if "####" in s:
        return gsm8k_final(s)
    return _strip_dollars(s.strip())


def _answer_boxed_or_short(v: Any) -> str | None:
    """A \\boxed{} answer, else the whole value if it is short (s1K mixes both)."""
    s = _to_text(v)
    if s is None:
        return None
    if "\\boxed" in s or "\\fbox" in s:
        return last_boxed(s)
    s = s.strip()
    return _strip_dollars(s) if s and len(s) <= 200 else None


ANSWER_EXTRACTORS: dict[str, Callable[[Any], str | None]] = {
    "auto": _answer_auto,
    "boxed": lambda v: last_boxed(_to_text(v) or ""),
    "gsm8k": lambda v: gsm8k_final(_to_text(v) or ""),
    "boxed_or_short": _answer_boxed_or_short,
    "raw": lambda v: _strip_dollars(s.strip()) if (s := _to_text(v)) else None,
    # for whole solutions: a boxed answer or GSM8K's '####', never the whole text
    "final": lambda v: last_boxed(s) or gsm8k_final(s) if (s := _to_text(v)) else None,
}


# -- response builders: (row, response fields) -> teacher solution or None ----------
def _resp_first(row: dict, fields: Sequence[str]) -> str | None:
    return _to_text(row.get(fields[0]))


def _resp_first_verified(row: dict, fields: Sequence[str]) -> str | None:
    gens, ok = row.get(fields[0]), row.get(fields[1]) if len(fields) > 1 else None
    if isinstance(gens, str):
        return gens
    if not isinstance(gens, list | tuple) or not gens:
        return None
    if isinstance(ok, list | tuple):
        for g, good in zip(gens, ok, strict=False):
            if good and isinstance(g, str) and g.strip():
                return g
        return None  # verified, and none of them right: no teacher solution to learn from
    return gens[0] if isinstance(gens[0], str) else None


def _resp_think_attempt(row: dict, fields: Sequence[str]) -> str | None:
    think, attempt = row.get(fields[0]), row.get(fields[1]) if len(fields) > 1 else None
    if isinstance(think, list | tuple):
        think = think[0] if think else None
    think, attempt = _to_text(think), _to_text(attempt)
    if not attempt:
        return None
    if not think:
        return attempt
    return f"<think>\n{think.strip()}\n</think>\n\n{attempt.strip()}"


_CALC_NOTE = re.compile(r"<<[^<>]*>>")


def _resp_gsm8k(row: dict, fields: Sequence[str]) -> str | None:
    s = _to_text(row.get(fields[0]))
    if s is None:
        return None
    final = gsm8k_final(s)
    body = _CALC_NOTE.sub("", s.split("####")[0]).rstrip()
    if final is None:
        return body
    return f"{body}\nThe final answer is $\\boxed{{{final}}}$."


RESPONSE_BUILDERS: dict[str, Callable[[dict, Sequence[str]], str | None]] = {
    "first": _resp_first,
    "first_verified": _resp_first_verified,
    "think_attempt": _resp_think_attempt,
    "gsm8k": _resp_gsm8k,
}


# ----------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------
class IngestConfig(BaseModel):
    """How to read a corpus. Field options override the preset's mapping."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(..., description="HF dataset id, or a local file/folder (.jsonl/.json/.parquet).")
    preset: str | None = Field(None, description=f"One of {sorted(PRESETS)} or 'auto' (detect from columns).")
    question_field: str | None = None
    response_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    split: str | None = Field(None, description="HF split (preset default, else 'train').")
    config_name: str | None = Field(None, description="HF dataset configuration (subset) name.")
    limit: int | None = Field(None, ge=1, description="Read at most this many rows (HF sources stream).")
    exclude: list[str] = Field(default_factory=list, description="Benchmarks whose problems, and near-copies of them, "
                               "are removed: registered names (aime24, math500, ...) or files/folders of problems.")
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig,
                                                   description="How near-copies are found (exact, n-gram, fuzzy).")
    dedup: bool = True
    on_error: Literal["auto", "skip", "fail"] = Field(
        "auto", description="auto: fail on a missing column, skip-and-count a single bad row."
    )
    require_response: bool = True


@dataclass
class _Mapping:
    question: str
    response: tuple[str, ...]
    answer: str | None
    answer_extractor: str
    answer_required: bool
    fallback_from: str | None
    fallback_extractor: str
    response_builder: str
    id_field: str | None
    source_field: str | None
    preset: str | None


@dataclass
class IngestReport:
    rows_read: int = 0
    rows_written: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(where)


def resolve_mapping(cfg: IngestConfig, columns: Iterable[str] | None = None) -> _Mapping:
    """Preset + explicit field options -> the mapping used for every row."""
    preset_name = cfg.preset
    if preset_name == "auto" or (preset_name is None and not cfg.question_field):
        preset_name = detect_preset(columns or [])
        if preset_name is None:
            raise InputError(
                f"cannot detect the schema from columns {sorted(columns or [])}; pass --preset "
                f"({', '.join(sorted(PRESETS))}) or --question-field/--response-field/--answer-field",
                file=cfg.source,
            )
        log.info("detected preset %r", preset_name)
    if preset_name is not None and preset_name not in PRESETS:
        raise InputError(f"unknown preset {preset_name!r}; known: {', '.join(sorted(PRESETS))}")
    p = PRESETS.get(preset_name) if preset_name else None
    question = cfg.question_field or (p.question if p else None)
    if not question:
        raise InputError("no question field: pass --question-field or a --preset")
    if cfg.response_field:
        response: tuple[str, ...] = (cfg.response_field,)
        builder = "first"
    elif p:
        response, builder = p.response, p.response_builder
    else:
        raise InputError("no response field: pass --response-field or a --preset")
    if cfg.answer_field:
        answer, extractor, required = cfg.answer_field, "auto", True
    elif p:
        answer, extractor, required = p.answer, p.answer_extractor, p.answer_required
    else:
        answer, extractor, required = None, "auto", False  # extract from the response
    return _Mapping(
        question=question,
        response=response,
        answer=answer,
        answer_extractor=extractor,
        answer_required=required,
        fallback_from=p.fallback_from if p and not cfg.answer_field else None,
        fallback_extractor=p.fallback_extractor if p else "final",
        response_builder=builder,
        id_field=cfg.id_field or (p.id_field if p else None),
        source_field=p.source_field if p else None,
        preset=preset_name,
    )


def detect_preset(columns: Iterable[str]) -> str | None:
    """The most specific preset whose fields are all present in ``columns``."""
    cols = set(columns)
    best, best_n = None, 0
    for p in PRESETS.values():
        needed = {p.question, *p.response} | ({p.answer} if p.answer and p.answer_required else set())
        if needed <= cols and len(needed) > best_n:
            best, best_n = p.name, len(needed)
    return best


# ----------------------------------------------------------------------------------
# Reading rows with their location (file, 1-based line/row) for error messages
# ----------------------------------------------------------------------------------
@dataclass
class _Row:
    file: str
    line: int
    data: dict | None  # None: unreadable
    error: str | None = None


def list_local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
        if not files:
            raise InputError(f"no {'/'.join(LOCAL_SUFFIXES)} files in folder", file=path)
        return files
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise InputError(f"unsupported file type {path.suffix!r}; use {', '.join(LOCAL_SUFFIXES)}", file=path)
    return [path]


def iter_local_rows(path: Path) -> Iterator[_Row]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several kinds for a file that is not Parquet
            raise InputError(f"not a readable Parquet file ({type(e).__name__}: {e})", file=path) from None
        line = 0
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                line += 1
                yield _Row(str(path), line, rec)
        return
    if suffix == ".json":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text (byte {e.start}: {e.reason})", file=path) from None
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", file=path) from e
            for i, rec in enumerate(data, start=1):
                if isinstance(rec, dict):
                    yield _Row(str(path), i, rec)
                else:
                    yield _Row(str(path), i, None, f"element is {type(rec).__name__}, not an object")
            return
        if stripped.startswith("{"):
            # Either one object holding a list of records, or JSON lines saved as .json.
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict):
                lists = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
                if len(lists) == 1:
                    for i, rec in enumerate(lists[0], start=1):
                        yield _Row(str(path), i, rec if isinstance(rec, dict) else None,
                                   None if isinstance(rec, dict) else "element is not an object")
                    return
                yield _Row(str(path), 1, data)
                return
    # JSON lines (also .json files that hold one object per line)
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield _Row(str(path), i, None, f"unreadable line: {e}")
                continue
            if not isinstance(rec, dict):
                yield _Row(str(path), i, None, f"line holds a {type(rec).__name__}, not an object")
                continue
            yield _Row(str(path), i, rec)


def local_columns(path: Path) -> list[str]:
    """Column names of a local file (from the schema or the first readable row)."""
    if path.suffix.lower() == ".parquet":
        try:
            return pq.read_schema(path).names
        except Exception as e:
            raise InputError(f"not a readable Parquet file ({type(e).__name__}: {e})", file=path) from None
    for row in iter_local_rows(path):
        if row.data is not None:
            return list(row.data)
    return []


def iter_hf_rows(cfg: IngestConfig, mapping_preset: Preset | None) -> Iterator[_Row]:
    """Rows of a Hugging Face dataset (network needed unless it is in the local cache)."""
    import datasets

    split = cfg.split or (mapping_preset.default_split if mapping_preset else "train")
    config_name = cfg.config_name or (mapping_preset.default_config if mapping_preset else None)
    try:
        ds = datasets.load_dataset(cfg.source, config_name, split=split, streaming=cfg.limit is not None)
    except Exception as e:  # network, auth, unknown id: one clear message
        raise InputError(
            f"cannot load Hugging Face dataset {cfg.source!r} (config={config_name}, split={split}): {e}. "
            "Offline? Pass a local .jsonl/.json/.parquet file or folder instead."
        ) from e
    for i, rec in enumerate(ds, start=1):
        yield _Row(f"{cfg.source}[{split}]", i, dict(rec))


def is_local_source(source: str) -> bool:
    p = Path(source)
    return p.exists() or p.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~"))


# ----------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------
def ingest(cfg: IngestConfig, out_dir: str | Path, *, progress: bool = True) -> IngestReport:
    """Read ``cfg.source``, normalise, deduplicate, decontaminate; write ``out_dir``.

    Writes ``corpus.parquet`` and ``manifest.json`` atomically; on an error nothing in
    ``out_dir`` is replaced. Returns the report (counts and dropped rows by reason).
    """
    from .artifacts import FolderLock

    with FolderLock(out_dir, what="ingest"):
        return _ingest_unlocked(cfg, out_dir, progress=progress)


def _ingest_unlocked(cfg: IngestConfig, out_dir: str | Path, *, progress: bool = True) -> IngestReport:
    """Read ``cfg.source``, normalise, deduplicate, decontaminate; write ``out_dir``.

    Writes ``corpus.parquet`` and ``manifest.json`` atomically; on an error nothing in
    ``out_dir`` is replaced. Returns the report (counts and dropped rows by reason).
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    report = IngestReport()
    # Benchmarks load first: a missing or unreadable one fails before any corpus work.
    problems = load_benchmark_problems(cfg.exclude, data_dir=cfg.decontamination.data_dir) if cfg.exclude else None

    local = is_local_source(cfg.source)
    if local:
        src_path = Path(cfg.source).expanduser()
        if not src_path.exists():
            raise InputError("no such file or folder", file=src_path)
        files = list_local_files(src_path)
        report.files = [str(f) for f in files]
        mapping = resolve_mapping(cfg, local_columns(files[0]) if (cfg.preset in (None, "auto") and not cfg.question_field) else None)
        # e.g. corpora/math_test/test.jsonl -> 'math_test/test': the folder says more than 'test'
        default_source = f"{src_path.parent.name}/{src_path.stem}" if src_path.is_file() else src_path.name
        rows: Iterable[_Row] = (r for f in files for r in _check_columns(iter_local_rows(f), mapping, cfg))
    else:
        preset = PRESETS.get(cfg.preset) if cfg.preset and cfg.preset != "auto" else None
        if preset is None and not cfg.question_field:
            raise InputError("a Hugging Face source needs --preset (or explicit --question-field ...)", file=cfg.source)
        mapping = resolve_mapping(cfg)
        default_source = cfg.source
        report.files = [cfg.source]
        rows = _check_columns(iter_hf_rows(cfg, preset), mapping, cfg)

    records: list[dict[str, str]] = []
    wheres: list[str] = []
    seen_questions: dict[str, int] = {}
    seen_ids: set[str] = set()
    id_collisions = 0
    rows_iter = _with_progress(rows, enabled=progress, limit=cfg.limit)
    for row in rows_iter:
        if cfg.limit is not None and report.rows_read >= cfg.limit:
            break
        report.rows_read += 1
        where = f"{row.file}:{row.line}"
        if row.data is None:
            _bad(cfg, report, "unreadable line", where, row.error or "unreadable", row)
            continue
        rec, reason, fld = normalise_row(row.data, mapping, default_source=default_source,
                                         require_response=cfg.require_response)
        if rec is None:
            assert reason is not None
            _bad(cfg, report, reason, where, reason, row, fld)
            continue
        key = normalize_question(rec["question"])
        if cfg.dedup and key in seen_questions:
            report.drop("duplicate question", where)
            continue
        seen_questions[key] = len(records)
        if rec["id"] in seen_ids:
            id_collisions += 1
            rec["id"] = question_id(rec["question"])
            k = 2
            while rec["id"] in seen_ids:  # the same question twice (--no-dedup): -2, -3, ...
                rec["id"] = f"{question_id(rec['question'])}-{k}"
                k += 1
        seen_ids.add(rec["id"])
        records.append(rec)
        wheres.append(where)

    decontamination = None
    if problems is not None and records:
        records, decontamination = _decontaminate(records, wheres, cfg, problems, report, progress)
    report.rows_written = len(records)
    if not records:
        # An empty corpus is never a result: and it must not replace a good one.
        why = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "no rows in the input"
        raise InputError(f"no usable rows ({report.rows_read} read; {why}); nothing written",
                         file=report.files[0] if len(report.files) == 1 else cfg.source)
    table = pa.Table.from_pylist(records, schema=CORPUS_SCHEMA)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(out_dir / CORPUS_FILE, table)
    counts = {
        "rows_read": report.rows_read,
        "rows_written": report.rows_written,
        "dropped": dict(report.dropped),
        "decontaminated": decontamination["items_removed"] if decontamination else 0,
        **({"decontaminated_by_method": decontamination["items_removed_by_method"]} if decontamination else {}),
        "id_collisions_rehashed": id_collisions,
    }
    inputs = {f: sha256_file(f) for f in report.files if Path(f).is_file()}
    if problems is not None:
        inputs["exclude"] = hash_obj([problems.benchmark, problems.questions])
        write_json(out_dir / DECONTAMINATION_FILE, decontamination or {})
    write_manifest(
        out_dir,
        config=cfg.model_dump(mode="json"),
        inputs=inputs,
        counts=counts,
        wall_time_s=round(time.time() - t0, 3),
        source=cfg.source,
        preset=mapping.preset,
        mapping=mapping.__dict__,
        dropped_examples=report.examples,
        schema={f.name: str(f.type) for f in CORPUS_SCHEMA},
    )
    return report


def _check_columns(rows: Iterable[_Row], mapping: _Mapping, cfg: IngestConfig) -> Iterator[_Row]:
    """Fail fast (unless --on-error skip) when a file lacks a mapped column entirely."""
    first_checked: set[str] = set()
    for row in rows:
        if row.data is not None and row.file not in first_checked:
            first_checked.add(row.file)
            required = [mapping.question, mapping.response[0]]
            if mapping.answer and mapping.answer_required:
                required.append(mapping.answer)
            missing = [c for c in required if c not in row.data]
            if missing and cfg.on_error != "skip":
                raise InputError(
                    f"missing column {missing[0]!r} (columns: {', '.join(sorted(row.data))}); "
                    "map it with --question-field/--response-field/--answer-field or pick another --preset",
                    file=row.file, row=row.line, field=missing[0],
                )
        yield row


def _bad(cfg: IngestConfig, report: IngestReport, reason: str, where: str, message: str, row: _Row, fld: str | None = None) -> None:
    if cfg.on_error == "fail":
        raise InputError(message, file=row.file, row=row.line, field=fld)
    report.drop(reason, where + (f" ({fld})" if fld else ""))


def normalise_row(
    data: dict, m: _Mapping, *, default_source: str, require_response: bool = True
) -> tuple[dict[str, str] | None, str | None, str | None]:
    """One source row -> (record, None, None) or (None, reason, field)."""
    if m.question not in data:
        return None, f"missing field {m.question!r}", m.question
    if data.get(m.question) is not None and not isinstance(data.get(m.question), str):
        # a number, list or mapping is not a problem statement; its repr would become one
        return None, f"question is not text (a {type(data.get(m.question)).__name__})", m.question
    question = _to_text(data.get(m.question))
    if question is None or not question.strip():
        return None, "empty question", m.question
    question = question.strip()
    response = RESPONSE_BUILDERS[m.response_builder](data, m.response)
    if response is None or not response.strip():
        if require_response:
            return None, "no teacher response", m.response[0]
        response = ""
    answer = None
    raw_answer = data.get(m.answer) if m.answer else None
    if not _answer_like(raw_answer):
        return None, f"answer is not text or a number (a {type(raw_answer).__name__})", m.answer
    if m.answer and m.answer_required and not (_to_text(raw_answer) or "").strip():
        # a required answer is the gold: never replaced by whatever the teacher boxed
        return None, "missing answer", m.answer
    if raw_answer is not None and (_to_text(raw_answer) or "").strip():
        answer = ANSWER_EXTRACTORS[m.answer_extractor](raw_answer)
    if answer is None:
        fallback = data.get(m.fallback_from) if m.fallback_from else response
        answer = ANSWER_EXTRACTORS[m.fallback_extractor](fallback)
    if answer is None or not answer.strip():
        return None, "no extractable answer", m.answer or m.fallback_from or m.response[0]
    source = _to_text(data.get(m.source_field)) if m.source_field else None
    rid = _to_text(data.get(m.id_field)) if m.id_field else None
    used = {m.question, *m.response, m.answer, m.fallback_from, m.id_field, m.source_field}
    meta = {k: v for k, v in data.items() if k not in used and _jsonable(v)}
    rec = {
        "id": rid if rid else question_id(question),
        "question": question,
        "response": response,
        "answer": answer.strip(),
        "source": source or default_source,
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True),
    }
    return rec, None, None


# ----------------------------------------------------------------------------------
# Decontamination and reading back
# ----------------------------------------------------------------------------------
def load_question_set(paths: Sequence[str | Path]) -> set[str]:
    """Normalised questions of benchmark files or registered benchmark names."""
    return {normalize_question(q) for q in load_benchmark_problems(paths).questions}


def _decontaminate(records: list[dict[str, str]], wheres: list[str], cfg: IngestConfig, problems: BenchmarkProblems,
                   report: IngestReport, progress: bool) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Drop the records that match a benchmark problem; the report for decontamination.json."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from .progress import StageProgress

    ids = [r["id"] for r in records]
    questions = [r["question"] for r in records]
    with StageProgress(TextColumn("[bold]decontaminate"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
                       TimeElapsedColumn(), transient=True, disable=not progress) as prog:
        task = prog.add_task("decontaminate", total=len(records))
        t0 = time.time()
        matches = Decontaminator(problems, cfg.decontamination).find(questions, lambda k: prog.advance(task, k))
    dec = contamination_report(problems, matches, ids, questions, cfg.decontamination, wall_s=time.time() - t0)
    kept = []
    for rec, where, m in zip(records, wheres, matches, strict=True):
        if m is None:
            kept.append(rec)
        else:
            report.drop(f"in an excluded benchmark ({m.method})", where)
    return kept, dec


def read_corpus(path: str | Path, *, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a corpus Parquet (a file, or a stage folder holding ``corpus.parquet``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CORPUS_FILE
    if not path.exists():
        raise InputError("corpus not found", file=path)
    table = pq.read_table(path, columns=list(columns) if columns else None)
    need = [c for c in (columns or ("id", "question")) if c not in table.column_names]
    if need:
        raise InputError(f"not a corpus table: missing column {need[0]!r}", file=path, field=need[0])
    return table


# ----------------------------------------------------------------------------------
def _answer_like(v: Any) -> bool:
    """Text, a number, or a list of those (OlympiadBench-style answers); None is 'absent'."""
    if v is None or isinstance(v, str) or (isinstance(v, int | float) and not isinstance(v, bool)):
        return True
    if isinstance(v, list | tuple):
        return all(isinstance(x, str) or (isinstance(x, int | float) and not isinstance(x, bool)) for x in v)
    return False


def _to_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple):
        # OlympiadBench-style list answers: keep them as one comma-separated answer
        parts = [_to_text(x) for x in v]
        return ", ".join(p for p in parts if p)
    return str(v)


def _strip_dollars(s: str) -> str:
    """``$x$`` -> ``x``; ``$69$,$84$`` -> ``69,84`` (each pair, not the outer two)."""
    s = s.strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        inner = s[1:-1]
        if "$" not in inner:
            return inner.strip()
        if s.count("$") % 2 == 0:
            return re.sub(r"\$([^$]*)\$", r"\1", s).strip()
    return s


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _with_progress(rows: Iterable[_Row], *, enabled: bool, limit: int | None) -> Iterator[_Row]:
    if not enabled:
        yield from rows
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from .progress import StageProgress

    with StageProgress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                  TimeElapsedColumn(), transient=True) as prog:
        task = prog.add_task("ingest", total=limit)
        for i, row in enumerate(rows, start=1):
            yield row
            if i % 512 == 0:
                prog.update(task, completed=i)
