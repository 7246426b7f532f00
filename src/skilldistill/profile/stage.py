"""``skilldistill profile``: the stage function, :func:`run_profile`.

It reads as its steps: read the pool and the tree, stop if a matching run is done, choose
the items (with gold answers, not trained on, sampled), sample and grade the student,
roll the grades up per item and per skill, write the manifest.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..artifacts import (
    hash_obj,
    locked_stage,
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
)
from ..errors import InputError
from ..generate.sampling import GENERATIONS_PARQUET, run_generation
from ..grading import grade_many
from ..llm.base import ChatBackend
from ..tree import SkillTree
from .accuracy import skill_stats
from .adaptive import STOP_ROUNDS, AdaptivePlan
from .config import ProfileConfig
from .plot import plot_skill_profile
from .pool import has_gold, load_pool, tree_from_chains
from .stratify import stratified_sample

logger = logging.getLogger(__name__)

PROFILE_PARQUET = "profile.parquet"
GRADES_PARQUET = "grades.parquet"
SKILL_PROFILE_JSON = "skill_profile.json"
SKILL_PROFILE_PNG = "skill_profile.png"
SAMPLE_JSON = "sample.json"
ADAPTIVE_JSON = "adaptive.json"

GRADES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sample", pa.int32()),
        ("pred", pa.string()),
        ("correct", pa.bool_()),
        ("truncated", pa.bool_()),
        ("finish_reason", pa.string()),
        ("error", pa.string()),
    ]
)
PROFILE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("n_samples", pa.int32()),
        ("n_correct", pa.int32()),
        ("accuracy", pa.float64()),
        ("solved", pa.bool_()),
        ("n_truncated", pa.int32()),
        ("n_grading_errors", pa.int32()),
        ("skills", pa.list_(pa.list_(pa.string()))),
    ]
)


@dataclass
class ProfileResult:
    out_dir: Path
    counts: dict[str, Any]
    overall_accuracy: float | None
    per_leaf_sampled: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # True when a matching finished run was found

    @property
    def skill_profile(self) -> dict[str, Any]:
        return read_json(self.out_dir / SKILL_PROFILE_JSON)


@dataclass
class _ProfileRun:
    """What the steps of one profiling run hand each other."""

    skills_parquet: Path
    out_dir: Path
    config: ProfileConfig
    started: float
    items: list[dict[str, Any]]  # the whole pool, as read
    tree: SkillTree
    inputs: dict[str, str]  # input file -> hash, for the manifest
    trained_on: list[Path]  # selections whose items are left out
    with_gold: list[dict[str, Any]] = field(default_factory=list)  # items profiled before any sample is drawn
    n_no_gold: int = 0
    n_trained_on: int = 0
    pool: list[dict[str, Any]] = field(default_factory=list)  # the items profiled
    per_leaf_sampled: dict[str, int] = field(default_factory=dict)
    item_rows: list[dict[str, Any]] = field(default_factory=list)
    adaptive: dict[str, Any] | None = None  # adaptive.json, when profiled in rounds

    @property
    def tree_source(self) -> str:
        return self.tree.source or "in-memory tree"

    @property
    def config_json(self) -> dict[str, Any]:
        return self.config.fingerprint_dict()


@locked_stage("profile")
def run_profile(
    skills_parquet: str | Path,
    out_dir: str | Path,
    config: ProfileConfig,
    *,
    tree: SkillTree | str | Path | None = None,
    backend: ChatBackend | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    show_progress: bool = True,
) -> ProfileResult:
    """Sample the student on the pool, grade, and write the per-item and per-skill profile.

    ``tree``: a :class:`SkillTree`, a tree file / bundled name, or None (the tree is then
    the set of chains found in the data). ``backend``: a ready backend (else built from
    ``config.generation.backend`` before any work; a model that cannot load raises
    :class:`~skilldistill.errors.ConfigError` first). A finished run with the same
    config and inputs is not redone unless ``force``.
    """
    run = _read_inputs(Path(skills_parquet), Path(out_dir), config, tree)
    if not force:
        done = _finished_run(run)
        if done is not None:
            return done
    # From here on the folder's files change: the old manifest no longer certifies them.
    (run.out_dir / "manifest.json").unlink(missing_ok=True)
    _choose_items(run)
    if config.adaptive is None:
        grade_rows = _sample_and_grade(run, run.pool, backend, progress, show_progress)
    else:
        grade_rows = _profile_in_rounds(run, backend, progress, show_progress)
    _write_item_profile(run, grade_rows)
    counts, overall = _write_skill_profile(run)
    write_manifest(
        run.out_dir,
        config=run.config_json,
        inputs=run.inputs,
        counts=counts,
        wall_time_s=round(time.time() - run.started, 2),
        artifacts=[GENERATIONS_PARQUET, GRADES_PARQUET, PROFILE_PARQUET, SKILL_PROFILE_JSON]
        + ([SKILL_PROFILE_PNG] if config.plot else []) + ([ADAPTIVE_JSON] if config.adaptive else []),
    )
    return ProfileResult(run.out_dir, counts, overall.get("accuracy"), run.per_leaf_sampled)


def _read_inputs(skills_parquet: Path, out_dir: Path, config: ProfileConfig,
                 tree: SkillTree | str | Path | None) -> _ProfileRun:
    """The pool, the tree, and the hashes of every input (the excluded selections too)."""
    started = time.time()
    items = load_pool(skills_parquet, config.answer_field)
    if isinstance(tree, str | Path):
        tree = SkillTree.resolve(tree)
    if tree is None:
        tree = tree_from_chains([c for it in items for c in it["skills"]], source=f"chains found in {skills_parquet}")
    inputs = {"skills": sha256_file(skills_parquet), "tree": hash_obj(tree.to_dict())}
    trained_on = []
    if config.exclude_selections:
        # Earlier selections are select's artifacts: read by its helpers, loaded only when needed.
        from ..select import selection_file

        trained_on = [selection_file(p) for p in config.exclude_selections]
    for f in trained_on:
        inputs[f"excluded_selection:{f}"] = sha256_file(f)
    return _ProfileRun(skills_parquet, out_dir, config, started, items, tree, inputs, trained_on)


def _finished_run(run: _ProfileRun) -> ProfileResult | None:
    """The result of a finished run with the same config and inputs, if the folder holds one."""
    out_dir = run.out_dir
    if not (manifest_matches(out_dir, config=run.config_json, inputs=run.inputs)
            and (out_dir / SKILL_PROFILE_JSON).exists()):
        return None
    manifest = read_json(out_dir / "manifest.json")
    skill_profile = read_json(out_dir / SKILL_PROFILE_JSON)
    logger.info("profile already done in %s (manifest matches): nothing to do", out_dir)
    per_leaf = (skill_profile.get("sample") or {}).get("per_leaf", {})
    accuracy = (skill_profile.get("overall") or {}).get("accuracy")
    return ProfileResult(out_dir, manifest.get("counts", {}), accuracy, per_leaf, skipped=True)


def _choose_items(run: _ProfileRun) -> None:
    """The items to profile: those with a gold answer, not in an excluded selection, and
    (with ``config.sample``) a stratified sample of them, written to ``sample.json``."""
    config, items = run.config, run.items
    with_gold = [it for it in items if has_gold(it["answer"])]
    run.n_no_gold = len(items) - len(with_gold)
    if run.n_no_gold:
        logger.warning("%d of %d items have no gold answer: skipped", run.n_no_gold, len(items))
    if not with_gold:
        raise InputError("no item has a gold answer", file=run.skills_parquet, field=config.answer_field)
    if run.trained_on:
        from ..select import read_selected_ids

        left_out = read_selected_ids(run.trained_on)
        kept = [it for it in with_gold if it["id"] not in left_out]
        run.n_trained_on = len(with_gold) - len(kept)
        logger.info("profile: %d items of earlier selections left out", run.n_trained_on)
        with_gold = kept
        if not with_gold:
            raise InputError("every item with a gold answer is in an excluded selection", file=run.skills_parquet)
    run.with_gold = run.pool = with_gold
    if config.sample is not None and config.sample < len(with_gold):
        run.pool, run.per_leaf_sampled = stratified_sample(with_gold, config.sample, seed=config.sample_seed)
        write_json(run.out_dir / SAMPLE_JSON, {"n_pool": len(with_gold), "n_sampled": len(run.pool),
                                               "seed": config.sample_seed, "per_leaf": run.per_leaf_sampled})
        logger.info("profiling a stratified sample of %d of %d items (%d strata)", len(run.pool), len(with_gold),
                    len(run.per_leaf_sampled))


def _sample_and_grade(run: _ProfileRun, items: list[dict[str, Any]], backend: ChatBackend | None,
                      progress: Callable[[int], None] | None, show_progress: bool,
                      graded: dict[tuple[str, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Sample the student on ``items``, grade every sample not in ``graded`` (an earlier round's
    grades, keyed by item and sample); writes ``grades.parquet`` for all of them."""
    gen_table = run_generation(
        items, run.out_dir, run.config.generation, backend=backend, source=str(run.skills_parquet),
        show_progress=show_progress,
    )
    gens = gen_table.select(["id", "sample", "response", "finish_reason"]).to_pylist()
    graded = graded if graded is not None else {}
    todo = [g for g in gens if (g["id"], g["sample"]) not in graded]
    gold_of = {it["id"]: it["answer"] for it in items}
    grades = _grade_with_progress(
        [gold_of[g["id"]] for g in todo], [g["response"] for g in todo], run.config, progress, show_progress
    )
    for g, r in zip(todo, grades, strict=True):
        # A sample is truncated when <think> never closed or the token cap was hit; a
        # truncated sample is wrong even when a \boxed{} before the cut matches the gold.
        truncated = r.truncated or g["finish_reason"] == "length"
        graded[(g["id"], g["sample"])] = {
            "id": g["id"],
            "sample": g["sample"],
            "pred": r.pred,
            "correct": bool(r.correct) and not truncated,
            "truncated": truncated,
            "finish_reason": g["finish_reason"],
            "error": r.error,
        }
    grade_rows = [graded[(g["id"], g["sample"])] for g in gens]
    write_parquet(run.out_dir / GRADES_PARQUET, pa.Table.from_pylist(grade_rows, schema=GRADES_SCHEMA))
    return grade_rows


