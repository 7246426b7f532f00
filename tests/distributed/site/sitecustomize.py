"""``sitecustomize`` for tests: a process whose ``RANK`` is not 0 records every file it opens
for writing (or creates, renames, removes) under ``SKILLDISTILL_AUDIT_ROOT`` into
``SKILLDISTILL_AUDIT_LOG``-<rank>, so a test can assert that only rank 0 writes a run's files."""

from __future__ import annotations

import os
import sys

_root = os.environ.get("SKILLDISTILL_AUDIT_ROOT")
_log = os.environ.get("SKILLDISTILL_AUDIT_LOG")
_rank = os.environ.get("RANK", "0")

if _root and _log and _rank != "0":
    _root = os.path.realpath(_root)
    _seen: set[str] = set()

    def _record(path: object) -> None:
        try:
            full = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if full.startswith(_root) and full not in _seen:
            _seen.add(full)
            with open(f"{_log}-{_rank}", "a", encoding="utf-8") as f:
                f.write(full + "\n")

    def _hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) >= 2:
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing:
                _record(args[0])
        elif event in ("os.rename", "os.replace", "os.remove", "os.unlink", "os.mkdir", "shutil.rmtree"):
            _record(args[0])

    sys.addaudithook(_hook)
