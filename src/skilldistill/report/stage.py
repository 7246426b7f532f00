"""``skilldistill report``: one Markdown and one self-contained HTML page comparing the arms
of a run folder.

    skilldistill report runs/demo --baseline random-plain

Reads only artifacts: ``evaluate/<arm>/<seed>/<benchmark>/samples.parquet`` and
``results.json`` (and ``evaluate/base``), ``select/<arm>/<seed>/report.json``,
``train/<arm>/<seed>/trainer_state.json``, ``profile/skill_profile.json``, ``recipe.yaml``,
``pipeline_state.json`` and stage manifests. Writes ``report/report.md``,
``report/report.html`` (images embedded), ``report/summary.json`` and the PNGs it draws
(``per_skill.png``, ``loss.png``, ``selection.png``, ``emphasis.png``).

Every arm-versus-baseline difference carries a 95% confidence interval from a paired
bootstrap over problems (and over seeds when both arms ran several; see
:mod:`skilldistill.stats`), per benchmark and on the average over benchmarks; a one-line
verdict on the method arm heads the report. See docs/report.md for every figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import write_json, write_text
from .analysis import (
    emphasis_vs_gain,
    n_needed,
    per_skill_table,
    recipe_arm_settings,
    selection_distributions,
    stage_times,
    weak_skill_gains,
)
from .closed_loop import closed_loop_summary
from .comparison import benchmark_table, method_arm, verdict
from .config import DEFAULT_TARGET_SE
from .plots import plot_emphasis, plot_loss, plot_per_skill, plot_selection
from .render import report_html, report_markdown
from .run_folder import ArmRuns, collect_run


@dataclass
class ReportRun:
    """What one report run has gathered so far, carried from step to step."""

    run_dir: Path
    out: Path
    arms: dict[str, ArmRuns] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json
    figures: dict[str, Path | None] = field(default_factory=dict)  # caption label -> PNG (None: nothing drawn)

    @property
    def recipe(self) -> dict[str, Any]:
        return self.context.get("recipe") or {}

    @property
    def weak_leaves(self) -> set[str]:
        return set(self.summary["weak_skill_gains"].get("weak_leaves") or [])


def run_report(run_dir: str | Path, *, baseline: str | None = None, out_dir: str | Path | None = None,
               title: str | None = None, extra_sections: list[tuple[str, str]] | None = None,
               method: str | None = None, target_se: float = DEFAULT_TARGET_SE,
               sections_from_summary: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None) -> dict[str, Any]:
    """Collect, tabulate, plot; write report.md / report.html / summary.json.

    ``sections_from_summary(summary)`` returns more (heading, Markdown) sections computed
    from the summary (the demo's target checks); they go first, after the weak-leaf table.
    """
    run = _start(run_dir, out_dir)
    run.arms, run.context = collect_run(run.run_dir)  # refuses a damaged run before anything is written
    run.out.mkdir(parents=True, exist_ok=True)
    run.summary = _tabulate(run, baseline=baseline, method=method, target_se=target_se)
    run.figures = _draw_figures(run)
    write_json(run.out / "summary.json", run.summary)
    title = title or f"skilldistill report: {run.run_dir.resolve().name}"
    sections = (sections_from_summary(run.summary) if sections_from_summary else []) + list(extra_sections or [])
    md_text = report_markdown(title, run.summary, run.context, run.figures, sections)
    write_text(run.out / "report.md", md_text)
    write_text(run.out / "report.html", report_html(title, md_text, run.out))
    return run.summary


build_report = run_report  # the name before the stages were named run_<stage>


def _start(run_dir: str | Path, out_dir: str | Path | None) -> ReportRun:
    """The run folder and the output folder (``run_dir/report`` by default)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    return ReportRun(run_dir=run_dir, out=out)


def _tabulate(run: ReportRun, *, baseline: str | None, method: str | None, target_se: float) -> dict[str, Any]:
    """Every table of the report, as summary.json holds them."""
    incomplete = run.context.get("incomplete") or {}  # left out of every table, named by the verdict
    bench = benchmark_table(run.arms, baseline)
    method = method or method_arm(list(bench["arms"]) + list(incomplete), run.recipe, baseline)
    skills = per_skill_table(run.arms)
    weak = weak_skill_gains(run.arms, skills, run.context.get("skill_profile"), run.context.get("world_weak_leaves"))
    dists = selection_distributions(run.arms)
    summary = {"verdict": verdict(bench, method, incomplete), "benchmarks": bench, "per_skill": skills,
               "weak_skill_gains": weak, "selection": dists,
               "emphasis": emphasis_vs_gain(run.arms, skills, dists, run.recipe),
               "n_needed": n_needed(run.arms, target_se), "stage_times": stage_times(run.context.get("pipeline_state"))}
    loop = closed_loop_summary(run.run_dir, run.arms, skills, run.recipe, set(weak.get("weak_leaves") or []))
    if loop:
        summary["closed_loop"] = loop
    if incomplete:
        summary["incomplete"] = incomplete
    return summary


_FIGURE_FILES = {"per-skill accuracy": "per_skill.png", "selection distribution": "selection.png",
                 "emphasis against gain": "emphasis.png", "training loss": "loss.png"}


def _draw_figures(run: ReportRun) -> dict[str, Path | None]:
    """Caption label -> the PNG drawn (None when there was nothing to draw), in report order."""
    weak, summary = run.weak_leaves, run.summary
    styles = {name: s["style"] for name, s in recipe_arm_settings(run.recipe).items() if s.get("style")}
    figures = {
        "per-skill accuracy": plot_per_skill(summary["per_skill"], run.out / "per_skill.png", weak=weak),
        "selection distribution": plot_selection(summary["selection"], run.out / "selection.png", weak=weak),
        "emphasis against gain": plot_emphasis(summary["emphasis"], run.out / "emphasis.png", weak=weak),
        "training loss": plot_loss(run.arms, run.out / "loss.png", styles=styles),
    }
    for name in set(_FIGURE_FILES.values()) - {p.name for p in figures.values() if p}:
        (run.out / name).unlink(missing_ok=True)  # nothing to draw now: no figure of an earlier report left over
    return figures
