"""Each sampled item's skill-chain proposal, asked once: ``proposals.jsonl`` holds one record
per answer, appended the moment it arrives and keyed by hash(model, prompt version, the whole
conversation, sampling settings), so a rerun after a crash or a kill asks only what is
missing, and a changed prompt or model asks again. Records keep the answer (cut to
``MAX_STORED_ANSWER`` characters); it is read into chains afterwards (``chains.py``), so
reading rules change no request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import AppendLog, hash_obj
from ..llm.base import ChatBackend, Completion, Conversation, SamplingParams
from .prompt import PROMPT_VERSION

PROPOSALS_FILE = "proposals.jsonl"
ANSWERED, FAILED = "answered", "failed"
MAX_STORED_ANSWER = 20_000  # a runaway answer keeps its head; its cut line is then dropped (chains.py)

Records = dict[str, dict[str, Any]]  # proposal key -> its record


@dataclass
class Ask:
    """One item to propose chains for."""

    item_id: str
    key: str
    conversation: Conversation


@dataclass
class AskCounters:
    """What this run asked."""

    calls: int = 0
    refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    asked_ids: list[str] = field(default_factory=list)


def proposal_key(model: str, conversation: Conversation, params: SamplingParams, extra_body: dict[str, Any]) -> str:
    return hash_obj({"model": model, "prompt": PROMPT_VERSION, "conversation": conversation,
                     "sampling": params.as_dict(), "extra_body": extra_body})


def load_records(path: Path) -> Records:
    """The last record of each key (a retried refusal replaces the refusal)."""
    records: Records = {}
    for rec in AppendLog(path).iter():
        if isinstance(rec.get("key"), str):
            records[rec["key"]] = rec
    return records


def to_ask(asks: Sequence[Ask], records: Records, retry_failed: bool) -> list[Ask]:
    """The asks with no record yet (with ``retry_failed``: or a refused one)."""
    out = []
    for a in asks:
        rec = records.get(a.key)
        if rec is None or (retry_failed and rec.get("status") == FAILED):
            out.append(a)
    return out


def ask(backend: ChatBackend, asks: Sequence[Ask], params: SamplingParams, log_path: Path, records: Records,
        progress: Any = None) -> AskCounters:
    """Ask every one of ``asks``; each answer (or refusal) goes to ``log_path`` and ``records``
    as it arrives. A server failure no retry fixes raises after the answers before it are kept."""
    counters = AskCounters()
    if not asks:
        return counters
    log = AppendLog(log_path).open()

    def keep(j: int, rec: dict[str, Any]) -> None:
        rec = {"key": asks[j].key, "id": asks[j].item_id, **rec}
        log.append(rec)
        records[asks[j].key] = rec
        counters.calls += 1
        counters.asked_ids.append(asks[j].item_id)
        if progress is not None:
            progress(1)

    def answered(j: int, comps: list[Completion]) -> None:
        c = comps[0]
        text = c.text or ""
        counters.prompt_tokens += c.prompt_tokens or 0
        counters.completion_tokens += c.completion_tokens or 0
        keep(j, {"status": ANSWERED, "answer": text[:MAX_STORED_ANSWER], "answer_cut": len(text) > MAX_STORED_ANSWER,
                 "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
                 "completion_tokens": c.completion_tokens})

    def refused(j: int, exc: BaseException) -> None:
        # the server refused this prompt for good (longer than its context, say): counted, kept,
        # asked again by --retry-failed
        counters.refused += 1
        keep(j, {"status": FAILED, "error": f"{type(exc).__name__}: {exc}"[:500]})

    kwargs: dict[str, Any] = {"on_error": refused}
    if getattr(backend, "name", None) == "openai":
        kwargs["routing_keys"] = [a.key for a in asks]
    try:
        backend.chat([a.conversation for a in asks], params, on_result=answered, **kwargs)
    finally:
        log.close()
    return counters
