"""The demo's generated training pool for a recipe's ``demo`` section (what the ``corpus``
stage writes when a recipe has no corpus, and what ``skilldistill plan`` samples)."""

from __future__ import annotations

from typing import Any

from .generator import generate_corpus, skewed_weights


def demo_pool(demo: Any) -> Any:
    """The demo's generated pool (a pyarrow Table) for a recipe's ``demo`` section.

    With ``pool_weak_weight`` below 1, the student's weak leaves are rare in the pool too."""
    weights = None
    if demo.pool_weak_weight != 1.0:
        weights = skewed_weights(demo.pool_weak_weight, weak=demo.student.weak_leaves)
    return generate_corpus(demo.pool_size, demo.seed, leaf_weights=weights)


__all__ = ["demo_pool"]
