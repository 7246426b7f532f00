"""The embedded demo world: a procedural math corpus with known skills and a tiny student.

- :mod:`skilldistill.demo.generator`: seeded word problems, step-by-step solutions, the
  ground-truth skill chains (leaves of the bundled ``demo`` tree), a held-out eval set.
- :mod:`skilldistill.demo.student`: a small tokenizer + Qwen3-style causal LM trained on a
  skewed mix into the demo's uneven "base model" (cached on disk).
"""

from .generator import (
    LEAF_CHAINS,
    SKILLS,
    WEAK_LEAVES,
    generate_corpus,
    generate_eval_set,
    skewed_weights,
    write_corpus,
)

__all__ = [
    "LEAF_CHAINS",
    "SKILLS",
    "WEAK_LEAVES",
    "generate_corpus",
    "generate_eval_set",
    "skewed_weights",
    "write_corpus",
]
