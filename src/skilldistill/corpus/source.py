"""Opening the corpus source: local files or a Hugging Face dataset, the field mapping that
fits it, and its rows with their locations (file, 1-based line/row) for error messages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..rows import (
    Row,
    is_local_source,
    iter_hf_rows,
    iter_local_rows,
    list_local_files,
    local_columns,
)
from .config import IngestConfig
from .mapping import FieldMapping, resolve_mapping
from .presets import PRESETS


@dataclass
class CorpusSource:
    """An opened source: its rows (read lazily), the mapping, and what it is called."""

    rows: Iterable[Row]
    mapping: FieldMapping
    default_source: str  # a record's source when its row names none
    files: list[str]


def open_source(cfg: IngestConfig) -> CorpusSource:
    """The source of ``cfg``: local files when it is a path, else a Hugging Face dataset."""
    return _open_local(cfg) if is_local_source(cfg.source) else _open_hub(cfg)


def _open_local(cfg: IngestConfig) -> CorpusSource:
    src_path = Path(cfg.source).expanduser()
    if not src_path.exists():
        raise InputError("no such file or folder", file=src_path)
    files = list_local_files(src_path)
    detect = cfg.preset in (None, "auto") and not cfg.question_field
    mapping = resolve_mapping(cfg, local_columns(files[0]) if detect else None)
    # e.g. corpora/math_test/test.jsonl -> 'math_test/test': the folder says more than 'test'
    default_source = f"{src_path.parent.name}/{src_path.stem}" if src_path.is_file() else src_path.name
    rows = (r for f in files for r in check_columns(iter_local_rows(f), mapping, cfg))
    return CorpusSource(rows, mapping, default_source, [str(f) for f in files])


def _open_hub(cfg: IngestConfig) -> CorpusSource:
    preset = PRESETS.get(cfg.preset) if cfg.preset and cfg.preset != "auto" else None
    if preset is None and not cfg.question_field:
        raise InputError("a Hugging Face source needs --preset (or explicit --question-field ...)", file=cfg.source)
    mapping = resolve_mapping(cfg)
    split = cfg.split or (preset.default_split if preset else "train")
    config_name = cfg.config_name or (preset.default_config if preset else None)
    rows = iter_hf_rows(cfg.source, config_name, split, streaming=cfg.limit is not None)
    return CorpusSource(check_columns(rows, mapping, cfg), mapping, cfg.source, [cfg.source])


def check_columns(rows: Iterable[Row], mapping: FieldMapping, cfg: IngestConfig) -> Iterator[Row]:
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


def with_progress(rows: Iterable[Row], *, enabled: bool, limit: int | None) -> Iterator[Row]:
    """``rows``, with a progress bar while they are read."""
    if not enabled:
        yield from rows
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..progress import StageProgress

    with StageProgress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                       TimeElapsedColumn(), transient=True) as prog:
        task = prog.add_task("ingest", total=limit)
        for i, row in enumerate(rows, start=1):
            yield row
            if i % 512 == 0:
                prog.update(task, completed=i)
