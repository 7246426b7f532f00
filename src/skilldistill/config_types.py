"""Checks of config values that pydantic's lax mode lets through (light: pydantic only).

Lax mode reads a boolean where a number is declared as that number: ``budget: true`` is a
budget of 1, ``learning_rate: true`` 1.0 (YAML 1.1 also spells true ``yes`` and ``on``).
Strict mode would refuse it, but also the strings lax mode rightly reads as numbers (PyYAML
loads ``1e-5`` as the string ``'1e-5'``). :func:`bools_read_as_numbers` compares what a file
gave with what validation made of it instead, whatever the declared type (``int``, ``float``,
``int | None``, a list of them, a field of a nested or chosen union model).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def bools_read_as_numbers(raw: Any, validated: Any, loc: tuple[Any, ...] = ()) -> list[str]:
    """The dotted keys where ``raw`` (the data as read) holds a boolean that validation turned
    into a number in ``validated`` (the model or value made from it)."""
    if isinstance(raw, bool):
        number = isinstance(validated, (int, float)) and not isinstance(validated, bool)
        return [".".join(str(p) for p in loc)] if number else []
    if isinstance(raw, (list, tuple)) and isinstance(validated, (list, tuple)) and len(raw) == len(validated):
        return [k for i, (r, v) in enumerate(zip(raw, validated, strict=True))
                for k in bools_read_as_numbers(r, v, (*loc, i))]
    if not isinstance(raw, dict):
        return []
    out: list[str] = []
    for key, value in raw.items():
        if isinstance(validated, BaseModel):
            name = _field_name(type(validated), key)
            if name is None:
                continue
            out += bools_read_as_numbers(value, getattr(validated, name, None), (*loc, key))
        elif isinstance(validated, dict) and key in validated:
            out += bools_read_as_numbers(value, validated[key], (*loc, key))
    return out


def _field_name(model: type[BaseModel], key: Any) -> str | None:
    """The field ``key`` (a name or an alias) sets on ``model``, if any."""
    fields = model.model_fields
    if key in fields:
        return str(key)
    return next((name for name, f in fields.items() if f.alias == key), None)


BOOL_FOR_NUMBER = "a boolean where a number is expected (pydantic would read true as 1, false as 0)"

__all__ = ["BOOL_FOR_NUMBER", "bools_read_as_numbers"]
