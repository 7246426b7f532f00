"""``skilldistill report``: Markdown + self-contained HTML comparison of a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from ..report import build_report
from .app import app, console, user_errors


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder (with evaluate/<arm>/..., select/, train/, profile/)."),
    baseline: str | None = typer.Option(None, "--baseline", "-b", help="Arm the deltas are taken against."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: RUN_DIR/report)."),
) -> None:
    """Benchmark x arm table with deltas, per-skill accuracy, selection and loss plots, settings."""
    build_report(run_dir, baseline=baseline, out_dir=out)
    out = out or run_dir / "report"
    console.print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
