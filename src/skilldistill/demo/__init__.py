"""The embedded demo world: a procedural math corpus with known skills and a tiny student.

- :mod:`skilldistill.demo.generator`: seeded word problems, step-by-step solutions, the
  ground-truth skill chains (leaves of the bundled ``demo`` tree), a held-out eval set.
- :mod:`skilldistill.demo.student_config`: the student's settings (the recipe's
  ``demo.student``) and the leaves it is left weak on; light.
- :mod:`skilldistill.demo.student`: a small tokenizer + Qwen3-style causal LM trained on a
  skewed mix into the demo's uneven "base model" (cached on disk).
- :mod:`skilldistill.demo.pool`: the generated pool of a recipe's ``demo`` section.
- :mod:`skilldistill.demo.attribution_score`: attribution measured against the true skills.
- :mod:`skilldistill.demo.targets`: the demo's claims, checked on its own results.

Names are exported lazily: importing the package (or its light ``student_config``) imports
neither pyarrow nor torch.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LEAF_CHAINS": ".generator",
    "SKILLS": ".generator",
    "WEAK_LEAVES": ".student_config",
    "StudentConfig": ".student_config",
    "attribution_accuracy": ".attribution_score",
    "demo_pool": ".pool",
    "generate_corpus": ".generator",
    "generate_eval_set": ".generator",
    "skewed_weights": ".generator",
    "write_corpus": ".generator",
})
