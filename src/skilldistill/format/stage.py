"""``skilldistill format``: the stage function, :func:`run_format`.

It reads as its steps: check the inputs, stop if a matching run is done, build one chat
example per item, count tokens and drop the over-long, write the exports, the per-example
lengths and the report, then the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..artifacts import (
    locked_stage,
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
)
from ..errors import ConfigError, InputError
from .config import ExampleFormat, FormatConfig
from .examples import build_messages, load_name_map, plan_chains_shown, plan_lines
from .exporters import (
    HF_DIR,
    LF_DIR,
    TRAIN_JSONL,
    export_path,
    write_hf_dataset,
    write_llamafactory,
    write_messages_jsonl,
)
from .tokens import count_with_progress, load_tokenizer, token_stats

log = logging.getLogger(__name__)

LENGTHS = "examples.parquet"
REPORT = "report.json"


@dataclass
class FormatResult:
    out_dir: Path
    n_input: int
    n_written: int
    n_dropped_overlong: int
    report: dict[str, Any]
    skipped: bool = False


@dataclass
class _FormatRun:
    """What the steps of one formatting run hand each other."""

    config: FormatConfig
    src: Path  # the selection's Parquet file
    out: Path
    started: float
    inputs: dict[str, str]  # input file -> hash, for the manifest
    fmt: ExampleFormat | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[list[dict[str, str]]] = field(default_factory=list)  # one per row
    no_skills: int = 0  # skill-aware items without a skill chain: written without a plan
    window_emptied: int = 0  # skill-aware items with chains, none of them left by the depth window
    n_tokens: list[int | None] = field(default_factory=list)  # one per row (None: not counted)
    keep: list[bool] = field(default_factory=list)  # one per row
    dropped: list[dict[str, Any]] = field(default_factory=list)  # the over-long rows dropped
    over_kept: int = 0  # over-long rows kept (overlong: keep)

    @property
    def kept_idx(self) -> list[int]:
        return [i for i, k in enumerate(self.keep) if k]


@locked_stage("format")
def run_format(
    selection_parquet: str | Path,
    out_dir: str | Path,
    config: FormatConfig | None = None,
    *,
    tokenizer: Any = None,
    force: bool = False,
    progress: bool = True,
) -> FormatResult:
    """Format ``selection_parquet`` (id, question, response, skills) into SFT exports in ``out_dir``.

    ``tokenizer``: an already loaded tokenizer (else ``config.tokenizer`` is loaded when
    token counts are needed). Skips the work when ``out_dir`` holds a matching manifest.
    """
    run = _check_inputs(selection_parquet, out_dir, config or FormatConfig(), tokenizer)
    if not force:
        done = _finished_run(run)
        if done is not None:
            return done
    _build_conversations(run)
    _count_and_filter(run, tokenizer, progress)
    _write_exports(run)
    report = _report(run)
    write_json(run.out / REPORT, report)
    wall = time.perf_counter() - run.started
    write_manifest(run.out, config=run.config.model_dump(mode="json"), inputs=run.inputs, counts=report["counts"],
                   wall_time_s=round(wall, 3))
    return FormatResult(run.out, len(run.rows), len(run.kept_idx), len(run.dropped), report)


def _check_inputs(selection_parquet: str | Path, out_dir: str | Path, config: FormatConfig,
                  tokenizer: Any) -> _FormatRun:
    """The selection file and the short-names map checked, and their hashes."""
    started = time.perf_counter()
    src = Path(selection_parquet)
    if src.is_dir():
        src = src / "selection.parquet"
    if not src.exists():
        raise InputError("selection not found", file=src)
    if config.max_length is not None and tokenizer is None and config.tokenizer is None:
        raise ConfigError("max_length needs a student tokenizer (--tokenizer)")
    inputs = {"selection": sha256_file(src)}
    if config.short_names:
        load_name_map(config.short_names)  # a bad map fails before any work
        inputs["short_names"] = sha256_file(config.short_names)
    return _FormatRun(config, src, Path(out_dir), started, inputs)


def _finished_run(run: _FormatRun) -> FormatResult | None:
    """The result of a finished run with the same config and inputs, if the folder holds one."""
    out = run.out
    if not (manifest_matches(out, config=run.config.model_dump(mode="json"), inputs=run.inputs)
            and (out / REPORT).exists()):
        return None
    report = read_json(out / REPORT)
    counts = report["counts"]
    return FormatResult(out, counts["input"], counts["written"], counts["dropped_overlong"], report, skipped=True)


def _build_conversations(run: _FormatRun) -> None:
    """One ``[system?, user, assistant]`` conversation per selected item."""
    config = run.config
    run.fmt = fmt = config.example_format()
    run.rows = _read_rows(run.src, need_skills=config.style == "skill-aware")
    for r in run.rows:
        msgs = build_messages(r["question"], r["response"], r["skills"], fmt)
        if config.style == "skill-aware" and not plan_lines(r["skills"], fmt):
            if any(r["skills"]):  # chains it has: the window (min/max shown depth) left none of them
                run.window_emptied += 1
            else:
                run.no_skills += 1
        run.conversations.append(msgs)


def _count_and_filter(run: _FormatRun, tokenizer: Any, progress: bool) -> None:
    """Token counts (when a tokenizer is given or named), and which rows are kept."""
    config = run.config
    run.n_tokens = [None] * len(run.rows)
    if tokenizer is None and config.tokenizer is not None:
        tokenizer = load_tokenizer(config.tokenizer, config.gguf_file)
    if tokenizer is not None:
        run.n_tokens = list(count_with_progress(tokenizer, run.conversations, progress))
    for r, n in zip(run.rows, run.n_tokens, strict=True):
        over = config.max_length is not None and n is not None and n > config.max_length
        if over and config.overlong == "drop":
            run.keep.append(False)
            run.dropped.append({"id": r["id"], "n_tokens": n})
        else:
            run.keep.append(True)
    run.over_kept = sum(
        1 for n, k in zip(run.n_tokens, run.keep, strict=True)
        if k and config.max_length is not None and n is not None and n > config.max_length
    )


def _write_exports(run: _FormatRun) -> None:
    """The kept examples in each export asked for, and every row's length in ``examples.parquet``."""
    config, out, rows, kept_idx = run.config, run.out, run.rows, run.kept_idx
    out.mkdir(parents=True, exist_ok=True)
    records = [{"id": rows[i]["id"], "messages": run.conversations[i]} for i in kept_idx]
    if "jsonl" in config.exports:
        write_messages_jsonl(out / TRAIN_JSONL, records)
    if "hf" in config.exports:
        write_hf_dataset(out / HF_DIR, records, [run.n_tokens[i] for i in kept_idx])
    if "llamafactory" in config.exports:
        write_llamafactory(out / LF_DIR, records, config.dataset_name)
    write_parquet(out / LENGTHS, pa.table({
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "n_tokens": pa.array(run.n_tokens, pa.int64()),
        "kept": pa.array(run.keep, pa.bool_()),
        "skill_plan": pa.array(
            ["\n".join(plan_lines(r["skills"], run.fmt)) for r in rows], pa.string()
        ),
    }))


