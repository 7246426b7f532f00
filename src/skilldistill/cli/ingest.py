"""``skilldistill ingest``: a teacher-solution dataset -> normalised corpus Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from ..corpus import DECONTAMINATION_FILE, PRESETS, IngestConfig, ingest
from ..decontaminate import DecontaminationConfig
from ..errors import ConfigError
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
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="Benchmark whose problems and near-copies are removed: "
                                      "a registered name (aime24, math500, ...) or a file/folder. Repeatable."),
    benchmarks_dir: Path | None = typer.Option(None, "--benchmarks-dir", help="Folder with <name>/test.jsonl for --exclude names (else the HF hub)."),
    decontamination: str = typer.Option("exact,ngram,fuzzy", "--decontamination", help="Tests run against --exclude, comma-separated."),
    ngram_n: int = typer.Option(8, "--ngram-n", help="Words per n-gram (open-r1, s1: 8)."),
    ngram_overlap: float = typer.Option(0.5, "--ngram-overlap", help="Share of a benchmark problem's n-grams that marks a copy (0: any one)."),
    fuzzy_threshold: float = typer.Option(95.0, "--fuzzy-threshold", help="rapidfuzz fuzz.ratio that marks a copy (OpenThoughts: 95)."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Drop repeated questions (normalised text)."),
    on_error: str = typer.Option("auto", "--on-error", help="auto | skip | fail. auto: fail on a missing column, skip-and-count bad rows."),
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
    report = ingest(cfg, out)
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
