"""What each stage step of a run does: call the stage's function with the run folder's paths.

Each function here is the ``fn(clean)`` body of one :meth:`StageRunner.step` (``clean``: the
stage discards its own stale results instead of resuming them). Stage code is imported when
its stage runs, so a run that skips a stage never imports it. Training, which may run under
``accelerate launch``, is in :mod:`skilldistill.orchestration.launcher`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..artifacts import read_json, write_json, write_manifest, write_parquet
from ..demo.attribution_config import SEED_LABELS, SEED_LABELS_FILE, SEED_LABELS_KEY
from ..tree import SkillTree
from .arm_corpora import corpus_of_arm
from .recipe import DEMO_STUDENT
from .stage_runner import StageRunner, model_json

ATTRIBUTION_SOURCES_JSON = "attribution_sources.json"  # the demo's attribution sources' table, beside the report


def corpus_stage(run: StageRunner, clean: bool) -> None:
    """The pool: the recipe's corpus ingested, or the demo's generated one."""
    r = run.recipe
    if r.corpus is not None:
        from ..corpus import ingest

        ingest(r.corpus, run.path("corpus"), progress=run.show_progress)
        return
    from ..demo.pool import demo_pool

    assert r.demo is not None
    t0 = time.time()
    table = demo_pool(r.demo)
    write_parquet(run.corpus_path, table)
    write_manifest(run.path("corpus"), config=model_json(r.demo, exclude={"student"}), inputs={},
                   counts={"rows_written": table.num_rows}, wall_time_s=round(time.time() - t0, 3),
                   source="skilldistill.demo.generator")


def demo_stage(run: StageRunner, clean: bool) -> None:
    """Held-out evaluation set (with true skills) and the uneven base student."""
    from ..demo.generator import generate_eval_set
    from ..demo.student import install_base_student

    d = run.recipe.demo
    assert d is not None
    t0 = time.time()
    table = generate_eval_set(d.eval_per_leaf, d.seed)
    # the evaluation stage reads per-skill labels from a `skills` column
    table = table.append_column("skills", table.column("true_skills"))
    write_parquet(run.path("demo", "eval.parquet"), table)
    # The packaged student when the recipe asks for exactly it; otherwise built here.
    _, origin = install_base_student(run.path("demo", "student"), seed=d.seed, config=d.student,
                                     show_progress=run.show_progress)
    run.console.print(f"[dim]demo student: {'the packaged one' if origin == 'shipped' else 'built for this config'}[/dim]")
    write_manifest(run.path("demo"), config=model_json(d), inputs={}, counts={"eval_rows": table.num_rows},
                   wall_time_s=round(time.time() - t0, 2), student=origin)


def pool_corpus_stage(run: StageRunner, out_key: str, cfg: Any) -> None:
    """An arm's own pool (its ``corpus`` section) ingested into ``out_key``."""
    from ..corpus import ingest

    ingest(cfg, run.path(out_key), progress=run.show_progress)


def annotate_stage(run: StageRunner, tree: SkillTree, clean: bool, *, corpus: Path | None = None,
                   out_key: str = "annotate", config: Any = None) -> None:
    """Attribution of the pool (the recipe's, or ``corpus``) into ``out_key`` with the recipe's annotate
    settings (or ``config``); on a corpus with known skills (the demo), also its accuracy."""
    from ..attribution import run_annotate

    out = run.path(out_key)
    config = with_seed_labels(run, config or run.recipe.annotate)
    run_annotate(corpus or run.corpus_path, tree, out, config, force=clean, show_progress=run.show_progress)
    cols = pq.read_schema(out / "skills.parquet").names
    if "true_skills" in cols:  # a corpus with known skills (the demo): measure attribution
        from ..demo.attribution_score import attribution_accuracy

        write_json(out / "attribution_accuracy.json", attribution_accuracy(out / "skills.parquet"))


def seed_labels_stage(run: StageRunner) -> None:
    """The demo's seed labels: the true skills of a share of the pool (``demo.attribution: seed-labels``)."""
    from ..demo.seed_labels import write_seed_labels

    demo = run.recipe.demo
    assert demo is not None
    write_seed_labels(run.corpus_path, run.path(SEED_LABELS_KEY), demo.seed_label_share, demo.seed)


def with_seed_labels(run: StageRunner, config: Any) -> Any:
    """``config`` with the demo's seed labels (``demo:seed_labels``) as the file in this run folder."""
    if config.backend != "distilled" or config.distilled.train_labels != SEED_LABELS:
        return config
    path = str(run.path(SEED_LABELS_KEY, SEED_LABELS_FILE).resolve())
    return config.model_copy(update={"distilled": config.distilled.model_copy(update={"train_labels": path})})


def reattributed_profile_stage(run: StageRunner, out_key: str, skills: Path, tree: SkillTree) -> None:
    """The recipe's profile of the student rolled up by another attribution's chains, into ``out_key``."""
    from ..profile.reattribute import reattribute_profile

    reattribute_profile(run.path("profile"), skills, run.path(out_key), tree)


def profile_stage(run: StageRunner, out_key: str, cfg: Any, tree: SkillTree, clean: bool) -> None:
    """The student of ``cfg`` profiled on the attributed pool, into ``out_key``."""
    from ..profile import run_profile

    run_profile(run.skills_path, run.path(out_key), cfg, tree=tree, force=clean, show_progress=run.show_progress)


