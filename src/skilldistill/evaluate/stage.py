"""``skilldistill evaluate``: generate n samples per benchmark problem with the model, grade
them, and write per-benchmark results and the summary."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifacts import FolderLock, locked_stage
from ..benchmarks import BenchItem, load_benchmark
from ..generate.sampling import run_generation
from ..llm.factory import make_backend
from .config import EvaluateConfig
from .model import evaluable_model
from .provenance import run_info_for
from .scoring import evaluate_benchmark
from .summary import write_summary

if TYPE_CHECKING:
    from ..generate.config import GenerationConfig
    from ..llm.base import ChatBackend

log = logging.getLogger(__name__)


@locked_stage("evaluate")
def run_evaluate(
    out_dir: str | Path,
    config: EvaluateConfig,
    generation: GenerationConfig,
    *,
    backend: ChatBackend | None = None,
    show_progress: bool = True,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate ``generation.backend.model`` on every configured benchmark.

    Writes ``out_dir/<benchmark>/{generations.jsonl, generations.parquet, samples.parquet,
    results.json}`` and ``out_dir/results.json`` (summary + all benchmarks). Generation
    resumes from each benchmark's log, so a killed run repeats no finished sample;
    ``fresh`` first removes everything in ``out_dir`` (under its lock), so nothing is resumed.
    """
    out_dir = Path(out_dir)
    if fresh:
        _clear(out_dir)
    benches = _load_benchmarks(config)  # all loaded (and validated) before the model is
    if backend is None:
        generation = _with_evaluable_model(generation)
    own = backend is None
    backend = backend or make_backend(generation.backend)
    try:
        results = _evaluate_each(benches, out_dir, config, generation, backend, show_progress=show_progress)
    finally:
        if own:
            backend.close()
    write_summary(out_dir, results)
    return results


def _clear(out_dir: Path) -> None:
    """Remove everything in ``out_dir`` but the lock held on it."""
    for child in out_dir.iterdir():
        if child.name == FolderLock.NAME:
            continue  # the lock held right now: removing it would let a second process in
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _load_benchmarks(config: EvaluateConfig) -> dict[str, list[BenchItem]]:
    return {
        name: load_benchmark(name, data_dir=config.data_dir, path=config.files.get(name), limit=config.limit)
        for name in config.benchmarks
    }


def _with_evaluable_model(generation: GenerationConfig) -> GenerationConfig:
    """``generation`` with its model merged first when it is a LoRA adapter folder."""
    model = evaluable_model(generation.backend.model)
    if model == generation.backend.model:
        return generation
    return generation.model_copy(update={"backend": generation.backend.model_copy(update={"model": model})})


def _evaluate_each(benches: dict[str, list[BenchItem]], out_dir: Path, config: EvaluateConfig,
                   generation: GenerationConfig, backend: ChatBackend, *, show_progress: bool) -> dict[str, dict[str, Any]]:
    """Generate and score each benchmark in turn: its results by name."""
    info = run_info_for(generation.backend.model, generation.model_dump(mode="json", exclude={"backend": {"api_key"}}))
    results: dict[str, dict[str, Any]] = {}
    for name, items in benches.items():
        n = config.n_for(name)
        t0 = time.time()
        rows = run_generation([{"id": it.id, "question": it.question} for it in items], out_dir / name,
                              generation.model_copy(update={"n": n}), backend=backend, source=name,
                              show_progress=show_progress).to_pylist()
        gen_time = {"generation_time_s": round(time.time() - t0, 2)}
        results[name] = evaluate_benchmark(name, items, rows, out_dir / name, config=config, run_info=info | gen_time)
        log.info("%s: avg@%d = %.3f", name, n, results[name]["accuracy"] or 0.0)
    return results
