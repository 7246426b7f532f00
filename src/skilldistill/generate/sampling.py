"""Student sampling, shared by ``skilldistill profile`` and ``skilldistill evaluate``.

    from skilldistill.generate import GenerationConfig, run_generation
    from skilldistill.llm.base import BackendConfig

    cfg = GenerationConfig(backend=BackendConfig(kind="vllm", model="Qwen/Qwen3-4B"),
                           max_new_tokens=8192, n=1, seed=0)
    table = run_generation(items, "runs/x/profile", cfg)   # items: dicts with id, question

The student's own chat template renders each conversation (``enable_thinking`` is passed
to templates that take it, e.g. Qwen3).

Resumable: every finished (item, sample) row is appended to ``generations.jsonl`` the
moment the backend returns it; a rerun with the same settings skips those rows and only
samples what is missing. The log's rows carry a hash of everything that shapes a sample
(model, prompt, sampling settings), so rows from other settings are never reused.
``generations.parquet`` is rewritten from the log at the end, in input order, so a
finished run rerun gives the same file.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..artifacts import AppendLog, write_parquet
from ..errors import InputError
from ..llm.base import ChatBackend, Completion
from .config import GenerationConfig

logger = logging.getLogger(__name__)

GENERATIONS_LOG = "generations.jsonl"
GENERATIONS_PARQUET = "generations.parquet"

GENERATIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sample", pa.int32()),
        ("system_prompt", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("model", pa.string()),
        ("backend", pa.string()),
        ("seed", pa.int64()),
        ("sample_seed", pa.int64()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_new_tokens", pa.int64()),
        ("enable_thinking", pa.bool_()),
        ("gen_hash", pa.string()),
    ]
)


def _validate_items(items: Iterable[Mapping[str, Any]], source: str | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for row, item in enumerate(items, start=1):
        if isinstance(item, Mapping):
            item_id, question = item.get("id"), item.get("question")
        else:  # dataclass-like items (e.g. evaluation's benchmark items)
            item_id, question = getattr(item, "id", None), getattr(item, "question", None)
        if item_id is None or str(item_id) == "":
            raise InputError("missing item id", file=source, row=row, field="id")
        if not isinstance(question, str) or not question.strip():
            raise InputError("missing or empty question", file=source, row=row, field="question")
        item_id = str(item_id)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r}", file=source, row=row, field="id")
        seen.add(item_id)
        out.append((item_id, question))
    return out


def load_done(log_path: str | Path, gen_hash: str, prompts: Mapping[str, str] | None = None) -> dict[tuple[str, int], dict]:
    """Rows already in the log for these settings, keyed by (id, sample); with ``prompts``
    (id -> user prompt), only rows whose prompt is the item's prompt now (an id whose
    question changed is asked again, not answered with the old question's samples)."""
    done: dict[tuple[str, int], dict] = {}
    for rec in AppendLog(log_path).iter():
        if rec.get("gen_hash") == gen_hash and (prompts is None or prompts.get(rec["id"]) == rec.get("prompt")):
            done[(rec["id"], int(rec["sample"]))] = rec
    return done


