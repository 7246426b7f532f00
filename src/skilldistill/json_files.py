"""Reading a JSON file a stage or the report relies on: a file that is empty, not UTF-8, not
JSON or not an object raises :class:`~skilldistill.errors.InputError` naming it and saying
what to do, instead of a JSONDecodeError traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError


def load_json(path: Path, fix: str = "") -> Any:
    """The JSON in ``path``; a file that is empty, not UTF-8 or not JSON raises InputError
    (``fix``, when given, says what to do and ends the message)."""
    tail = f"; {fix}" if fix else ""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"not UTF-8 text: the file is damaged{tail}", file=path) from None
    except OSError as e:
        raise InputError(f"cannot be read ({e.strerror or e}){tail}", file=path) from None
    if not text.strip():
        raise InputError(f"empty: the file was cut short{tail}", file=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        why = e.msg.removesuffix(" at")
        raise InputError(f"not JSON at line {e.lineno}, column {e.colno} ({why}): the file was cut short or edited{tail}",
                         file=path) from None


def load_object(path: Path, fix: str = "") -> dict[str, Any]:
    """:func:`load_json` of a file that must hold a JSON object."""
    obj = load_json(path, fix)
    if not isinstance(obj, dict):
        raise InputError(f"not a JSON object (got {type(obj).__name__}){'; ' + fix if fix else ''}", file=path)
    return obj


__all__ = ["load_json", "load_object"]
