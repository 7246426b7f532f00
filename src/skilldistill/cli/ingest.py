"""``skilldistill ingest``: a teacher-solution dataset -> normalised corpus Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from ..corpus.config import IngestConfig
from ..corpus.presets import PRESETS
from ..corpus.stage import run_ingest
from ..corpus.table import DECONTAMINATION_FILE
from ..decontaminate.config import METHODS, DecontaminationConfig
from ..errors import ConfigError
from .app import app, console, user_errors
from .options import config_option, field_help


@app.command("ingest")
@user_errors
def ingest_cmd(
    source: str = typer.Argument(..., help=field_help(IngestConfig, "source")),
    out: Path = typer.Option(Path("runs/corpus"), "--out", "-o", help="Output folder (corpus.parquet + manifest.json)."),
    preset: str | None = config_option(IngestConfig, "preset", "--preset", "-p"),
    question_field: str | None = config_option(IngestConfig, "question_field", "--question-field"),
    response_field: str | None = config_option(IngestConfig, "response_field", "--response-field"),
    answer_field: str | None = config_option(IngestConfig, "answer_field", "--answer-field"),
    id_field: str | None = config_option(IngestConfig, "id_field", "--id-field"),
    split: str | None = config_option(IngestConfig, "split", "--split"),
    config_name: str | None = config_option(IngestConfig, "config_name", "--config-name"),
    limit: int | None = config_option(IngestConfig, "limit", "--limit"),
    exclude: list[str] = config_option(IngestConfig, "exclude", "--exclude", "-x",
                                       help=f"{field_help(IngestConfig, 'exclude')} Repeatable."),
    benchmarks_dir: Path | None = config_option(DecontaminationConfig, "data_dir", "--benchmarks-dir"),
    decontamination: str = config_option(DecontaminationConfig, "methods", "--decontamination", default=",".join(METHODS),
                                         help="Tests run against --exclude, comma-separated (exact, ngram, fuzzy)."),
    ngram_n: int = config_option(DecontaminationConfig, "ngram_n", "--ngram-n"),
    ngram_overlap: float = config_option(DecontaminationConfig, "ngram_min_overlap", "--ngram-overlap"),
    fuzzy_threshold: float = config_option(DecontaminationConfig, "fuzzy_threshold", "--fuzzy-threshold"),
    dedup: bool = config_option(IngestConfig, "dedup", "--dedup/--no-dedup"),
    on_error: str = config_option(IngestConfig, "on_error", "--on-error",
                                  help=f"auto | skip | fail. {field_help(IngestConfig, 'on_error')}"),
) -> None:
    """Normalise a corpus of problems with teacher solutions (dedup + decontamination)."""
    try:
        dec = DecontaminationConfig(
            methods=[m.strip() for m in decontamination.split(",") if m.strip()],  # type: ignore[misc]
            ngram_n=ngram_n, ngram_min_overlap=ngram_overlap, fuzzy_threshold=fuzzy_threshold,
            data_dir=str(benchmarks_dir) if benchmarks_dir else None,
        )
        cfg = IngestConfig(
            source=source, preset=preset, question_field=question_field, response_field=response_field,
            answer_field=answer_field, id_field=id_field, split=split, config_name=config_name, limit=limit,
            exclude=exclude, decontamination=dec, dedup=dedup, on_error=on_error,  # type: ignore[arg-type]
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"invalid option {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    report = run_ingest(cfg, out)
    table = Table(title=f"ingest: {source}", show_header=False)
    table.add_row("rows read", str(report.rows_read))
    table.add_row("rows written", f"[green]{report.rows_written}[/green]")
    for reason, n in sorted(report.dropped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"dropped: {reason}", str(n))
    console.print(table)
    for reason, examples in report.examples.items():
        console.print(f"[dim]{reason}: e.g. {', '.join(examples[:3])}[/dim]")
    dec_file = out / DECONTAMINATION_FILE
    if exclude and dec_file.exists():
        print_decontamination(json.loads(dec_file.read_text()))
    console.print(f"wrote {out / 'corpus.parquet'}")


def print_decontamination(d: dict) -> None:
    """The per-benchmark table of decontamination.json."""
    methods = d["config"]["methods"]
    table = Table("benchmark", "problems", *methods, "problems hit", title="decontamination: corpus items removed")
    for name, b in d["benchmarks"].items():
        table.add_row(name, str(b["problems"]), *(str(b["items_removed"][m]) for m in methods), str(b["problems_hit"]))
    console.print(table)
    for name, b in d["benchmarks"].items():
        for m in methods:
            for ex in b["examples"][m][:1]:
                console.print(f"[dim]{name} {m} ({ex['score']}): {ex['corpus_question'][:90]!r} ~ "
                              f"{ex['benchmark_question'][:90]!r}[/dim]")


@app.command("presets")
def presets_cmd() -> None:
    """List the schema presets of `ingest` and their field mappings."""
    table = Table("preset", "HF id", "question", "response", "answer", "notes")
    for p in PRESETS.values():
        table.add_row(p.name, p.hf_id or "", p.question, " + ".join(p.response), p.answer or "(extracted)", p.notes)
    console.print(table)
