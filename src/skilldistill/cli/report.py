"""``skilldistill report``: Markdown + self-contained HTML comparison of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ..orchestration.summary_tables import fit_tables, key_column
from ..report.config import DEFAULT_TARGET_SE, ReportConfig
from ..report.stage import run_report
from .app import app, console, user_errors
from .options import config_option


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder (with evaluate/<arm>/..., select/, train/, profile/)."),
    # help of their own: the fields' defaults are the recipe's; here no --baseline means no deltas
    baseline: str | None = config_option(ReportConfig, "baseline", "--baseline", "-b",
                                         help="Arm the deltas are taken against."),
    method: str | None = config_option(ReportConfig, "method", "--method",
                                       help="Arm the verdict is about (default: the recipe's report.method, else the last arm)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: RUN_DIR/report)."),
    n_needed: float | None = typer.Option(
        None, "--n-needed", min=0.01, help="Print the samples per problem each benchmark needs for this standard error "
        "(percentage points), from the observed per-problem accuracies."),
) -> None:
    """Benchmark x arm table with paired-bootstrap intervals and a verdict, per-skill accuracy,
    selection, emphasis-vs-gain and loss plots, samples needed, settings."""
    target = (n_needed / 100) if n_needed is not None else DEFAULT_TARGET_SE
    summary = run_report(run_dir, baseline=baseline, out_dir=out, method=method, target_se=target)
    out = out or run_dir / "report"
    for arm, reasons in (summary.get("incomplete") or {}).items():
        more = f" (and {len(reasons) - 1} more file(s), listed in the report)" if len(reasons) > 1 else ""
        console.print(f"[bold yellow]warning:[/bold yellow] {escape(arm)} is incomplete and left out of every "
                      f"comparison: {escape(reasons[0])}{more}", highlight=False, soft_wrap=True)
    if summary.get("verdict"):
        console.print(f"[bold]Verdict:[/bold] {summary['verdict']['text']}", highlight=False)
    if n_needed is not None:
        _print_samples_needed(summary["n_needed"], n_needed)
    console.print(f"wrote {out / 'report.md'} and {out / 'report.html'}")


def _print_samples_needed(needed: dict[str, Any], target_pp: float) -> None:
    """The summary's samples-needed table, and its notes once each."""
    columns = [key_column("benchmark"), key_column("arm"),
               *[(h, {"justify": "right"}) for h in ("problems", "samples now", "sampling SE now (pp)",
                                                    "samples needed", "problem SE (pp)")]]
    rows = [[escape(bench), escape(arm), str(r["n_problems"]), str(r["n_samples"]),
             "–" if r["sampling_se"] is None else f"{100 * r['sampling_se']:.2f}",
             "–" if r["samples_needed"] is None else str(r["samples_needed"]), f"{100 * r['problem_se']:.2f}"]
            for bench, per_arm in needed["benchmarks"].items() for arm, r in per_arm.items()]
    # at 80 columns (any non-terminal output) the names stay whole: the table splits instead
    console.print(*fit_tables(f"samples per problem for a sampling SE of {target_pp:g} pp", columns, rows,
                              console.width, keys=2))
    notes = dict.fromkeys(r["note"] for per_arm in needed["benchmarks"].values()
                          for r in per_arm.values() if r.get("note"))
    for note in notes:
        console.print(f"[dim]{note}[/dim]", highlight=False)
