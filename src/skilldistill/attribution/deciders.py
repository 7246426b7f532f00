"""Deciders: who answers "which children does this item need at this node?". A chat model
(asked, its answer parsed and matched, an unreadable one repaired) or the offline
embedding scorer. Each hands every decision back as a ``calls.jsonl`` record."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..artifacts import hash_obj, sha256_text
from ..llm.base import ChatBackend, Completion
from ..llm.embedding import EmbeddingConfig
from ..tree import Chain, SkillNode, chain_str
from .cache import (
    FAILED,
    NAMED_NONE,
    NONE,
    OK,
    PENDING_REPAIR,
    UNPARSEABLE,
    add_token_counts,
    stored_answer,
)
from .config import AnnotateConfig
from .parsing import match_names, read_complete_answer
from .prompt import PromptTemplate, repair_message

log = logging.getLogger(__name__)


@dataclass
class Question:
    key: str
    text: str
    path: Chain
    children: list[SkillNode]
    pending: dict[str, Any] | None = None  # a cached first answer awaiting its repair
    calls_before: int = 0  # requests this decision took in earlier runs (a pending or a retried record)


OnDecision = Callable[[Question, dict[str, Any]], None]
OnProgress = Callable[[int], None]
Repair = tuple[Question, dict[str, Any]]  # a question and its unreadable record so far
Pick = tuple[list[str], list[str]]  # what an answer decides: (children chosen, names matching no child)


class Decider(Protocol):
    """What the walk needs of a decider: an identity for the cache keys and ``decide``."""

    model_id: str
    version: str

    def decide(self, questions: list[Question], on_decision: OnDecision, progress: OnProgress) -> None: ...


class ChatDecider:
    """Asks a chat backend; parses, matches, repairs."""

    def __init__(self, backend: ChatBackend, cfg: AnnotateConfig, template: PromptTemplate, root_name: str) -> None:
        self.backend = backend
        self.cfg = cfg
        self.template = template
        self.root_name = root_name
        self.params = cfg.sampling()
        self.model_id = backend.model
        # Beyond the prompt, what decides an answer: the sampling settings, the matching rule,
        # the root's name (the prompt names it) and what every request carries. They are in
        # every decision's cache key, so changing one asks again instead of serving answers
        # made under other settings (client-only settings, like concurrency, are not).
        decides = {"sampling": self.params.as_dict(), "match_threshold": cfg.match_threshold, "root": root_name,
                   "extra_body": (cfg.llm.extra_body if cfg.llm else {}) or {}}
        self.version = f"{template.version}|decide={hash_obj(decides)[:12]}"

    def decide(self, questions: list[Question], on_decision: OnDecision, progress: OnProgress) -> None:
        fresh = [q for q in questions if q.pending is None]
        repairs: list[Repair] = [(q, q.pending) for q in questions if q.pending is not None]
        if self.cfg.repair_retries == 0:  # cached first answers awaiting a repair no longer get one
            for q, prev in repairs:
                on_decision(q, self._finish(q, {k: v for k, v in prev.items() if k not in ("key", "node", "item", "status")}, None))
                progress(1)
            repairs = []
        if fresh:
            self._ask_first(fresh, repairs, on_decision, progress)
        self._repair(repairs, on_decision, progress)

    def _ask_first(self, fresh: list[Question], repairs: list[Repair], on_decision: OnDecision,
                   progress: OnProgress) -> None:
        """The first ask of each question; an unreadable answer joins ``repairs``."""
        def first(j: int, comps: list[Completion]) -> None:
            q, c = fresh[j], comps[0]
            rec = {"answer": stored_answer(c.text), "calls": q.calls_before + 1, "prompt_tokens": c.prompt_tokens,
                   "completion_tokens": c.completion_tokens}
            pick = self._read(q, c, rec)
            if pick is None and self.cfg.repair_retries > 0:
                rec["status"] = PENDING_REPAIR
                on_decision(q, rec)
                repairs.append((q, rec))
            else:
                on_decision(q, self._finish(q, rec, pick))
                progress(1)

        convs = [[{"role": "user", "content": self._prompt(q)}] for q in fresh]
        self.backend.chat(convs, self.params, on_result=first, **self._routing(fresh),
                          **self._errors(self._refused(fresh, [None] * len(fresh), on_decision, progress)))

    def _repair(self, repairs: list[Repair], on_decision: OnDecision, progress: OnProgress) -> None:
        """Up to ``repair_retries`` follow-up turns; still unreadable after the last: unparseable."""
        for attempt in range(1, self.cfg.repair_retries + 1):
            if not repairs:
                break
            batch, next_round = repairs, []
            last = attempt == self.cfg.repair_retries

            def repaired(j: int, comps: list[Completion], batch=batch, last=last, next_round=next_round) -> None:
                q, prev = batch[j]
                c = comps[0]
                rec = {
                    "answer": prev.get("answer"),
                    "repair_answer": stored_answer(c.text),
                    "calls": prev.get("calls", 1) + 1,
                    "prompt_tokens": add_token_counts(prev.get("prompt_tokens"), c.prompt_tokens),
                    "completion_tokens": add_token_counts(prev.get("completion_tokens"), c.completion_tokens),
                }
                pick = self._read(q, c, rec)
                if pick is None and not last:
                    rec["status"] = PENDING_REPAIR
                    on_decision(q, rec)
                    next_round.append((q, rec))
                    return
                on_decision(q, self._finish(q, rec, pick))
                progress(1)

            convs = [
                [
                    {"role": "user", "content": self._prompt(q)},
                    {"role": "assistant", "content": prev.get("repair_answer") or prev.get("answer") or ""},
                    {"role": "user", "content": repair_message(q.children, prev.get("unreadable") == NAMED_NONE)},
                ]
                for q, prev in batch
            ]
            self.backend.chat(convs, self.params, on_result=repaired, **self._routing([q for q, _ in batch]),
                              **self._errors(self._refused([q for q, _ in batch], [p for _, p in batch], on_decision,
                                                           progress)))
            repairs = next_round

    @staticmethod
    def _refused(qs: list[Question], prev: list[dict[str, Any] | None], on_decision: OnDecision,
                 progress: OnProgress) -> Callable[[int, BaseException], None]:
        def on_error(j: int, exc: BaseException) -> None:
            # The server refused this prompt for good (e.g. longer than its context): the
            # decision is dropped with the reason, counted, and re-asked by --retry-failed.
            before = prev[j] or {}
            rec = {"status": FAILED, "chosen": [], "unmatched": [],
                   "calls": before.get("calls", qs[j].calls_before) + 1,
                   "answer": before.get("answer"), "error": f"{type(exc).__name__}: {exc}"[:500]}
            on_decision(qs[j], rec)
            progress(1)

        return on_error

    def _prompt(self, q: Question) -> str:
        return self.template.render(q.text, q.path, q.children, self.root_name)

    def _errors(self, on_error: Callable[[int, BaseException], None]) -> dict[str, Any]:
        """Per-prompt refusals come back as failed decisions (backends that report them)."""
        if getattr(self.backend, "name", None) in ("openai", "vllm"):
            return {"on_error": on_error}
        return {}

    def _routing(self, questions: list[Question]) -> dict[str, Any]:
        """Every call about one item goes to one server (OpenAI-compatible backends): the
        template puts the item text first, so that server's prefix cache serves it."""
        if getattr(self.backend, "name", None) != "openai":
            return {}
        return {"routing_keys": [sha256_text(q.text) for q in questions]}

    def _read(self, q: Question, c: Completion, rec: dict[str, Any]) -> Pick | None:
        """What an answer decides, or None when it decides nothing: unreadable
        (``read_complete_answer``), or a list naming none of the node's children. The prompt
        asks which of the listed skills (at the root, the domains; below, the sub-skills of a
        skill already chosen as needed) the item needs, and offers no "none of them": ``[]``
        or names that are no child are no decision (``unreadable: named_none``), repaired
        like an unreadable answer, then counted, never an item without skills."""
        names = read_complete_answer(c, rec)
        if names is None:
            return None
        matched, unmatched = match_names(names, q.children, self.cfg.match_threshold)
        if unmatched:
            log.debug("unmatched skill names at %s: %s", chain_str(q.path) or "the root", unmatched)
        if not matched:
            rec.update(unreadable=NAMED_NONE, unmatched=unmatched)
            return None
        return matched, unmatched

    @staticmethod
    def _finish(q: Question, rec: dict[str, Any], pick: Pick | None) -> dict[str, Any]:
        if pick is None:
            rec.update(status=UNPARSEABLE, chosen=[], unmatched=rec.get("unmatched") or [])
            return rec
        rec.update(status=OK, chosen=pick[0], unmatched=pick[1])
        return rec


class EmbeddingDecider:
    """Scores item text against each child with a sentence-transformers model."""

    def __init__(self, cfg: EmbeddingConfig, tree_key: str | None = None) -> None:
        from ..llm.embedding import EmbeddingAttributor

        self.attributor = EmbeddingAttributor(cfg)
        if tree_key:
            self.attributor.use_disk_cache(tree_key)
        self.model_id = self.attributor.model_id
        self.version = self.attributor.rule_version

    # Decisions are made (and recorded, and shown) a chunk at a time, so the progress bar
    # and the cache follow the work instead of jumping from 0 to done at the end.
    chunk_size = 256

    def decide(self, questions: list[Question], on_decision: OnDecision, progress: OnProgress) -> None:
        for start in range(0, len(questions), self.chunk_size):
            chunk = questions[start : start + self.chunk_size]
            picks = self.attributor.select([(q.text, q.path, q.children) for q in chunk])
            for q, chosen in zip(chunk, picks, strict=True):
                rec = {
                    "status": OK if chosen else NONE,
                    "chosen": [name for name, _ in chosen],
                    "scores": {name: round(score, 4) for name, score in chosen},
                    "unmatched": [],
                    "calls": 0,
                }
                on_decision(q, rec)
            progress(len(chunk))
