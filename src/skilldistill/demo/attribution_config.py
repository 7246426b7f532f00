"""Where the demo's skills come from (the recipe's ``demo.attribution``), as annotate settings.
Light: no stage code, so the recipe loads without it.

- ``embedding``: the offline MiniLM attributor (the demo's default, chosen on the development split);
- ``seed-labels``: per-node classifiers learnt from the generator's true skills of a seeded share of
  the pool (``demo.seed_label_share``, standing in for a few hundred hand labels), labelling the rest;
- ``true``: the generator's skills themselves, read as labels (attribution's upper bound).

``skilldistill demo`` adds ``skill-plain`` under each source other than the recipe's (arms
``skill-plain-<source>``, the pool attributed that way under ``pools/``), so the report shows what
better attribution buys (docs/demo.md, "Attribution sources").
"""

from __future__ import annotations

from typing import Any, Literal

AttributionSource = Literal["embedding", "seed-labels", "true"]
SOURCES: tuple[str, ...] = ("embedding", "seed-labels", "true")
SEED_LABELS = "demo:seed_labels"  # the demo stage's seed labels (demo/seed_labels.jsonl), resolved when annotate runs
SEED_LABELS_FILE = "seed_labels.jsonl"
SEED_LABELS_KEY = "seed_labels"  # their stage and folder in a run (skilldistill.demo.seed_labels)


def source_annotate(source: str) -> dict[str, Any]:
    """The annotate settings (overrides of the recipe's section) of an attribution source."""
    if source == "embedding":
        return {"backend": "embedding"}
    if source == "true":
        return {"backend": "labels", "labels": {"label_field": "true_skills"}}
    if source == "seed-labels":
        return {"backend": "distilled", "distilled": {"train_labels": SEED_LABELS, "features": "tfidf"}}
    raise ValueError(f"unknown attribution source {source!r}; sources: {', '.join(SOURCES)}")


def source_arm(source: str) -> dict[str, Any]:
    """``skill-plain`` on the pool as ``source`` attributes it."""
    return {"name": f"skill-plain-{source}", "annotate": source_annotate(source),
            "select": {"strategy": "skill"}, "format": {"style": "plain"}}


__all__ = ["SEED_LABELS", "SEED_LABELS_FILE", "SEED_LABELS_KEY", "SOURCES", "AttributionSource", "source_annotate", "source_arm"]