def _profile_in_rounds(run: _ProfileRun, backend: ChatBackend | None, progress: Callable[[int], None] | None,
                       show_progress: bool) -> list[dict[str, Any]]:
    """``profile.adaptive``: rounds of sampling and grading, each round's items chosen from the
    grades so far (profile/adaptive.py), until the selection distribution is within the bound;
    ``adaptive.json`` is rewritten after every round. One backend serves every round."""
    config = run.config
    plan = AdaptivePlan(run.with_gold, config.adaptive, n_samples=config.generation.n,
                        prior_strength=config.prior_strength, tree=run.tree, seed=config.sample_seed)
    own_backend = backend is None
    if backend is None:
        from ..llm.factory import make_backend

        backend = make_backend(config.generation.backend)  # once, not once per round
    graded: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        new = plan.first_round()
        while True:
            items = [run.with_gold[i] for i in np.flatnonzero(plan.profiled)]
            grade_rows = _sample_and_grade(run, items, backend, progress, show_progress, graded)
            assessment = plan.assess(item_rows(items, grade_rows, config.solved_threshold),
                                     np.random.default_rng([config.sample_seed, len(plan.rounds)]))
            rec = plan.record(assessment, len(new))
            plan.stop_reason = plan.should_stop(assessment)
            run.adaptive = plan.summary(assessment)
            write_json(run.out_dir / ADAPTIVE_JSON, run.adaptive)
            logger.info("adaptive profiling, round %d: +%d items (%d of %d profiled), TV quantile %.4f (bound %g)%s",
                        rec.round, rec.items_added, rec.items_profiled, len(run.with_gold), rec.tv_quantile,
                        config.adaptive.tv_bound, f": stop, {plan.stop_reason}" if plan.stop_reason else "")
            if plan.stop_reason is not None:
                break
            new = plan.next_round(assessment)
    finally:
        if own_backend:
            backend.close()
    if plan.stop_reason == STOP_ROUNDS:
        logger.warning("adaptive profiling stopped after max_rounds (%d) with the TV quantile at %.4f, above its "
                       "bound %g: see %s", config.adaptive.max_rounds, run.adaptive["tv_quantile"],
                       config.adaptive.tv_bound, run.out_dir / ADAPTIVE_JSON)
    run.pool = items
    run.per_leaf_sampled = {leaf["leaf"]: leaf["items_profiled"] for leaf in run.adaptive["leaves"]}
    return grade_rows