def run_generation(
    items: Sequence[Mapping[str, Any]] | Any,
    out_dir: str | Path,
    config: GenerationConfig,
    *,
    backend: ChatBackend | None = None,
    source: str | None = None,
    show_progress: bool = True,
    label: str | None = None,
) -> pa.Table:
    """Sample ``config.n`` responses per item; write and return ``generations.parquet``.

    ``items``: dicts, objects with ``id``/``question`` attributes, or a DataFrame. ``backend``: an
    already built backend (else one is made from ``config.backend`` before any work).
    Rows already in ``out_dir/generations.jsonl`` for the same settings are kept.
    ``label`` names the work in progress lines (default: the last two parts of ``out_dir``).
    """
    if hasattr(items, "to_dict"):
        items = items.to_dict("records")
    pairs = _validate_items(items, source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = AppendLog(out_dir / GENERATIONS_LOG)
    gen_hash = config.fingerprint()
    prompts = {item_id: config.user_prompt(question) for item_id, question in pairs}
    done = load_done(log.path, gen_hash, prompts)

    # Which samples each item still needs; group items by how many are missing, since a
    # backend call samples the same n for every conversation.
    missing: dict[str, list[int]] = {}
    for item_id, _ in pairs:
        need = [s for s in range(config.n) if (item_id, s) not in done]
        if need:
            missing[item_id] = need
    n_todo = sum(len(v) for v in missing.values())
    n_total = len(pairs) * config.n
    if n_todo < n_total:
        logger.info("resuming: %d of %d samples already generated", n_total - n_todo, n_total)

    if n_todo:
        own_backend = backend is None
        if backend is None:
            from ..llm.factory import make_backend

            backend = make_backend(config.backend)  # fails here, before any work, if the model cannot load
        try:
            _sample_missing(pairs, missing, config, backend, log, gen_hash, show_progress,
                            label or "/".join(out_dir.parts[-2:]))
        finally:
            log.close()
            if own_backend:
                backend.close()

    done = load_done(log.path, gen_hash, prompts)
    rows = []
    for item_id, _ in pairs:
        for s in range(config.n):
            rec = done.get((item_id, s))
            if rec is None:
                raise RuntimeError(f"generation incomplete: no sample {s} for item {item_id!r}")
            rows.append({k: rec.get(k) for k in GENERATIONS_SCHEMA.names})
    table = pa.Table.from_pylist(rows, schema=GENERATIONS_SCHEMA)
    write_parquet(out_dir / GENERATIONS_PARQUET, table)
    return table


def _sample_missing(
    pairs: list[tuple[str, str]],
    missing: dict[str, list[int]],
    config: GenerationConfig,
    backend: ChatBackend,
    log: AppendLog,
    gen_hash: str,
    show_progress: bool,
    label: str,
) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..progress import StageProgress

    console = Console(stderr=True)  # the CLI's own console lives in cli.app; stderr either way

    question_of = dict(pairs)
    groups: dict[int, list[str]] = defaultdict(list)
    for item_id, need in missing.items():
        groups[len(need)].append(item_id)
    n_todo = sum(len(v) for v in missing.values())
    tokens = 0
    started = time.monotonic()

    with StageProgress(
        TextColumn("[bold]{task.description}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tok_s]:.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    ) as bar:
        task = bar.add_task(f"generate {label}", total=n_todo, model=config.backend.model, tok_s=0.0, unit="samples")
        for n_missing, ids in sorted(groups.items(), reverse=True):
            params = config.sampling_params(n=n_missing)
            conversations = [config.conversation(question_of[i]) for i in ids]

            def on_result(index: int, completions: list[Completion], ids: list[str] = ids) -> None:
                nonlocal tokens
                item_id = ids[index]
                sample_ids = missing[item_id]
                records = [
                    _record(item_id, s, c, config, question_of[item_id], backend, gen_hash)
                    for s, c in zip(sample_ids, completions, strict=False)
                ]
                log.append_many(records)
                tokens += sum(c.completion_tokens or 0 for c in completions)
                elapsed = max(time.monotonic() - started, 1e-6)
                bar.update(task, advance=len(records), tok_s=tokens / elapsed, status=f"{tokens / elapsed:,.0f} tok/s")

            seeds = None
            if config.seed is not None:
                seeds = [[config.sample_seed(i, k) for k in missing[i]] for i in ids]
            results = backend.chat(conversations, params, on_result=on_result, seeds=seeds)
            if any(len(r) != n_missing for r in results):
                raise RuntimeError(f"backend returned the wrong number of samples (expected {n_missing} per item)")
    elapsed = time.monotonic() - started
    logger.info("generated %d samples, %d tokens in %.1fs (%.0f tok/s)", n_todo, tokens, elapsed, tokens / max(elapsed, 1e-6))


def _record(item_id: str, sample: int, c: Completion, config: GenerationConfig, question: str, backend: ChatBackend, gen_hash: str) -> dict:
    return {
        "id": item_id,
        "sample": sample,
        "system_prompt": config.system_prompt,
        "prompt": config.user_prompt(question),
        "response": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "model": config.backend.model,
        "backend": getattr(backend, "name", config.backend.kind),
        "seed": config.seed,
        "sample_seed": config.sample_seed(item_id, sample),
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
        "enable_thinking": config.enable_thinking,
        "gen_hash": gen_hash,
    }
