"""CLI options built from a config's fields: the default and the help text live once, on the
pydantic field, and the option only adds its flags.

    budget: int = config_option(SelectConfig, "budget", "--budget", "-n")

Bounds declared on the field (``ge``/``le``/``gt``/``lt``) are checked by pydantic when the
config is built from the options, so a bad value is reported once, in the config's words.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic import BaseModel


def field_default(config_cls: type[BaseModel], field: str) -> Any:
    """The declared default of ``config_cls.field`` (default factories called)."""
    info = config_cls.model_fields[field]
    return info.get_default(call_default_factory=True)


def field_help(config_cls: type[BaseModel], field: str) -> str | None:
    """The field's description, as the option's help."""
    return config_cls.model_fields[field].description


def config_option(config_cls: type[BaseModel], field: str, *flags: str, default: Any = ..., help: str | None = None,
                  **typer_kwargs: Any) -> Any:
    """A ``typer.Option`` for ``config_cls.field``: its default and help from the field unless
    given here (``default=`` for a CLI-only default such as ``None`` meaning "the config's")."""
    if field not in config_cls.model_fields:
        raise KeyError(f"{config_cls.__name__} has no field {field!r}")
    value = field_default(config_cls, field) if default is ... else default
    if isinstance(value, tuple):  # typer reads a tuple default as a multi-value option
        value = list(value)
    return typer.Option(value, *flags, help=help if help is not None else field_help(config_cls, field), **typer_kwargs)