def _grade_with_progress(golds, responses, config: ProfileConfig, progress, show_progress: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..progress import StageProgress

    with StageProgress(
        TextColumn("[bold]grade[/bold]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not show_progress,
    ) as bar:
        task = bar.add_task("grade", total=len(golds))

        def advance(k: int) -> None:
            bar.advance(task, k)
            if progress:
                progress(k)

        return grade_many(
            golds, responses, processes=config.grading_processes, timeout_s=config.grading_timeout_s, progress=advance
        )


def item_rows(items: list[dict[str, Any]], grade_rows: list[dict[str, Any]],
              solved_threshold: float) -> list[dict[str, Any]]:
    """Per item: samples, correct, accuracy, solved, truncated, grading errors, skills."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in grade_rows:
        by_item[r["id"]].append(r)
    rows = []
    for it in items:
        rs = by_item[it["id"]]
        n_s, n_c = len(rs), sum(r["correct"] for r in rs)
        acc = n_c / n_s if n_s else None
        rows.append(
            {
                "id": it["id"],
                "n_samples": n_s,
                "n_correct": n_c,
                "accuracy": acc,
                "solved": acc is not None and acc >= solved_threshold,
                "n_truncated": sum(r["truncated"] for r in rs),
                "n_grading_errors": sum(r["error"] is not None for r in rs),
                "skills": it["skills"],
            }
        )
    return rows


def _write_item_profile(run: _ProfileRun, grade_rows: list[dict[str, Any]]) -> None:
    """Per item: samples, correct, accuracy, solved; writes ``profile.parquet``."""
    run.item_rows = item_rows(run.pool, grade_rows, run.config.solved_threshold)
    write_parquet(run.out_dir / PROFILE_PARQUET, pa.Table.from_pylist(run.item_rows, schema=PROFILE_SCHEMA))


def _write_skill_profile(run: _ProfileRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per node of the tree: counts and accuracies; writes ``skill_profile.json`` and its
    plot. Returns the run's counts and the overall (root) statistics."""
    config, item_rows = run.config, run.item_rows
    nodes, overall, n_unknown = skill_stats(item_rows, run.tree, prior_strength=config.prior_strength)
    counts = _counts(run, nodes, n_unknown)
    if n_unknown:
        logger.warning("%d item chains are not paths of the tree (%s): left out of the node counts", n_unknown,
                       run.tree_source)
    doc = {
        "tree_source": run.tree_source,
        "model": config.generation.backend.model,
        "prior_strength": config.prior_strength,
        "prior": "Beta(k*m_parent, k*(1-m_parent)); root prior mean 0.5",
        "interval": "95% equal-tailed Beta posterior interval",
        "counts_unit": "samples (an item counts once per node it passes through, n_samples each)",
        "solved_threshold": config.solved_threshold,
        "counts": counts,
        "overall": overall,
        "sample": {"n_pool": len(run.with_gold), "n_sampled": len(run.pool), "per_leaf": run.per_leaf_sampled,
                   **({"adaptive": {k: run.adaptive[k] for k in ("stop_reason", "bound_met", "tv_bound", "confidence",
                                                                "tv_quantile")} | {"rounds": len(run.adaptive["rounds"]),
                                                                                   "file": ADAPTIVE_JSON}}
                      if run.adaptive else {})}
        if run.per_leaf_sampled else None,
        "nodes": nodes,
    }
    write_json(run.out_dir / SKILL_PROFILE_JSON, doc)
    if config.plot:
        acc = overall.get("accuracy")
        model = config.generation.backend.model
        title = f"{model}: {len(item_rows)} items, accuracy {acc:.3f}" if acc is not None else model
        plot_skill_profile(nodes, run.out_dir / SKILL_PROFILE_PNG, title=title)
    return counts, overall


def _counts(run: _ProfileRun, nodes: list[dict[str, Any]], n_unknown: int) -> dict[str, Any]:
    """The run's counts (manifest and ``skill_profile.json``)."""
    item_rows = run.item_rows
    return {
        "items_in_pool": len(run.items),
        "items_without_gold": run.n_no_gold,
        "items_left_out_as_trained_on": run.n_trained_on,
        "items_profiled": len(item_rows),
        "items_without_skills": sum(1 for r in item_rows if not r["skills"]),
        "samples": sum(r["n_samples"] for r in item_rows),
        "correct": sum(r["n_correct"] for r in item_rows),
        "truncated": sum(r["n_truncated"] for r in item_rows),
        "grading_errors": sum(r["n_grading_errors"] for r in item_rows),
        "chains_not_in_tree": n_unknown,
        "nodes": len(nodes),
        "leaves": sum(n["is_leaf"] for n in nodes),
        "leaves_with_data": sum(1 for n in nodes if n["is_leaf"] and n["graded"] > 0),
    }
