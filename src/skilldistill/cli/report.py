"""``skilldistill report``: Markdown + self-contained HTML comparison of a run folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..report import DEFAULT_TARGET_SE, build_report
from .app import app, console, user_errors


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder (with evaluate/<arm>/..., select/, train/, profile/)."),
    baseline: str | None = typer.Option(None, "--baseline", "-b", help="Arm the deltas are taken against."),
    method: str | None = typer.Option(None, "--method", help="Arm the verdict is about (default: the recipe's report.method, else the last arm)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: RUN_DIR/report)."),
    n_needed: float | None = typer.Option(
        None, "--n-needed", min=0.01, help="Print the samples per problem each benchmark needs for this standard error "
        "(percentage points), from the observed per-problem accuracies."),
) -> None:
    """Benchmark x arm table with paired-bootstrap intervals and a verdict, per-skill accuracy,
    selection, emphasis-vs-gain and loss plots, samples needed, settings."""
    target = (n_needed / 100) if n_needed is not None else DEFAULT_TARGET_SE
    summary = build_report(run_dir, baseline=baseline, out_dir=out, method=method, target_se=target)
    out = out or run_dir / "report"
    if summary.get("verdict"):
        console.print(f"[bold]Verdict:[/bold] {summary['verdict']['text']}", highlight=False)
    if n_needed is not None:
        table = Table("benchmark", "arm", "problems", "samples now", "sampling SE now (pp)", "samples needed",
                      "problem SE (pp)", title=f"samples per problem for a sampling SE of {n_needed:g} pp")
        for bench, per_arm in summary["n_needed"]["benchmarks"].items():
            for arm, r in per_arm.items():
                table.add_row(bench, arm, str(r["n_problems"]), str(r["n_samples"]),
                              "–" if r["sampling_se"] is None else f"{100 * r['sampling_se']:.2f}",
                              "–" if r["samples_needed"] is None else str(r["samples_needed"]),
                              f"{100 * r['problem_se']:.2f}")
        console.print(table)
        notes = dict.fromkeys(r["note"] for per_arm in summary["n_needed"]["benchmarks"].values()
                              for r in per_arm.values() if r.get("note"))
        for note in notes:
            console.print(f"[dim]{note}[/dim]", highlight=False)
    console.print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
