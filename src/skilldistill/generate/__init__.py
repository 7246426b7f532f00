"""Student sampling, shared by ``skilldistill profile`` and ``skilldistill evaluate``.

- :mod:`.config`: :class:`GenerationConfig` (model, sampling, prompt), light.
- :mod:`.sampling`: :func:`run_generation`, the resumable ``generations.jsonl`` log and
  ``generations.parquet``.

Names are exported lazily, so ``from skilldistill.generate import GenerationConfig``
loads neither pyarrow nor a backend.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DEFAULT_INSTRUCTION": ".config",
    "SEEDING": ".config",
    "GenerationConfig": ".config",
    "GENERATIONS_LOG": ".sampling",
    "GENERATIONS_PARQUET": ".sampling",
    "GENERATIONS_SCHEMA": ".sampling",
    "load_done": ".sampling",
    "run_generation": ".sampling",
})
