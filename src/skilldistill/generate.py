"""Student sampling, shared by profiling (stage 2) and evaluation (stage 5).

    from skilldistill.generate import GenerationConfig, run_generation
    from skilldistill.llm.base import BackendConfig

    cfg = GenerationConfig(backend=BackendConfig(kind="vllm", model="Qwen/Qwen3-4B"),
                           max_new_tokens=8192, n=1, seed=0)
    table = run_generation(items, "runs/x/profile", cfg)   # items: dicts with id, question

Each item becomes one conversation: an optional system prompt, then the user turn
``{question}\\n\\n{instruction}`` (the paper's default instruction asks for step-by-step
reasoning and the final answer in ``\\boxed{}``). The student's own chat template
renders it (``enable_thinking`` is passed to templates that take it, e.g. Qwen3).

Resumable: every finished (item, sample) row is appended to ``generations.jsonl`` the
moment the backend returns it; a rerun with the same settings skips those rows and only
samples what is missing. The log's rows carry a hash of everything that shapes a sample
(model, prompt, sampling settings), so rows from other settings are never reused.
``generations.parquet`` is rewritten from the log at the end, in input order, so a
finished run rerun gives the same file.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .artifacts import AppendLog, hash_obj, write_parquet
from .errors import InputError
from .llm.base import BackendConfig, ChatBackend, Completion, Conversation, SamplingParams
from .textutil import DEFAULT_PROMPT_TEMPLATE, check_prompt_template, render_user_prompt

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GENERATIONS_LOG = "generations.jsonl"
# How samples are seeded (part of the log's settings hash: rows seeded another way are not reused).
SEEDING = "per-sample-sha256-v1"
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


class GenerationConfig(BaseModel):
    """How the student is sampled. Defaults follow the paper (temperature 0.6, top_p 0.95)."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendConfig
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(8192, ge=1, description="Cap on generated tokens per sample.")
    n: int = Field(1, ge=1, description="Samples per item.")
    seed: int | None = Field(0, description="Sampling seed (recorded with every row).")
    instruction: str = Field(DEFAULT_INSTRUCTION, description="Appended to each question; '' for none.")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, description="The user turn: {question} and {instruction}; "
                                 "the paper's authors: '{instruction}\\n\\nQuestion: {question}'.")
    system_prompt: str | None = Field(None, description="Optional system message.")
    enable_thinking: bool | None = Field(
        None, description="Passed to the chat template (Qwen3 thinking switch); None leaves the template default."
    )
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict, description="More chat-template variables.")

    def sampling_params(self, n: int | None = None) -> SamplingParams:
        kwargs = dict(self.chat_template_kwargs)
        if self.enable_thinking is not None:
            kwargs["enable_thinking"] = self.enable_thinking
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens,
            n=n or self.n,
            seed=self.seed,
            chat_template_kwargs=kwargs,
        )

    @field_validator("prompt_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        return check_prompt_template(v)

    def user_prompt(self, question: str) -> str:
        return render_user_prompt(question, self.instruction, self.prompt_template)

    def conversation(self, question: str) -> Conversation:
        """The messages sent for one question."""
        messages: Conversation = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.user_prompt(question)})
        return messages

    def fingerprint(self) -> str:
        """Hash of what shapes one sample (not n, not the backend's throughput knobs): the
        backend config without its client-only fields (so extra_body's top_k, the dtype, the
        context length, model_kwargs count; concurrency and servers do not), the sampling and
        the prompt settings. Each logged row also keeps its prompt, checked on resume."""
        from .llm.base import fingerprint_view

        return hash_obj(
            {
                "backend": fingerprint_view(self.backend.model_dump(mode="json")),
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens,
                "seed": self.seed,
                "instruction": self.instruction,
                "prompt_template": self.prompt_template,
                "system_prompt": self.system_prompt,
                "enable_thinking": self.enable_thinking,
                "chat_template_kwargs": self.chat_template_kwargs,
                "seeding": SEEDING,
            }
        )

    def sample_seed(self, item_id: str, sample: int) -> int | None:
        """The seed of sample ``sample`` of item ``item_id``: a hash of (seed, id, index), so
        every sample has its own random stream and asking again for sample k gives sample k."""
        if self.seed is None:
            return None
        digest = hashlib.sha256(f"{self.seed}\x1f{item_id}\x1f{sample}".encode()).digest()
        return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


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
            from .llm.factory import make_backend

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

    from .progress import StageProgress

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