def _short_names_report(run: _FormatRun) -> dict[str, Any] | None:
    """How many names shown in plans the short-names map shortened (None without a map)."""
    config = run.config
    if not (config.short_names and config.style == "skill-aware"):
        return None
    names = load_name_map(config.short_names)
    shown = [n for i in run.kept_idx for c in plan_chains_shown(run.rows[i]["skills"], run.fmt) for n in c]
    short_report = {"map": config.short_names, "names_shown": len(shown),
                    "shortened": sum(1 for n in shown if n in names),
                    "not_in_map": sorted({n for n in shown if n not in names})[:20]}
    if short_report["shortened"] < len(shown):
        log.warning("%d of %d names shown in plans are not in %s: shown in full", len(shown) - short_report["shortened"],
                    len(shown), config.short_names)
    return short_report


def _report(run: _FormatRun) -> dict[str, Any]:
    """``report.json``'s content; warns about what was dropped or written without a plan."""
    config, kept_idx = run.config, run.kept_idx
    short_report = _short_names_report(run)
    kept_tokens = sorted(run.n_tokens[i] for i in kept_idx if run.n_tokens[i] is not None)
    report = {
        "style": config.style,
        "counts": {
            "input": len(run.rows),
            "written": len(kept_idx),
            "dropped_overlong": len(run.dropped),
            "kept_overlong": run.over_kept,
            "skill_aware_without_skills": run.no_skills,
            "plan_emptied_by_window": run.window_emptied,
        },
        "max_length": config.max_length,
        "tokens": token_stats(kept_tokens),
        "dropped": run.dropped,
        "exports": {k: export_path(k, config.dataset_name) for k in config.exports},
        "example": run.conversations[kept_idx[0]] if kept_idx else None,
    }
    if short_report is not None:
        report["short_names"] = short_report
    if run.dropped:
        log.warning("dropped %d over-long example(s) (> %d tokens); see %s", len(run.dropped), config.max_length,
                    run.out / REPORT)
    if run.window_emptied:
        log.warning("%d item(s) lost every chain to the depth window (%s): formatted without a plan",
                    run.window_emptied, window_text(config))
    if run.no_skills:
        log.warning("%d item(s) have no skills: formatted without a plan", run.no_skills)
    return report


def window_text(config: ExampleFormat) -> str:
    """What the depth window leaves nothing of, in words (for the warnings)."""
    m, n = config.min_shown_depth, config.max_shown_depth
    rules = [f"min_shown_depth {m}: a chain of depth {m} or less shows no level"] if m else []
    if config.short_chains == "drop" and n is not None:
        rules.append(f"max_shown_depth {n} with short_chains drop: a chain shorter than {n} is dropped")
    return "; ".join(rules)


def _read_rows(src: Path, *, need_skills: bool) -> list[dict[str, Any]]:
    """The selection's rows (id, question, response, skills), checked: no empty text."""
    schema = pq.read_schema(src)
    need = ["id", "question", "response"] + (["skills"] if need_skills else [])
    for col in need:
        if col not in schema.names:
            raise InputError(f"missing column {col!r}", file=src, field=col)
    cols = ["id", "question", "response"] + (["skills"] if "skills" in schema.names else [])
    table = pq.read_table(src, columns=cols)
    data = table.to_pydict()
    rows = []
    for i in range(table.num_rows):
        rid = data["id"][i]
        for col in ("id", "question", "response"):
            v = data[col][i]
            if not isinstance(v, str) or not v.strip():
                raise InputError("empty or missing value", file=src, row=i + 1, field=col)
        skills = data["skills"][i] if "skills" in data else None
        rows.append({"id": rid, "question": data["question"][i], "response": data["response"][i], "skills": skills or []})
    return rows
