"""``skilldistill ingest``: read the source, normalise each row, drop repeated questions and
benchmark copies, write ``corpus.parquet`` and ``manifest.json``."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..artifacts import (
    hash_obj,
    locked_stage,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
)
from ..decontaminate.problems import BenchmarkProblems, load_benchmark_problems
from ..errors import InputError
from ..rows import Row
from .config import IngestConfig
from .dedup import RepeatFilter, drop_benchmark_copies
from .mapping import normalise_row
from .source import CorpusSource, open_source, with_progress
from .table import CORPUS_FILE, CORPUS_SCHEMA, DECONTAMINATION_FILE


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


@dataclass
class _IngestRun:
    """What the steps of one ingest pass along."""

    cfg: IngestConfig
    out_dir: Path
    source: CorpusSource
    problems: BenchmarkProblems | None  # the --exclude benchmarks, when there are any
    started: float
    report: IngestReport = field(default_factory=IngestReport)
    records: list[dict[str, str]] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)  # file:line of each record
    id_collisions: int = 0
    decontamination: dict[str, Any] | None = None  # decontamination.json

    def bad_row(self, reason: str, where: str, message: str, row: Row, fld: str | None = None) -> None:
        """A row that cannot be used: an error under --on-error fail, else dropped and counted."""
        if self.cfg.on_error == "fail":
            raise InputError(message, file=row.file, row=row.line, field=fld)
        self.report.drop(reason, where + (f" ({fld})" if fld else ""))


@locked_stage("ingest")
def run_ingest(cfg: IngestConfig, out_dir: str | Path, *, progress: bool = True) -> IngestReport:
    """Read ``cfg.source``, normalise, deduplicate, decontaminate; write ``out_dir``.

    Writes ``corpus.parquet`` and ``manifest.json`` atomically; on an error nothing in
    ``out_dir`` is replaced. Returns the report (counts and dropped rows by reason).
    """
    started = time.time()
    # Benchmarks load first: a missing or unreadable one fails before any corpus work.
    problems = load_benchmark_problems(cfg.exclude, data_dir=cfg.decontamination.data_dir) if cfg.exclude else None
    source = open_source(cfg)
    run = _IngestRun(cfg, Path(out_dir), source, problems, started)
    run.report.files = source.files
    _read_records(run, progress=progress)
    _drop_benchmark_copies(run, progress=progress)
    _refuse_an_empty_corpus(run)
    _write_corpus(run)
    return run.report


ingest = run_ingest


def _read_records(run: _IngestRun, *, progress: bool) -> None:
    """Every row of the source (up to the limit), normalised, without repeated questions."""
    cfg, report = run.cfg, run.report
    repeats = RepeatFilter(drop_repeats=cfg.dedup)
    for row in with_progress(run.source.rows, enabled=progress, limit=cfg.limit):
        if cfg.limit is not None and report.rows_read >= cfg.limit:
            break
        report.rows_read += 1
        where = f"{row.file}:{row.line}"
        rec = _normalised(run, row, where)
        if rec is None:
            continue
        if not repeats.admit(rec):
            report.drop("duplicate question", where)
            continue
        run.records.append(rec)
        run.wheres.append(where)
    run.id_collisions = repeats.id_collisions


def _normalised(run: _IngestRun, row: Row, where: str) -> dict[str, str] | None:
    """The record of one row, or None when the row is unusable (reported)."""
    if row.data is None:
        run.bad_row("unreadable line", where, row.error or "unreadable", row)
        return None
    rec, reason, fld = normalise_row(row.data, run.source.mapping, default_source=run.source.default_source,
                                     require_response=run.cfg.require_response)
    if rec is None:
        assert reason is not None
        run.bad_row(reason, where, reason, row, fld)
    return rec


def _drop_benchmark_copies(run: _IngestRun, *, progress: bool) -> None:
    if run.problems is None or not run.records:
        return
    run.records, dropped, run.decontamination = drop_benchmark_copies(
        run.records, run.wheres, run.problems, run.cfg.decontamination, progress=progress)
    for reason, where in dropped:
        run.report.drop(reason, where)


def _refuse_an_empty_corpus(run: _IngestRun) -> None:
    report = run.report
    report.rows_written = len(run.records)
    if not run.records:
        # An empty corpus is never a result: and it must not replace a good one.
        why = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "no rows in the input"
        raise InputError(f"no usable rows ({report.rows_read} read; {why}); nothing written",
                         file=report.files[0] if len(report.files) == 1 else run.cfg.source)


def _write_corpus(run: _IngestRun) -> None:
    """corpus.parquet, decontamination.json (with --exclude) and the manifest."""
    cfg, report, decontamination = run.cfg, run.report, run.decontamination
    table = pa.Table.from_pylist(run.records, schema=CORPUS_SCHEMA)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(run.out_dir / CORPUS_FILE, table)
    counts = {
        "rows_read": report.rows_read,
        "rows_written": report.rows_written,
        "dropped": dict(report.dropped),
        "decontaminated": decontamination["items_removed"] if decontamination else 0,
        **({"decontaminated_by_method": decontamination["items_removed_by_method"]} if decontamination else {}),
        "id_collisions_rehashed": run.id_collisions,
    }
    inputs = {f: sha256_file(f) for f in report.files if Path(f).is_file()}
    if run.problems is not None:
        inputs["exclude"] = hash_obj([run.problems.benchmark, run.problems.questions])
        write_json(run.out_dir / DECONTAMINATION_FILE, decontamination or {})
    write_manifest(
        run.out_dir,
        config=cfg.model_dump(mode="json"),
        inputs=inputs,
        counts=counts,
        wall_time_s=round(time.time() - run.started, 3),
        source=cfg.source,
        preset=run.source.mapping.preset,
        mapping=run.source.mapping.__dict__,
        dropped_examples=report.examples,
        schema={f.name: str(f.type) for f in CORPUS_SCHEMA},
    )
