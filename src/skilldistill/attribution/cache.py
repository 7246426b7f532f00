"""The decision cache, ``calls.jsonl``: one record per (item, node) decision, appended the
moment it arrives, so a rerun reuses every finished decision and repeats no finished call.
Here: the record statuses, what of an answer is stored, and reading the cache back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import AppendLog

CALLS_FILE = "calls.jsonl"

# Decision statuses in calls.jsonl. Only FINAL ones are reused as answers.
OK, NONE, UNPARSEABLE, PENDING_REPAIR, FAILED = "ok", "none", "unparseable", "pending_repair", "failed"
FINAL = {OK, NONE, UNPARSEABLE, FAILED}
RETRYABLE = {UNPARSEABLE, FAILED}  # re-asked by run_annotate(..., retry_failed=True)

# ``unreadable`` of a chat record whose answer was a list naming none of the node's children
# (``[]``, names that are not its children): no decision, repaired like an unreadable one.
NAMED_NONE = "named_none"

MAX_STORED_ANSWER = 4_000  # characters of a model's answer kept in calls.jsonl (parsing reads all of it)

Decisions = dict[str, dict[str, Any]]  # decision key -> its record


def stored_answer(text: str | None) -> str | None:
    """An answer as recorded: a runaway answer (1 MB of repetition) would make the cache
    huge; its head shows what went wrong, and the decision parsed from all of it is kept."""
    if text is None or len(text) <= MAX_STORED_ANSWER:
        return text
    return text[:MAX_STORED_ANSWER] + f"... [{len(text) - MAX_STORED_ANSWER} more characters not stored]"


def add_token_counts(a: int | None, b: int | None) -> int | None:
    """The sum of two token counts a server may not report (None when neither was)."""
    if a is None and b is None:
        return None
    return (a or 0) + (b or 0)


def unreadable_reason(rec: dict[str, Any]) -> str:
    """Why a chat answer was no decision, in words (``summary.json``, the failure line)."""
    if rec.get("finish_reason"):
        return f"finish_reason {rec['finish_reason']}"
    if rec.get("unreadable") == NAMED_NONE:
        return "named none of the node's skills"
    return "no readable list"


def load_decisions(path: Path) -> Decisions:
    """Last record per key wins; a final answer is never replaced by a pending one.
    A chat answer an older run took as a final empty pick is read by today's rule."""
    cache: Decisions = {}
    for rec in AppendLog(path).iter():
        key = rec.get("key")
        if not isinstance(key, str):
            continue
        prev = cache.get(key)
        if prev is not None and prev.get("status") in FINAL and rec.get("status") not in FINAL:
            continue
        cache[key] = rec
    return {key: _empty_pick_reread(rec) for key, rec in cache.items()}


def _empty_pick_reread(rec: dict[str, Any]) -> dict[str, Any]:
    """Runs before the rule "an answer naming no child is no decision" recorded a chat answer
    (it has ``answer``) of ``[]`` or of names matching no child as a final ``none`` (or ``ok``)
    with nothing chosen, and certified its item ``ok``. Such a record now awaits its repair
    turn (``pending_repair``: the next run asks only that turn), or, when it already had
    one, stays unreadable (``unparseable``: counted, ``--retry-failed`` asks again). The
    embedding and classifier deciders' records carry no ``answer``: their empty picks stand."""
    chosen = rec.get("chosen")
    if rec.get("status") not in (OK, NONE) or "answer" not in rec or (
            isinstance(chosen, list) and chosen and all(isinstance(c, str) for c in chosen)):
        return rec
    status = UNPARSEABLE if rec.get("repair_answer") is not None else PENDING_REPAIR
    return {**rec, "status": status, "chosen": [], "unreadable": NAMED_NONE}
