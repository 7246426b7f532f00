r"""Evaluation: avg@n accuracy of a model on math benchmarks, with per-skill breakdowns.

    skilldistill evaluate --model runs/demo/train/skill/final --benchmarks aime24,math500 \
        --data-dir ../shared/data/benchmarks --out runs/x/evaluate/skill

Benchmarks come from the registry :data:`~skilldistill.benchmarks.BENCHMARKS` (a table,
not code branches): each loads from its usual Hugging Face id when online, or from a local
file in the common harness layout ``<data-dir>/<name>/test.jsonl`` (the layout of math-evaluation-harness,
which ``../shared/data/benchmarks`` follows). Generation and grading are those of
``skilldistill profile`` (:mod:`skilldistill.generate`, :mod:`skilldistill.grading`), so the
student is measured the same way before and after training. Per benchmark the stage
writes ``samples.parquet`` (one row per problem x sample) and ``results.json``.

Modules: ``config`` (EvaluateConfig; light), ``model`` (a LoRA adapter merged before it is
evaluated), ``metrics`` (avg@n, per-skill accuracy), ``scoring`` (one benchmark graded and
written), ``summary`` (the folder's results.json), ``provenance`` (run info, input hashes),
``stage`` (:func:`run_evaluate`).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    # the benchmark registry (skilldistill.benchmarks)
    "BENCHMARKS": "skilldistill.benchmarks",
    "PAPER_BENCHMARKS": "skilldistill.benchmarks",
    "BenchmarkSpec": "skilldistill.benchmarks",
    "BenchItem": "skilldistill.benchmarks",
    "get_spec": "skilldistill.benchmarks",
    "load_benchmark": "skilldistill.benchmarks",
    "EvaluateConfig": ".config",
    "avg_at_n": ".metrics",
    "per_skill_accuracy": ".metrics",
    "SAMPLES_SCHEMA": ".scoring",
    "evaluate_benchmark": ".scoring",
    "load_item_skills": ".scoring",
    "summarize": ".summary",
    "write_summary": ".summary",
    "read_results": ".summary",
    "benchmark_inputs": ".provenance",
    "git_commit": ".provenance",
    "run_info_for": ".provenance",
    "evaluable_model": ".model",
    "run_evaluate": ".stage",
})
