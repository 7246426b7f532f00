"""Command-line interface: ``skilldistill VERB``. Each verb is a thin layer over the Python API."""

from __future__ import annotations

# Importing a module registers its verbs on ``app``.
from . import annotate as _annotate  # noqa: F401
from . import demo as _demo  # noqa: F401
from . import evaluate as _evaluate  # noqa: F401
from . import format as _format  # noqa: F401
from . import ingest as _ingest  # noqa: F401
from . import plan as _plan  # noqa: F401
from . import profile as _profile  # noqa: F401
from . import report as _report  # noqa: F401
from . import run as _run  # noqa: F401
from . import select as _select  # noqa: F401
from . import train as _train  # noqa: F401
from . import tree as _tree  # noqa: F401
from .app import app, console


def main() -> None:
    app()


__all__ = ["app", "console", "main"]
