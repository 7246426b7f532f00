"""One run folder's stages: the step that skips a stage finished with the same fingerprint or
runs it, and what every stage of a recipe reads (its paths, the student, derived configs).

A stage's *fingerprint* is a hash of its kind, its config (paths inside the run folder
written ``<run>/...``, client-only settings left out) and the fingerprints of the stages it
reads (``upstream``). :class:`~skilldistill.orchestration.pipeline.Pipeline` is a
``StageRunner`` that walks a recipe's stages in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..artifacts import hash_obj
from ..errors import ConfigError
from ..llm.base import fingerprint_view
from ..stages import STAGES
from .closed_loop import ROUNDS_DIR
from .recipe import DEMO_EVAL, DEMO_STUDENT, Recipe
from .stage_state import STATE_FILE, must_clean, read_state, record_stage, stage_status


@dataclass(frozen=True)
class UpstreamFingerprints:
    """The fingerprints of the run-wide stages an arm run (or the base evaluation) reads."""

    student: str  # the base student: the demo stage's, or a hash of the recipe's student
    demo: str | None  # the demo stage (its held-out set); None without a demo section
    annotate: str | None = None  # the attributed pool (arm runs only)
    profile: str | None = None  # the base student's profile (arm runs only)
    pools: dict[str, str] = field(default_factory=dict)  # an arm's own pool (its folder name): its annotate stage


def model_json(model: Any, exclude: set[str] | None = None) -> Any:
    """A pydantic model as JSON-able data for a fingerprint or manifest (None stays None)."""
    return None if model is None else model.model_dump(mode="json", exclude=exclude)


def stage_rank(key: str, kind: str) -> int:
    """Where a stage sits in the stage order, for ``--from``."""
    if kind == "profile" and key.startswith(ROUNDS_DIR + "/"):
        # a later round's profile profiles the round before's trained model: it comes
        # after that training, so --from select/format/train reruns it too
        return STAGES.index("train")
    return STAGES.index(kind)


class StageRunner:
    """A recipe's run folder and its stage bookkeeping (see the module docstring)."""

    def __init__(self, recipe: Recipe, *, run_dir: str | Path | None = None, force_from: str | None = None,
                 console: Console | None = None, show_progress: bool = True, worker: bool = False,
                 dry_run: bool = False) -> None:
        if force_from is not None and force_from not in STAGES:
            raise ConfigError(f"--from {force_from!r}: not a stage; stages: {', '.join(STAGES)}")
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir else recipe.resolved_run_dir
        self.force_from = force_from
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.state_path = self.run_dir / STATE_FILE
        self.state: dict[str, Any] = read_state(self.run_dir)
        self.state.setdefault("stages", {})
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []
        self.worker = worker  # an arm worker of a parallel run (the parent holds the run)
        # dry_run: walk the stages and record what each would do (skilldistill plan); nothing runs or is written
        self.dry_run = dry_run
        self.planned: list[dict[str, Any]] = []

    # -- the generic stage step -----------------------------------------------------
    def step(self, key: str, kind: str, config: Any, upstream: list[str], fn: Callable[[bool], Any],
             done_marker: str = "manifest.json") -> str:
        """Run ``fn(clean)`` unless ``key`` finished with the same fingerprint; return it.

        ``clean`` is True when the stage ran before with other settings (or is forced):
        the stage then discards its own stale results instead of resuming them.
        """
        config_view = self.portable(fingerprint_view(config))
        fp = hash_obj({"kind": kind, "config": config_view, "upstream": upstream})
        prev = self.state["stages"].get(key, {})
        forced = self.force_from is not None and stage_rank(key, kind) >= STAGES.index(self.force_from)
        marker = self.run_dir / key / done_marker
        if self.dry_run:
            self.planned.append({"key": key, "kind": kind, "config": config, "fingerprint": fp,
                                 **stage_status(prev, fp, hash_obj(config_view), forced, marker)})
            return fp
        if not forced and prev.get("fingerprint") == fp and marker.exists():
            self.console.print(f"[dim]✓ {key}: up to date[/dim]")
            return fp
        clean = forced or must_clean(prev, fp)
        self.console.print(f"[bold cyan]▶ {key}[/bold cyan]" + (" [dim](settings changed: rerun)[/dim]" if clean and not forced else ""))
        # Until it finishes, the stage is not done: the state file must not vouch for files
        # it is about to rewrite. It records the attempt instead, with whether it discards
        # the old output, so a stage killed before its wipe still wipes when rerun (its logs
        # are keyed by settings that a retrained model at the same path would match).
        self.record(key, {"running": fp, "clean": clean})
        t0 = time.time()
        fn(clean)
        wall = round(time.time() - t0, 2)
        self.timings[key] = wall
        self.ran.append(key)
        self.record(key, {"fingerprint": fp, "config_hash": hash_obj(config_view), "wall_time_s": wall,
                          "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.console.print(f"[green]✓ {key}[/green] [dim]{wall:.1f}s[/dim]")
        return fp

    def record(self, key: str, entry: dict[str, Any] | None) -> None:
        """Record a stage in the state file (``None``: forget it); see :func:`record_stage`."""
        self.state = record_stage(self.run_dir, key, entry)

    def portable(self, obj: Any) -> Any:
        """Paths inside the run folder as ``<run>/...``: a moved or copied run folder keeps
        its fingerprints (the demo student's absolute path is in several configs)."""
        root = str(self.run_dir.resolve())
        if isinstance(obj, str):
            return "<run>" + obj[len(root):] if obj == root or obj.startswith(root + "/") else obj
        if isinstance(obj, list):
            return [self.portable(v) for v in obj]
        if isinstance(obj, dict):
            return {k: self.portable(v) for k, v in obj.items()}
        return obj

    # -- what the stages read -------------------------------------------------------
    def path(self, *parts: str) -> Path:
        """A path inside the run folder."""
        return self.run_dir.joinpath(*parts)

    @property
    def corpus_path(self) -> Path:
        return self.path("corpus", "corpus.parquet")

    @property
    def skills_path(self) -> Path:
        return self.path("annotate", "skills.parquet")

    def student_model(self) -> str:
        """The base student: the demo's built one (inside the run folder) or the recipe's."""
        if self.recipe.student.model == DEMO_STUDENT:
            return str(self.path("demo", "student").resolve())
        return self.recipe.student.model

    def profile_config(self) -> Any:
        """The recipe's profile section, profiling the base student."""
        gen = self.recipe.profile.generation
        backend = gen.backend.model_copy(update={"model": self.student_model()})
        return self.recipe.profile.model_copy(update={"generation": gen.model_copy(update={"backend": backend})})

    def evaluate_config(self) -> Any:
        """The recipe's evaluate section, with the demo's held-out set as benchmark ``demo_eval``."""
        cfg = self.recipe.evaluate_config()
        if self.recipe.demo is not None and DEMO_EVAL in cfg.benchmarks:
            path = str(self.path("demo", "eval.parquet"))
            cfg = cfg.model_copy(update={"files": cfg.files | {DEMO_EVAL: path},
                                         "skills": cfg.skills | {DEMO_EVAL: path}})
        return cfg


__all__ = ["StageRunner", "UpstreamFingerprints", "model_json", "stage_rank"]