def select_stage(run: StageRunner, out_key: str, cfg: Any, profile_json: Path, item_profile: Path | None,
                 clean: bool, *, skills: Path | None = None) -> None:
    """A selection from the attributed pool (the recipe's, or ``skills``) by the given profile, into
    ``out_key``; the loss strategy scores with the demo's built student when the recipe's student is the demo's, and the
    less strategy takes the student's gradients unless ``less_model`` names another model."""
    from ..select import run_select

    if cfg.strategy == "loss" and cfg.loss_model == DEMO_STUDENT:
        cfg = cfg.model_copy(update={"loss_model": run.student_model()})
    if cfg.strategy == "less" and cfg.less_model in (None, DEMO_STUDENT):  # the student, as for loss
        gguf = cfg.less_gguf_file if cfg.less_model is not None else run.recipe.student.gguf_file
        cfg = cfg.model_copy(update={"less_model": run.student_model(), "less_gguf_file": gguf})

    res = run_select(skills or run.skills_path, run.path(out_key), cfg, profile_json=profile_json,
                     item_profile=item_profile, force=clean, progress=run.show_progress)
    if res.n_selected < cfg.budget:
        run.console.print(f"[yellow]{out_key}: {res.n_selected} of {cfg.budget} selected[/yellow]")


def format_stage(run: StageRunner, out_key: str, cfg: Any, selection: Path, clean: bool) -> None:
    """Training examples from ``selection``, into ``out_key``."""
    from ..format import run_format

    run_format(selection, run.path(out_key), cfg, force=clean, progress=run.show_progress)


def evaluate_stage(run: StageRunner, key: str, gen: Any, cfg: Any, clean: bool) -> None:
    """The model of ``gen`` on every benchmark of ``cfg``, into ``key``."""
    from ..evaluate import load_benchmark, run_evaluate

    out = run.path(key)
    for name in cfg.benchmarks:  # every input must load before anything is removed
        load_benchmark(name, data_dir=cfg.data_dir, path=cfg.files.get(name), limit=cfg.limit)
    # fresh: stale samples from other settings must not be resumed (wiped under the folder's lock)
    run_evaluate(out, cfg, gen, show_progress=run.show_progress, fresh=clean)


def report_stage(run: StageRunner) -> None:
    """The report of every artifact of the run (with the demo's own sections on a demo run)."""
    from ..report import build_report

    extra = []
    acc_path = run.path("annotate", "attribution_accuracy.json")
    if acc_path.exists():
        from ..demo.attribution_score import attribution_markdown

        extra.append(("Attribution accuracy against the true skills", attribution_markdown(read_json(acc_path))))
    targets = None
    sources: list[dict[str, Any]] = []  # the attribution sources' table (demo), filled with the summary
    if run.recipe.demo is not None:
        from ..demo.targets import check_targets, targets_markdown

        def targets(summary: dict[str, Any]) -> list[tuple[str, str]]:
            sections = [("Demo targets", targets_markdown(check_targets(summary)))]
            sources.extend(attribution_source_rows(run, summary))
            if sources:
                from ..demo.attribution_sources import sources_markdown

                sections.append(("Attribution sources", sources_markdown(sources)))
            return sections

    build_report(run.run_dir, baseline=run.recipe.baseline, title=f"skilldistill: {run.recipe.name}",
                 extra_sections=extra, method=run.recipe.report.method, sections_from_summary=targets)
    if sources:
        write_json(run.path("report", ATTRIBUTION_SOURCES_JSON), {"rows": sources})


def attribution_source_rows(run: StageRunner, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's skill-plain arms under each attribution source (``skill-plain-<source>``) beside skill-plain
    (the recipe's source) and random-plain; none when the run has no such arm."""
    from ..demo.attribution_config import SOURCES
    from ..demo.attribution_sources import SourceArm, source_rows

    r = run.recipe
    assert r.demo is not None
    names = {a.name for a in r.arms}
    if not any(f"skill-plain-{s}" in names for s in SOURCES):
        return []
    table = [("random-plain", "random"), ("skill-plain", r.demo.attribution)]
    table += [(f"skill-plain-{s}", s) for s in SOURCES if f"skill-plain-{s}" in names]
    arms = []
    for name, source in table:
        if name not in names:
            continue
        pool = corpus_of_arm(r, r.arm(name))
        attribution = run.path(pool.annotate_key) if pool is not None else run.path("annotate")
        if source == "random":  # draws without reading any attribution: no precision to show
            attribution = None
        arms.append(SourceArm(name, source, attribution,
                              [run.path("select", name, f"seed{seed}", "selection.parquet") for seed in r.seeds]))
    return source_rows(arms, summary, set(r.demo.student.weak_leaves))


__all__ = ["annotate_stage", "corpus_stage", "demo_stage", "evaluate_stage", "format_stage", "pool_corpus_stage", "profile_stage",
           "reattributed_profile_stage", "seed_labels_stage", "with_seed_labels",
           "attribution_source_rows", "ATTRIBUTION_SOURCES_JSON",
           "report_stage", "select_stage"]
