r"""Reading rows of problem files, shared by ``ingest``, decontamination and the benchmarks.

Rows come from local ``.jsonl``/``.json``/``.parquet`` files (and folders of them) or from a
Hugging Face dataset, each with its location (file, 1-based line or row) so that an error
names where it is. The values of a row are read with :func:`to_text` (numbers and lists of
answers become text), and a gold answer with one of the :data:`ANSWER_EXTRACTORS`.

Light to import: pyarrow and ``datasets`` load only when a Parquet file or a hub dataset is read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .textutil import gsm8k_final, last_boxed

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class Row:
    """One row and where it was read: ``data`` is None when the row is unreadable (``error`` says why)."""

    file: str
    line: int
    data: dict | None
    error: str | None = None


# ----------------------------------------------------------------------------------
# Local files and Hugging Face datasets
# ----------------------------------------------------------------------------------
def is_local_source(source: str) -> bool:
    p = Path(source)
    return p.exists() or p.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~"))


def list_local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
        if not files:
            raise InputError(f"no {'/'.join(LOCAL_SUFFIXES)} files in folder", file=path)
        return files
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise InputError(f"unsupported file type {path.suffix!r}; use {', '.join(LOCAL_SUFFIXES)}", file=path)
    return [path]


def iter_local_rows(path: Path) -> Iterator[Row]:
    """The rows of one local file. JSON text may be UTF-8 (with or without a byte-order mark) or
    UTF-16/UTF-32 with a byte-order mark; UTF-16/32 without one is refused, naming the encoding."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    encoding = text_encoding(path)
    if suffix == ".json":
        try:
            text = path.read_text(encoding=encoding)
        except UnicodeDecodeError as e:
            raise InputError(f"not {_ENCODING_NAMES[encoding]} text (byte {e.start}: {e.reason})", file=path) from None
        json_rows = _json_document_rows(path, text)
        if json_rows is not None:
            yield from json_rows
            return
    if encoding in ("utf-8", "utf-8-sig"):
        yield from _json_lines_rows(path)  # also .json files that hold one object per line
    else:
        yield from _decoded_json_lines_rows(path, encoding)


# Byte-order marks, longest first (UTF-32-LE's starts with UTF-16-LE's).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}


def text_encoding(path: Path) -> str:
    """``utf-8``, ``utf-8-sig``, ``utf-16`` or ``utf-32``, from the file's byte-order mark.

    JSON text never holds a raw NUL byte, so NULs in the first bytes without a mark are UTF-16
    or UTF-32 whose byte order is unknown: refused, naming the encoding, never read as lines of
    garbage that are dropped one by one."""
    with open(path, "rb") as f:
        head = f.read(4)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" in head:
        kind = "UTF-32" if head.count(b"\x00") >= 3 else "UTF-16"
        raise InputError(f"looks like {kind} without a byte-order mark (NUL bytes in the first characters); "
                         "save it as UTF-8, or with a byte-order mark", file=path)
    return "utf-8"


def _decoded_json_lines_rows(path: Path, encoding: str) -> Iterator[Row]:
    """JSON lines of a UTF-16/UTF-32 file, decoded as text (its lines are not byte lines)."""
    with open(path, encoding=encoding, newline="\n") as f:
        i = 0
        try:
            for i, line in enumerate(f, start=1):  # noqa: B007 - i names the line a decoding error is on
                if not line.strip():
                    continue
                yield _json_line_row(path, i, line)
        except UnicodeDecodeError as e:
            raise InputError(f"not valid {_ENCODING_NAMES[encoding]} text after line {i} ({e.reason})",
                             file=path) from None


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several kinds for a file that is not Parquet
        raise InputError(f"not a readable Parquet file ({type(e).__name__}: {e})", file=path) from None
    line = 0
    for batch in pf.iter_batches(batch_size=4096):
        for rec in batch.to_pylist():
            line += 1
            yield Row(str(path), line, rec)


def _json_document_rows(path: Path, text: str) -> list[Row] | None:
    """The rows of a ``.json`` file holding one document (a list of records, or an object
    holding one list of records, or one record); None when it is JSON lines saved as ``.json``."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", file=path) from e
        return [Row(str(path), i, rec) if isinstance(rec, dict)
                else Row(str(path), i, None, f"element is {type(rec).__name__}, not an object")
                for i, rec in enumerate(data, start=1)]
    if stripped.startswith("{"):
        # Either one object holding a list of records, or JSON lines saved as .json.
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
            if len(lists) == 1:
                return [Row(str(path), i, rec if isinstance(rec, dict) else None,
                            None if isinstance(rec, dict) else "element is not an object")
                        for i, rec in enumerate(lists[0], start=1)]
            return [Row(str(path), 1, data)]
    return None


def _json_lines_rows(path: Path) -> Iterator[Row]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            yield _json_line_row(path, i, raw)


def _json_line_row(path: Path, i: int, raw: bytes | str) -> Row:
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return Row(str(path), i, None, f"unreadable line: {e}")
    if not isinstance(rec, dict):
        return Row(str(path), i, None, f"line holds a {type(rec).__name__}, not an object")
    return Row(str(path), i, rec)


def local_columns(path: Path) -> list[str]:
    """Column names of a local file (from the schema or the first readable row)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_schema(path).names
        except Exception as e:
            raise InputError(f"not a readable Parquet file ({type(e).__name__}: {e})", file=path) from None
    for row in iter_local_rows(path):
        if row.data is not None:
            return list(row.data)
    return []


