"""Run-directory artifacts: atomic writes, append-only logs, content hashes, manifests.

Every stage writes through these helpers so that a crash never leaves a half-written
file behind: files are written to a temporary sibling and renamed into place
(``os.replace`` is atomic on POSIX), and long stages append one JSON line per finished
unit of work so a rerun can resume without repeating it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; artifacts get the mode any new file gets (0644 under umask 022).
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def readable_files(folder: str | Path) -> None:
    """Give every file under ``folder`` the mode a new file gets (0644 under umask 022):
    libraries that write through temporary files (model shards) leave some at 0600."""
    mode = 0o666 & ~_UMASK
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink() and (f.stat().st_mode & 0o777) != mode:
            os.chmod(f, mode)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def dumps(obj: Any, **kw: Any) -> str:
    """JSON text that always encodes as UTF-8: non-ASCII kept as is, unless the object holds
    lone surrogates (model output and ``\\ud800`` escapes can), which are then escaped."""
    text = json.dumps(obj, ensure_ascii=False, default=_json_default, **kw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, ensure_ascii=True, default=_json_default, **kw)
    return text


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, dumps(obj, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_parquet(path: str | Path, table: pa.Table | Any) -> Path:
    """Write a pyarrow Table (or a pandas DataFrame) atomically."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(dumps(row) + "\n")
    return Path(path)


class AppendLog:
    """Append-only JSONL log of finished work, safe against crashes mid-write.

    Each record is one line written with a single ``write`` and flushed. On reading, a
    torn last line (the process died while writing it) is ignored and truncated away on
    the next open for append, so the log stays valid JSONL.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._f = None

    def read(self) -> list[dict]:
        return list(self.iter())

    def iter(self) -> Iterator[dict]:
        """Every record. A torn last line (a crash mid-write) is not a record; a damaged line
        in the middle (a disk or an editor) is skipped with a warning, and the records after
        it still count."""
        if not self.path.exists():
            return
        bad: list[int] = []
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    break  # torn tail from a crash: not a finished record
                line = raw.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    bad.append(line_no)
                    continue
                if isinstance(rec, dict):
                    yield rec
                else:
                    bad.append(line_no)
        if bad:
            import logging

            logging.getLogger(__name__).warning("%s: skipped %d unreadable line(s) (line %s%s)", self.path, len(bad),
                                                ", ".join(map(str, bad[:5])), ", ..." if len(bad) > 5 else "")

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                f.truncate(cut)

    def open(self) -> AppendLog:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            self._f = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, record: dict) -> None:
        self.append_many([record])

    def append_many(self, records: Iterable[dict]) -> None:
        self.open()
        assert self._f is not None
        text = "".join(dumps(r) + "\n" for r in records)
        if not text:
            return
        self._f.write(text)
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> AppendLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_obj(obj: Any) -> str:
    """Stable hash of a JSON-able object (sorted keys)."""
    return sha256_text(dumps(obj, sort_keys=True))


def library_versions(names: Iterable[str] = ("skilldistill", "torch", "transformers", "trl", "datasets", "math-verify", "vllm", "sentence-transformers")) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def write_manifest(stage_dir: str | Path, *, config: Any, inputs: dict[str, str], counts: dict[str, Any] | None = None, wall_time_s: float | None = None, **extra: Any) -> Path:
    """Write ``manifest.json``: the stage's config, input hashes, versions, counts, time.

    A stage is complete when its manifest exists and its ``config``/``inputs`` match
    what a rerun would use (see :func:`manifest_matches`).
    """
    manifest = {
        "config": config,
        "inputs": inputs,
        "counts": counts or {},
        "wall_time_s": wall_time_s,
        "versions": library_versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    return write_json(Path(stage_dir) / MANIFEST, manifest)


def manifest_matches(stage_dir: str | Path, *, config: Any, inputs: dict[str, str]) -> bool:
    path = Path(stage_dir) / MANIFEST
    if not path.exists():
        return False
    try:
        m = read_json(path)
    except (OSError, json.JSONDecodeError):
        return False
    return hash_obj(m.get("config")) == hash_obj(config) and m.get("inputs") == inputs


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class FolderLock:
    """One process at a time on an output folder (``<folder>/.skilldistill.lock``).

    An exclusive ``flock`` on the lock file, taken without waiting: a second process on the
    same folder is refused with who holds it and since when. The kernel drops the lock
    when its holder dies (``kill -9`` included), so a lock left by a killed process is
    simply taken over; the file only records the last holder.

        with FolderLock(out_dir, what="annotate"):
            ...
    """

    NAME = ".skilldistill.lock"

    def __init__(self, folder: str | Path, *, what: str = "skilldistill") -> None:
        self.folder = Path(folder)
        self.what = what
        self._f: Any = None

    def acquire(self) -> FolderLock:
        import fcntl
        import socket
        import sys

        from .errors import ConfigError

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.NAME
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                holder = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            f.close()
            who = (f"{holder.get('what', 'another process')} (pid {holder.get('pid', '?')} on "
                   f"{holder.get('host', '?')}, since {holder.get('since', '?')})")
            raise ConfigError(f"{self.folder} is in use by {who}: wait for it to finish or stop it; "
                              "two processes on one folder would repeat and mix each other's work") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "command": " ".join(sys.argv)[:500]}))
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None:
            import fcntl

            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def locked_stage(what: str, *, out_arg: str = "out_dir", main_rank_only: bool = False) -> Any:
    """Decorator: the stage function runs holding ``FolderLock`` on its output folder.

    ``out_arg`` names the parameter that holds the folder. ``main_rank_only``: under
    ``accelerate launch`` only rank 0 takes the lock (the other ranks of the same job share
    the folder; a second job is still refused by rank 0).

        @locked_stage("select")
        def run_select(skills_parquet, out_dir, config=None, ...): ...
    """
    import functools
    import inspect

    def decorate(fn: Any) -> Any:
        signature = inspect.signature(fn)
        if out_arg not in signature.parameters:
            raise TypeError(f"{fn.__qualname__} has no parameter {out_arg!r} to lock")

        @functools.wraps(fn)
        def run_locked(*args: Any, **kwargs: Any) -> Any:
            folder = signature.bind(*args, **kwargs).arguments[out_arg]
            if main_rank_only and int(os.environ.get("RANK", "0")) != 0:
                return fn(*args, **kwargs)
            with FolderLock(folder, what=what):
                return fn(*args, **kwargs)

        return run_locked

    return decorate
