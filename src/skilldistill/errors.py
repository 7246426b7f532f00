"""Errors raised for bad user input. They name the file, row and field at fault."""

from __future__ import annotations

from pathlib import Path


class SkilldistillError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(SkilldistillError):
    """Bad input data: names where it is (file, 1-based row/line, field) and what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.file is not None:
            where.append(self.file)
        if row is not None:
            where.append(f"line {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join([', '.join(where)] if where else [])}{': ' if where else ''}{message}")


class TreeError(SkilldistillError):
    """An invalid skill tree. ``path`` is the chain of node names down to the bad node."""

    def __init__(self, message: str, *, path: list[str] | None = None, file: str | Path | None = None):
        self.path = list(path or [])
        self.file = str(file) if file is not None else None
        where = f"at {' -> '.join(self.path)}" if self.path else "at the root"
        prefix = f"{self.file}: " if self.file else ""
        super().__init__(f"{prefix}{where}: {message}")


class ConfigError(SkilldistillError):
    """An invalid recipe or option."""


class BackendError(SkilldistillError, RuntimeError):
    """A model server or engine failed in a way no retry fixes (answers not in the expected
    form, every retry used up, refused credentials). What finished before stays recorded."""


class MalformedReply(BackendError, ValueError):
    """A server answered with something that is not a chat completion (not JSON, no
    ``choices``, the wrong number of them)."""