def iter_hf_rows(dataset: str, config_name: str | None, split: str, *, streaming: bool) -> Iterator[Row]:
    """Rows of a Hugging Face dataset (network needed unless it is in the local cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset, config_name, split=split, streaming=streaming)
    except Exception as e:  # network, auth, unknown id: one clear message
        raise InputError(
            f"cannot load Hugging Face dataset {dataset!r} (config={config_name}, split={split}): {e}. "
            "Offline? Pass a local .jsonl/.json/.parquet file or folder instead."
        ) from e
    for i, rec in enumerate(ds, start=1):
        yield Row(f"{dataset}[{split}]", i, dict(rec))


# ----------------------------------------------------------------------------------
# Values of a row
# ----------------------------------------------------------------------------------
def to_text(v: Any) -> str | None:
    """A row value as text: None stays None, and so do NaN (a missing value in Arrow and pandas)
    and +-inf (no number); a whole float loses its ``.0`` (``1e300`` stays ``1e+300``, never a
    301-digit integer); a list of answers becomes one comma-separated answer.

    Check a value's kind first (:func:`answer_problem`, :func:`text_problem`): this converts
    whatever it is given."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        # from 1e16 on, repr's exponent form: str(int(1e300)) would be 301 digits that were never in the data
        return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple):
        # OlympiadBench-style list answers: keep them as one comma-separated answer
        parts = [to_text(x) for x in v]
        return ", ".join(p for p in parts if p)
    return str(v)


def is_missing(v: Any) -> bool:
    """None, or NaN (how Arrow and pandas write a missing number)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _kind(v: Any) -> str:
    return repr(v) if isinstance(v, float) or v is None else f"a {type(v).__name__}"


def answer_problem(v: Any, what: str = "answer") -> str | None:
    """Why ``v`` cannot be a gold answer, or None: text, a finite number, a list of those
    (OlympiadBench-style answers), or missing (None, NaN) are answers."""
    if is_missing(v) or isinstance(v, str) or _finite_number(v):
        return None
    if isinstance(v, float):
        return f"{what} is not a finite number ({v!r})"
    if isinstance(v, list | tuple):
        bad = [x for x in v if not (isinstance(x, str) or _finite_number(x))]
        return f"{what} is not text or a number (a list holding {_kind(bad[0])})" if bad else None
    return f"{what} is not text or a number (a {type(v).__name__})"


def answer_like(v: Any) -> bool:
    """Text, a finite number, or a list of those (OlympiadBench-style answers); None and NaN are 'absent'."""
    return answer_problem(v) is None


def text_problem(v: Any, what: str, *, numbers: bool = False) -> str | None:
    """Why ``v`` cannot be the text ``what`` (a response, an id), or None. Missing (None, NaN) is
    fine; with ``numbers``, a finite number (an integer id) is too. A list, mapping, bool or bytes
    never is: its repr would become the text."""
    if is_missing(v) or isinstance(v, str) or (numbers and _finite_number(v)):
        return None
    return f"{what} is not text{' or a number' if numbers else ''} (a {type(v).__name__})"


def jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def strip_dollars(s: str) -> str:
    """``$x$`` -> ``x``; ``$69$,$84$`` -> ``69,84`` (each pair, not the outer two)."""
    s = s.strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        inner = s[1:-1]
        if "$" not in inner:
            return inner.strip()
        if s.count("$") % 2 == 0:
            return re.sub(r"\$([^$]*)\$", r"\1", s).strip()
    return s


# -- answer extractors: (raw value) -> gold answer or None ---------------------------
def _answer_auto(v: Any) -> str | None:
    s = to_text(v)
    if s is None or not s.strip():
        return None
    if "\\boxed" in s or "\\fbox" in s:
        return last_boxed(s)
    if "####" in s:
        return gsm8k_final(s)
    return strip_dollars(s.strip())


def _answer_boxed_or_short(v: Any) -> str | None:
    """A \\boxed{} answer, else the whole value if it is short (s1K mixes both)."""
    s = to_text(v)
    if s is None:
        return None
    if "\\boxed" in s or "\\fbox" in s:
        return last_boxed(s)
    s = s.strip()
    return strip_dollars(s) if s and len(s) <= 200 else None


ANSWER_EXTRACTORS: dict[str, Callable[[Any], str | None]] = {
    "auto": _answer_auto,
    "boxed": lambda v: last_boxed(to_text(v) or ""),
    "gsm8k": lambda v: gsm8k_final(to_text(v) or ""),
    "boxed_or_short": _answer_boxed_or_short,
    "raw": lambda v: strip_dollars(s.strip()) if (s := to_text(v)) else None,
    # for whole solutions: a boxed answer or GSM8K's '####', never the whole text
    "final": lambda v: last_boxed(s) or gsm8k_final(s) if (s := to_text(v)) else None,
}
