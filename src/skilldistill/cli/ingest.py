"""``skilldistill ingest``: a teacher-solution dataset -> normalised corpus Parquet."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..corpus import PRESETS, IngestConfig, ingest
from .app import app, console, user_errors


@app.command("ingest")
@user_errors
def ingest_cmd(
    source: str = typer.Argument(..., help="Hugging Face dataset id, or a local .jsonl/.json/.parquet file or folder."),
    out: Path = typer.Option(Path("runs/corpus"), "--out", "-o", help="Output folder (corpus.parquet + manifest.json)."),
    preset: str | None = typer.Option(None, "--preset", "-p", help=f"Schema preset: {', '.join(sorted(PRESETS))}, or 'auto'."),
    question_field: str | None = typer.Option(None, help="Column holding the problem (overrides the preset)."),
    response_field: str | None = typer.Option(None, help="Column holding the teacher solution."),
    answer_field: str | None = typer.Option(None, help="Column holding the gold answer (else extracted from \\boxed{} / ####)."),
    id_field: str | None = typer.Option(None, help="Column holding a stable id (else a hash of the question)."),
    split: str | None = typer.Option(None, help="Hugging Face split."),
    config_name: str | None = typer.Option(None, "--config-name", help="Hugging Face configuration (subset)."),
    limit: int | None = typer.Option(None, help="Read at most this many rows."),
    exclude: list[Path] = typer.Option([], "--exclude", "-x", help="Benchmark file(s) whose problems are removed (repeatable)."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Drop repeated questions (normalised text)."),
    on_error: str = typer.Option("auto", "--on-error", help="auto | skip | fail. auto: fail on a missing column, skip-and-count bad rows."),
) -> None:
    """Normalise a corpus of problems with teacher solutions (dedup + decontamination)."""
    cfg = IngestConfig(
        source=source, preset=preset, question_field=question_field, response_field=response_field,
        answer_field=answer_field, id_field=id_field, split=split, config_name=config_name, limit=limit,
        exclude=[str(p) for p in exclude], dedup=dedup, on_error=on_error,  # type: ignore[arg-type]
    )
    report = ingest(cfg, out)
    table = Table(title=f"ingest: {source}", show_header=False)
    table.add_row("rows read", str(report.rows_read))
    table.add_row("rows written", f"[green]{report.rows_written}[/green]")
    for reason, n in sorted(report.dropped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"dropped: {reason}", str(n))
    console.print(table)
    for reason, examples in report.examples.items():
        console.print(f"[dim]{reason}: e.g. {', '.join(examples[:3])}[/dim]")
    console.print(f"wrote {out / 'corpus.parquet'}")


@app.command("presets")
def presets_cmd() -> None:
    """List the schema presets of `ingest` and their field mappings."""
    table = Table("preset", "HF id", "question", "response", "answer", "notes")
    for p in PRESETS.values():
        table.add_row(p.name, p.hf_id or "", p.question, " + ".join(p.response), p.answer or "(extracted)", p.notes)
    console.print(table)
