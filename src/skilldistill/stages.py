"""The pipeline's stages, in the order a recipe runs them (one numbering everywhere).

The README's "Stages" section and every stage module's docstring use these names; the
pipeline, the report and the CLI's ``--from`` read this tuple.
"""

from __future__ import annotations

STAGES: tuple[str, ...] = ("corpus", "demo", "annotate", "profile", "select", "format", "train", "evaluate", "report")
