"""Command-line interface: ``skilldistill VERB``. Each verb is a thin layer over the Python API."""

from __future__ import annotations

# Importing a module registers its verbs on ``app``.
from . import ingest as _ingest  # noqa: F401
from . import tree as _tree  # noqa: F401
from .app import app, console


def main() -> None:
    app()


__all__ = ["app", "console", "main"]
