"""The corpus table: its schema, the files of an ingest folder, and reading it back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError

CORPUS_FILE = "corpus.parquet"
CORPUS_MANIFEST = "manifest.json"
DECONTAMINATION_FILE = "decontamination.json"
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
