"""Stage 1, skill attribution: attach root-to-leaf skill chains to every corpus item.

    skilldistill annotate runs/demo/corpus/corpus.parquet --tree skill_mix.json \\
        --out runs/demo/annotate --backend openai --model Qwen/Qwen2.5-32B-Instruct \\
        --base-url http://gpu1:8000/v1 --base-url http://gpu2:8000/v1

Top-down and multi-label: at a node, the backend is asked which of the node's children
the item needs; every chosen child is expanded in turn until leaves (or ``max_depth``).
The walk goes one tree level at a time for *all* pending items together, so each level
is one ``backend.chat`` batch: vLLM gets one big ``generate`` call, the OpenAI backend
keeps hundreds of requests in flight, the embedding backend encodes a level at once.

Every (item, node) decision is appended to ``calls.jsonl`` the moment it arrives, keyed
by hash(model, prompt template version, node path, item text). A rerun (after a crash,
a kill, or with more items) reuses every finished decision and repeats no finished call;
the output is identical to an uninterrupted run because it is rebuilt from the
decisions alone.

LLM answers are untrusted input: they are parsed as a JSON list, a Python list literal
(``ast.literal_eval``, never ``eval``) or bullet/numbered lines; names are matched to
the node's children case- and whitespace-insensitively, then by closest match above
``match_threshold``; an unreadable answer gets one repair retry, then the branch is
dropped and recorded as ``unparseable``.

Artifacts (``out_dir``): ``skills.parquet`` (the corpus + ``skills``: list of chains),
``calls.jsonl`` (the decision cache), ``summary.json``, ``manifest.json``.
See docs/annotate.md.
"""

from __future__ import annotations

import ast
import collections
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rapidfuzz import fuzz
from rapidfuzz import process as rf_process

from .artifacts import (
    AppendLog,
    hash_obj,
    manifest_matches,
    read_json,
    sha256_file,
    sha256_text,
    write_json,
    write_manifest,
    write_parquet,
)
from .distilled_attribution import DistilledConfig
from .errors import ConfigError, InputError
from .llm.base import (
    CLIENT_ONLY_FIELDS,
    BackendConfig,
    ChatBackend,
    Completion,
    SamplingParams,
    fingerprint_view,
)
from .llm.embedding import EmbeddingConfig
from .tree import CHAIN_SEP, Chain, SkillNode, SkillTree, chain_str

log = logging.getLogger(__name__)

SKILLS_FILE = "skills.parquet"
SKILLS_STATUS = "skills_status"  # per item: ok | failed | unparseable (its chains rest on incomplete decisions)
CALLS_FILE = "calls.jsonl"
SUMMARY_FILE = "summary.json"
DEFAULT_TEMPLATE = "attribution_v1"

# Decision statuses in calls.jsonl. Only FINAL ones are reused as answers.
OK, NONE, UNPARSEABLE, PENDING_REPAIR, FAILED = "ok", "none", "unparseable", "pending_repair", "failed"
FINAL = {OK, NONE, UNPARSEABLE, FAILED}
RETRYABLE = {UNPARSEABLE, FAILED}  # re-asked by annotate(..., retry_failed=True)


# ----------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------
class AnnotateConfig(BaseModel):
    """Skill attribution settings (the ``annotate`` section of a recipe)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["embedding", "openai", "vllm", "transformers", "distilled"] = Field(
        "embedding", description="Who decides: the offline embedding scorer, a chat model, or 'distilled' (a chat "
        "model labels a sample, per-node classifiers the rest; docs/annotate.md)."
    )
    llm: BackendConfig | None = Field(
        None, description="Chat model settings; required unless backend is 'embedding'. Its kind must equal backend "
        "(distilled: the LLM's kind, openai, vllm or transformers)."
    )
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    distilled: DistilledConfig = Field(default_factory=DistilledConfig, description="The distilled backend's sample and classifiers.")
    prompt_template: str | None = Field(
        None, description="Path of a prompt template file; default: the bundled attribution_v1."
    )
    temperature: float = Field(0.3, ge=0, description="Paper: 0.3.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1, description="Answer budget per decision.")
    seed: int | None = None
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the chat template, e.g. {enable_thinking: false}."
    )
    max_chars: int = Field(20_000, ge=1, description="Cap on the teacher-solution characters shown (paper: 20k).")
    max_depth: int | None = Field(None, ge=1, description="Stop descending below this depth (chains may end at inner nodes).")
    match_threshold: float = Field(0.85, gt=0, le=1, description="Indel similarity (rapidfuzz fuzz.ratio / 100) needed for a fuzzy name match.")
    repair_retries: int = Field(1, ge=0, le=3, description="Re-asks after an unreadable answer.")
    max_failed_share: float = Field(
        0.05, ge=0, le=1, description="The stage fails (nothing certified, the cache kept) when more than this share of "
        "items has a decision the server refused or an answer that stayed unreadable; below it, such items are "
        "marked in skills_status and counted.")

    @model_validator(mode="after")
    def _check_backend(self) -> AnnotateConfig:
        if self.backend != "embedding":
            if self.llm is None:
                raise ValueError(f"backend {self.backend!r} needs an 'llm' section (model, ...)")
            if self.backend != "distilled" and self.llm.kind != self.backend:  # distilled: any LLM kind
                raise ValueError(f"llm.kind is {self.llm.kind!r} but backend is {self.backend!r}")
        return self

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            n=1,
            seed=self.seed,
            chat_template_kwargs=dict(self.chat_template_kwargs),
        )

    def public_dict(self) -> dict[str, Any]:
        """The config as written to manifests: no API key, ever."""
        d = self.model_dump(mode="json")
        if d.get("llm"):
            d["llm"].pop("api_key", None)
        if self.backend != "distilled":  # unused: its defaults must not change other backends' fingerprints
            d.pop("distilled", None)
        return d


# ----------------------------------------------------------------------------------
# Item text and prompt templates
# ----------------------------------------------------------------------------------
def item_text(question: str, response: str | None, max_chars: int = 20_000) -> str:
    """Question + the teacher's final solution (the text after ``</think>`` when there
    is one), each capped at ``max_chars`` characters (the solution as the paper's scripts;
    the question too, so a 10 MB question does not go whole into every prompt)."""
    question = question.strip()[:max_chars]
    solution = ""
    if response:
        if "</think>" in response:
            solution = response.rsplit("</think>", 1)[1]
        else:  # no reasoning block, or a truncated one: drop a dangling opening tag
            solution = response.replace("<think>", "", 1) if response.lstrip().startswith("<think>") else response
        solution = solution.strip()[:max_chars]
    return f"{question.strip()}\n{solution}".strip()


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_TEMPLATE_FIELDS = {"item", "skills", "node"}


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt file with ``{{item}}``, ``{{skills}}`` and optionally ``{{node}}``."""

    text: str
    name: str

    @property
    def version(self) -> str:
        """Template name + content hash: editing a template invalidates its cached answers."""
        return f"{self.name}@{sha256_text(self.text)[:12]}"

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptTemplate:
        if path is None:
            text = (resources.files("skilldistill") / "prompts" / f"{DEFAULT_TEMPLATE}.txt").read_text(encoding="utf-8")
            name = DEFAULT_TEMPLATE
        else:
            p = Path(path)
            if not p.exists():
                raise ConfigError(f"prompt template not found: {p}")
            text, name = p.read_text(encoding="utf-8"), p.stem
        found = set(_PLACEHOLDER.findall(text))
        unknown = found - _TEMPLATE_FIELDS
        if unknown:
            raise ConfigError(f"prompt template {name}: unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(_TEMPLATE_FIELDS)}")
        missing = {"item", "skills"} - found
        if missing:
            raise ConfigError(f"prompt template {name}: missing placeholder(s) {sorted('{{' + m + '}}' for m in missing)}")
        return cls(text=text, name=name)

    def render(self, item: str, node_path: Chain, children: Sequence[SkillNode], root_name: str) -> str:
        skills = "\n".join(f"- {c.name}: {c.description}" if c.description else f"- {c.name}" for c in children)
        values = {"item": item, "skills": skills, "node": " -> ".join((root_name, *node_path))}
        # Pieces alternate literal text and placeholder names, split once: text
        # substituted in is never scanned again (items contain braces).
        pieces = self._pieces
        return "".join(values[p] if i % 2 else p for i, p in enumerate(pieces))

    @functools.cached_property
    def _pieces(self) -> list[str]:
        return _PLACEHOLDER.split(self.text)


MAX_STORED_ANSWER = 4_000  # characters of a model's answer kept in calls.jsonl (parsing reads all of it)


def _stored(text: str | None) -> str | None:
    """An answer as recorded: a runaway answer (1 MB of repetition) would make the cache
    huge; its head shows what went wrong, and the decision parsed from all of it is kept."""
    if text is None or len(text) <= MAX_STORED_ANSWER:
        return text
    return text[:MAX_STORED_ANSWER] + f"... [{len(text) - MAX_STORED_ANSWER} more characters not stored]"


def repair_message(children: Sequence[SkillNode]) -> str:
    names = json.dumps([c.name for c in children], ensure_ascii=False)
    return (
        "Your answer could not be read. Reply with only a JSON list of the needed skill names, "
        f"each copied exactly from this list: {names}"
    )


# ----------------------------------------------------------------------------------
# Parsing untrusted answers
# ----------------------------------------------------------------------------------
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)]|\(\d{1,3}\))\s+(.+?)\s*$")
_FENCE = re.compile(r"```(?:json|python)?\s*(.*?)```", re.S)


def parse_answer(text: str) -> list[str] | None:
    """Names listed in an answer, or None when it holds no readable list.

    Accepts a JSON list, a Python list literal (``ast.literal_eval``: literals only,
    nothing is executed), or bullet / numbered lines. A reasoning block
    (``<think>...</think>``) is skipped. ``[]`` parses to an empty list.
    """
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return None  # reasoning that never ended: whatever list it holds was not the answer
    fenced = _FENCE.findall(text)
    candidates = [*fenced, text] if fenced else [text]
    for cand in candidates:
        start, end = cand.find("["), cand.rfind("]")
        if start != -1 and end > start:
            snippet = cand[start : end + 1]
            for loader in (json.loads, _literal):
                try:
                    value = loader(snippet)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    continue
                names = _flatten_names(value)
                if names is not None:
                    return names
    bullets = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    if bullets:
        return [_strip_name(b) for b in bullets if _strip_name(b)]
    return None


def _literal(snippet: str) -> Any:
    if len(snippet) > 100_000:  # literal_eval of huge inputs can exhaust the parser
        raise ValueError("answer too long")
    return ast.literal_eval(snippet)


def _flatten_names(value: Any) -> list[str] | None:
    if not isinstance(value, list | tuple):
        return None
    out: list[str] = []
    for v in value:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list | tuple):
            inner = _flatten_names(v)
            out.extend(inner or [])
        elif isinstance(v, dict):  # [{"name": ...}] from chatty models
            name = v.get("name") or v.get("skill")
            if isinstance(name, str):
                out.append(name)
    if value and not out:
        return None
    return out


def _strip_name(s: str) -> str:
    s = s.strip().strip("*_`").strip()
    s = s.strip("\"'").strip()
    return s.rstrip(",.;").strip("\"'").strip()


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


def match_names(names: Sequence[str], children: Sequence[SkillNode], threshold: float = 0.85) -> tuple[list[str], list[str]]:
    """Map answer names to child names, in three steps, the first that hits wins:

    1. exact: the answer (outer whitespace and quotes/markdown taken off) is a child's name
       as written, trailing period included (EvalTree's names end in "." and some siblings
       differ only by it);
    2. normalised: case, inner whitespace and trailing punctuation folded on both sides
       (a quoted chain ``A->b`` tries its last step too);
    3. fuzzy: the closest normalised name with Indel similarity (rapidfuzz's ``fuzz.ratio``,
       difflib's ratio computed exactly) >= ``threshold``.

    Returns (matched, unmatched); matched keeps answer order without duplicates."""
    exact = {c.name: c.name for c in children}
    by_norm: dict[str, str] = {}
    for c in children:  # the first child wins a normalised collision; exact answers still reach the others
        by_norm.setdefault(_norm(_strip_name(c.name)), c.name)
    keys = list(by_norm)
    matched: list[str] = []
    unmatched: list[str] = []
    for raw in names:
        name = _strip_outer(raw)
        if not name:
            continue
        hit = exact.get(name)
        if hit is None:
            folded = _norm(_strip_name(name))
            hit = by_norm.get(folded)
            if hit is None and CHAIN_SEP in name:  # a whole chain was quoted: take its last step
                last = name.rsplit(CHAIN_SEP, 1)[1]
                hit = exact.get(last.strip()) or by_norm.get(_norm(_strip_name(last)))
            if hit is None:
                hit = _fuzzy(folded, keys, by_norm, threshold)
        if hit is None:
            unmatched.append(_strip_name(name))
        elif hit not in matched:
            matched.append(hit)
    return matched, unmatched


FUZZY_MARGIN = 10.0  # points of fuzz.ratio the best name must lead the next by


def _fuzzy(folded: str, keys: list[str], by_norm: dict[str, str], threshold: float) -> str | None:
    """The closest child name, when it is close enough and clearly closer than any other:
    "Algebra" between "Algebra I" and "Algebra II", or "Solving linear equations" between
    "Solving linear inequalities" and "Solving quadratic equations", is no match at all."""
    best = rf_process.extract(folded, keys, scorer=fuzz.ratio, limit=2)
    if not best or best[0][1] < threshold * 100:
        return None
    if len(best) > 1 and best[0][1] - best[1][1] < FUZZY_MARGIN:
        return None
    return by_norm[best[0][0]]


def _strip_outer(s: str) -> str:
    """Markdown and quotes around a name, not its own trailing period."""
    s = s.strip().strip("*_`").strip()
    s = s.strip("\"'").strip()
    return s.rstrip(",;").strip("\"'").strip()


# ----------------------------------------------------------------------------------
# Deciders: who answers "which children does this item need here?"
# ----------------------------------------------------------------------------------
@dataclass
class Question:
    key: str
    text: str
    path: Chain
    children: list[SkillNode]
    pending: dict[str, Any] | None = None  # a cached first answer awaiting its repair
    calls_before: int = 0  # requests this decision took in earlier runs (a pending or a retried record)


OnDecision = Callable[[Question, dict[str, Any]], None]


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

    def decide(self, questions: list[Question], on_decision: OnDecision, progress: Callable[[int], None]) -> None:
        fresh = [q for q in questions if q.pending is None]
        repairs: list[tuple[Question, dict[str, Any]]] = [(q, q.pending) for q in questions if q.pending is not None]
        if self.cfg.repair_retries == 0:  # cached first answers awaiting a repair no longer get one
            for q, prev in repairs:
                on_decision(q, self._finish(q, {k: v for k, v in prev.items() if k not in ("key", "node", "item", "status")}, None))
                progress(1)
            repairs = []

        def first(j: int, comps: list[Completion]) -> None:
            q, c = fresh[j], comps[0]
            rec = {"answer": _stored(c.text), "calls": q.calls_before + 1, "prompt_tokens": c.prompt_tokens,
                   "completion_tokens": c.completion_tokens}
            names = _read_complete(c, rec)
            if names is None and self.cfg.repair_retries > 0:
                rec["status"] = PENDING_REPAIR
                on_decision(q, rec)
                repairs.append((q, rec))
            else:
                on_decision(q, self._finish(q, rec, names))
                progress(1)

        def refused(qs: list[Question], prev: list[dict[str, Any] | None]) -> Callable[[int, BaseException], None]:
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

        if fresh:
            convs = [[{"role": "user", "content": self._prompt(q)}] for q in fresh]
            self.backend.chat(convs, self.params, on_result=first, **self._routing(fresh),
                              **self._errors(refused(fresh, [None] * len(fresh))))

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
                    "repair_answer": _stored(c.text),
                    "calls": prev.get("calls", 1) + 1,
                    "prompt_tokens": _add(prev.get("prompt_tokens"), c.prompt_tokens),
                    "completion_tokens": _add(prev.get("completion_tokens"), c.completion_tokens),
                }
                names = _read_complete(c, rec)
                if names is None and not last:
                    rec["status"] = PENDING_REPAIR
                    on_decision(q, rec)
                    next_round.append((q, rec))
                    return
                on_decision(q, self._finish(q, rec, names))
                progress(1)

            convs = [
                [
                    {"role": "user", "content": self._prompt(q)},
                    {"role": "assistant", "content": prev.get("repair_answer") or prev.get("answer") or ""},
                    {"role": "user", "content": repair_message(q.children)},
                ]
                for q, prev in batch
            ]
            self.backend.chat(convs, self.params, on_result=repaired, **self._routing([q for q, _ in batch]),
                              **self._errors(refused([q for q, _ in batch], [p for _, p in batch])))
            repairs = next_round

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

    def _finish(self, q: Question, rec: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        if names is None:
            rec.update(status=UNPARSEABLE, chosen=[], unmatched=[])
            return rec
        matched, unmatched = match_names(names, q.children, self.cfg.match_threshold)
        rec.update(status=OK if matched else NONE, chosen=matched, unmatched=unmatched)
        if unmatched:
            log.debug("unmatched skill names at %s: %s", chain_str(q.path) or "the root", unmatched)
        return rec


class EmbeddingDecider:
    """Scores item text against each child with a sentence-transformers model."""

    def __init__(self, cfg: EmbeddingConfig, tree_key: str | None = None) -> None:
        from .llm.embedding import EmbeddingAttributor

        self.attributor = EmbeddingAttributor(cfg)
        if tree_key:
            self.attributor.use_disk_cache(tree_key)
        self.model_id = self.attributor.model_id
        self.version = self.attributor.rule_version

    # Decisions are made (and recorded, and shown) a chunk at a time, so the progress bar
    # and the cache follow the work instead of jumping from 0 to done at the end.
    chunk_size = 256

    def decide(self, questions: list[Question], on_decision: OnDecision, progress: Callable[[int], None]) -> None:
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


def _read_complete(c: Completion, rec: dict[str, Any]) -> list[str] | None:
    """The names of a complete answer; None (unreadable: repaired, else counted) when the
    token cap cut it off: a list half written, or reasoning cut mid-sentence, is no answer."""
    if c.finish_reason == "length":
        rec["finish_reason"] = "length"
        return None
    return parse_answer(c.text)


def _add(a: int | None, b: int | None) -> int | None:
    if a is None and b is None:
        return None
    return (a or 0) + (b or 0)


# ----------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------
@dataclass
class AnnotateResult:
    out_dir: Path
    skills_path: Path
    summary: dict[str, Any]
    skipped: bool = False  # True when the stage was already complete and nothing ran


@dataclass
class _RunCounters:
    new_keys: set[str] = field(default_factory=set)
    calls: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    per_level: list[dict[str, int]] = field(default_factory=list)


def decision_key(model_id: str, template_version: str, path: Chain, text_hash: str, children_sig: str = "") -> str:
    """Cache key of one (item, node) decision: hash of the model id, the template version,
    the node path (with the children it offers, so editing a node re-asks only that node)
    and the item text. No secrets go in."""
    return hash_obj({"model": model_id, "template": template_version, "node": list(path), "children": children_sig, "item": text_hash})


def children_signature(node: SkillNode) -> str:
    return hash_obj([[c.name, c.description] for c in node.children])[:16]


class _Keys:
    """decision_key with the per-node children signatures computed once, and each key
    remembered: the walk, the chains and the summary all look the same keys up."""

    def __init__(self, tree: SkillTree, model_id: str, version: str) -> None:
        self.tree, self.model_id, self.version = tree, model_id, version
        self._sig: dict[Chain, str] = {}
        self._memo: dict[tuple[Chain, str], str] = {}

    def __call__(self, path: Chain, text_hash: str) -> str:
        key = self._memo.get((path, text_hash))
        if key is None:
            sig = self._sig.get(path)
            if sig is None:
                sig = self._sig[path] = children_signature(self.tree.node(path))
            key = self._memo[(path, text_hash)] = decision_key(self.model_id, self.version, path, text_hash, sig)
        return key


def annotate(
    corpus: str | Path,
    tree: str | Path | SkillTree,
    out_dir: str | Path,
    config: AnnotateConfig | None = None,
    *,
    backend: ChatBackend | None = None,
    force: bool = False,
    show_progress: bool = True,
    retry_failed: bool = False,
) -> AnnotateResult:
    """Attribute skills to every item of ``corpus`` and write ``out_dir/skills.parquet``.

    ``corpus``: a corpus Parquet (or a folder holding ``corpus.parquet``) with at least
    ``id`` and ``question`` (``response`` used when present). ``tree``: a SkillTree, a
    tree file or a bundled tree name. ``backend``: an already built chat backend to use
    instead of building one from ``config.llm`` (it is not closed here).
    Resumes from ``calls.jsonl``; returns at once when the manifest shows the same
    config and inputs already done (unless ``force``).
    """
    from .artifacts import FolderLock

    with FolderLock(out_dir, what="annotate"):
        return _annotate_unlocked(corpus, tree, out_dir, config, backend=backend, force=force, show_progress=show_progress,
                                  retry_failed=retry_failed)


def _annotate_unlocked(
    corpus: str | Path,
    tree: str | Path | SkillTree,
    out_dir: str | Path,
    config: AnnotateConfig | None = None,
    *,
    backend: ChatBackend | None = None,
    force: bool = False,
    show_progress: bool = True,
    retry_failed: bool = False,
) -> AnnotateResult:
    """Attribute skills to every item of ``corpus`` and write ``out_dir/skills.parquet``.

    ``corpus``: a corpus Parquet (or a folder holding ``corpus.parquet``) with at least
    ``id`` and ``question`` (``response`` used when present). ``tree``: a SkillTree, a
    tree file or a bundled tree name. ``backend``: an already built chat backend to use
    instead of building one from ``config.llm`` (it is not closed here).
    Resumes from ``calls.jsonl``; returns at once when the manifest shows the same
    config and inputs already done (unless ``force``).
    """
    t0 = time.time()
    cfg = config or AnnotateConfig()
    out = Path(out_dir)
    corpus_path = _corpus_file(corpus)
    skill_tree = tree if isinstance(tree, SkillTree) else SkillTree.resolve(tree)
    template = PromptTemplate.load(cfg.prompt_template)

    inputs = {
        "corpus": sha256_file(corpus_path),
        "tree": hash_obj(skill_tree.to_dict()),
        "template": template.version if cfg.backend != "embedding" else "",
    }
    # Client-only settings (concurrency, servers, retries) change no decision: not in the match.
    if not force and not retry_failed and manifest_matches(out, config=fingerprint_view(cfg.public_dict()),
                                                           inputs=inputs) and (out / SKILLS_FILE).exists():
        log.info("annotate: %s is up to date", out)
        summary = read_json(out / SUMMARY_FILE) if (out / SUMMARY_FILE).exists() else {}
        return AnnotateResult(out, out / SKILLS_FILE, summary, skipped=True)

    table = pq.read_table(corpus_path)
    ids, texts = _read_items(table, corpus_path, cfg.max_chars)
    # From here on skills.parquet and summary.json change: the old manifest no longer
    # certifies them (a kill between their writes and the new manifest must not leave it).
    (out / "manifest.json").unlink(missing_ok=True)

    own_backend = None
    if cfg.backend == "embedding":
        decider: ChatDecider | EmbeddingDecider = EmbeddingDecider(cfg.embedding, tree_key=inputs["tree"])
    else:
        if backend is None:
            from .llm.factory import make_backend

            assert cfg.llm is not None
            backend = own_backend = make_backend(cfg.llm)
        decider = ChatDecider(backend, cfg, template, skill_tree.root.name)

    text_hashes = [sha256_text(t) for t in texts]
    distilled: dict[str, Any] | None = None
    try:
        if cfg.backend == "distilled":
            from .distilled_attribution import run_distilled

            assert isinstance(decider, ChatDecider)
            run = run_distilled(ids, texts, text_hashes, skill_tree, cfg, decider, out, out / CALLS_FILE,
                                show_progress, retry_failed)
            decisions, counters, item_keys, skills, distilled = run.cache, run.counters, run.item_keys, run.skills, run.section
        else:
            keys = _Keys(skill_tree, decider.model_id, decider.version)
            decisions, counters = _walk(ids, texts, text_hashes, keys, skill_tree, cfg, decider, out / CALLS_FILE,
                                        show_progress, retry_failed)
            item_keys = [keys] * len(ids)
            skills = [_chains_for(skill_tree, cfg.max_depth, lambda p, h=h: decisions.get(keys(p, h))) for h in text_hashes]
    finally:
        if own_backend is not None:
            own_backend.close()

    # Whether each item's chains rest on complete decisions: a refused call or an answer
    # that stayed unreadable drops a branch, and the item must say so, not pass for one
    # without those skills.
    statuses = [_item_status(skill_tree, cfg.max_depth, lambda p, h=h, k=k: decisions.get(k(p, h)))
                for h, k in zip(text_hashes, item_keys, strict=True)]
    wall = time.time() - t0
    summary = _summary(ids, skills, decisions, text_hashes, skill_tree, cfg, decider, item_keys, counters, wall)
    summary["items_incomplete"] = {FAILED: statuses.count(FAILED), UNPARSEABLE: statuses.count(UNPARSEABLE)}
    if distilled is not None:
        summary["model"] = cfg.llm.model if cfg.llm else summary["model"]
        summary["distilled"] = distilled
    write_json(out / SUMMARY_FILE, summary)
    n_bad = len(ids) - statuses.count(OK)
    if n_bad > cfg.max_failed_share * len(ids):
        reasons = "; ".join(r for r, _ in summary["failed_reasons"][:2])
        raise InputError(
            f"{n_bad} of {len(ids)} items have no complete attribution ({statuses.count(FAILED)} with a call the "
            f"server refused, {statuses.count(UNPARSEABLE)} with an answer that stayed unreadable"
            + (f"; the server said: {reasons}" if reasons else "")
            + f"), over max_failed_share {cfg.max_failed_share:g}. Every decision is kept in {out / CALLS_FILE}: fix "
            "the cause and rerun with --retry-failed to ask those decisions again (or raise annotate.max_failed_share)",
            file=out / SUMMARY_FILE)
    if n_bad:
        log.warning("annotate: %d of %d items have no complete attribution (marked in skills_status; rerun with "
                    "--retry-failed to ask again)", n_bad, len(ids))

    for col in ("skills", SKILLS_STATUS):
        if col in table.column_names:
            table = table.drop_columns([col])
    table = table.append_column("skills", pa.array(skills, type=pa.list_(pa.list_(pa.string()))))
    table = table.append_column(SKILLS_STATUS, pa.array(statuses, type=pa.string()))
    write_parquet(out / SKILLS_FILE, table)
    write_manifest(
        out,
        config=fingerprint_view(cfg.public_dict()),
        inputs=inputs,
        # recorded, not matched: how requests were sent changes no decision
        client={k: v for k, v in (cfg.public_dict().get("llm") or {}).items() if k in CLIENT_ONLY_FIELDS},
        counts={k: summary[k] for k in ("items", "items_with_skills", "chains", "decisions", "calls_this_run")},
        wall_time_s=round(wall, 3),
    )
    return AnnotateResult(out, out / SKILLS_FILE, summary)


def _corpus_file(corpus: str | Path) -> Path:
    p = Path(corpus)
    if p.is_dir():
        p = p / "corpus.parquet"
    if not p.exists():
        raise InputError("corpus not found", file=p)
    return p


def _read_items(table: pa.Table, path: Path, max_chars: int) -> tuple[list[str], list[str]]:
    for col in ("id", "question"):
        if col not in table.column_names:
            raise InputError(f"missing column {col!r} (a corpus needs id and question)", file=path, field=col)
    ids = table.column("id").to_pylist()
    questions = table.column("question").to_pylist()
    responses = table.column("response").to_pylist() if "response" in table.column_names else [None] * len(ids)
    seen: dict[str, int] = {}
    texts = []
    for i, (item_id, q, r) in enumerate(zip(ids, questions, responses, strict=True)):
        if item_id is None or str(item_id) == "":
            raise InputError("empty id", file=path, row=i + 1, field="id")
        item_id = str(item_id)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r} (also row {seen[item_id]})", file=path, row=i + 1, field="id")
        seen[item_id] = i + 1
        if not isinstance(q, str) or not q.strip():
            raise InputError("empty or non-text question", file=path, row=i + 1, field="question")
        if r is not None and not isinstance(r, str):
            raise InputError(f"response must be text, got {type(r).__name__}", file=path, row=i + 1, field="response")
        texts.append(item_text(q, r, max_chars))
    return [str(x) for x in ids], texts


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Last record per key wins; a final answer is never replaced by a pending one."""
    cache: dict[str, dict[str, Any]] = {}
    for rec in AppendLog(path).iter():
        key = rec.get("key")
        if not isinstance(key, str):
            continue
        prev = cache.get(key)
        if prev is not None and prev.get("status") in FINAL and rec.get("status") not in FINAL:
            continue
        cache[key] = rec
    return cache


def _walk(
    ids: list[str],
    texts: list[str],
    text_hashes: list[str],
    keys: _Keys,
    tree: SkillTree,
    cfg: AnnotateConfig,
    decider: ChatDecider | EmbeddingDecider,
    calls_path: Path,
    show_progress: bool,
    retry_failed: bool = False,
) -> tuple[dict[str, dict[str, Any]], _RunCounters]:
    cache = _load_cache(calls_path)
    counters = _RunCounters()
    n = len(texts)
    frontier: dict[int, list[Chain]] = {i: [()] for i in range(n)}

    progress = _make_progress(show_progress)
    log_file = AppendLog(calls_path).open()
    try:
        with progress:
            items_task = progress.add_task("annotate items", total=n, unit="items")
            depth = 0
            while frontier:
                # All questions of this level, for every pending item at once.
                asks: list[tuple[int, Chain, str]] = []
                questions: dict[str, Question] = {}
                key_items: dict[str, list[int]] = collections.defaultdict(list)
                for i, paths in frontier.items():
                    for path in paths:
                        node = tree.node(path)
                        if node.is_leaf or (cfg.max_depth is not None and len(path) >= cfg.max_depth):
                            continue
                        key = keys(path, text_hashes[i])
                        asks.append((i, path, key))
                        key_items[key].append(i)
                        cached = cache.get(key)
                        ask = (cached is None or cached.get("status") not in FINAL
                               or (retry_failed and cached.get("status") in RETRYABLE))
                        if key not in questions and ask:
                            pending = cached if cached is not None and cached.get("status") == PENDING_REPAIR else None
                            before = int((cached or {}).get("calls") or 0)
                            questions[key] = Question(key, texts[i], path, list(node.children), pending, before)

                # Items finish when their last question of the walk is decided.
                outstanding = collections.Counter(i for i, _, key in asks if key in questions)
                more: set[int] = set()
                for i, path, key in asks:
                    if key not in questions and _has_inner_child(tree, cfg, path, cache[key]):
                        more.add(i)
                # Items whose questions here were all answered before (cache) and lead
                # nowhere deeper are done now; the rest finish in on_decision below.
                asked_items = {i for i, _, _ in asks}
                progress.advance(items_task, sum(1 for i in asked_items if outstanding[i] == 0 and i not in more))

                level_task = progress.add_task(f"annotate depth {depth}", total=len(questions), unit="decisions")

                def on_decision(
                    q: Question, rec: dict[str, Any], key_items=key_items, outstanding=outstanding, more=more
                ) -> None:
                    rec = {"key": q.key, "node": chain_str(q.path), "item": ids[key_items[q.key][0]], **rec}
                    log_file.append(rec)
                    cache[q.key] = rec
                    if rec["status"] not in FINAL:
                        return
                    counters.new_keys.add(q.key)
                    counters.calls += rec.get("calls", 0) - q.calls_before  # the requests of this run only
                    counters.prompt_tokens = _add(counters.prompt_tokens, rec.get("prompt_tokens"))
                    counters.completion_tokens = _add(counters.completion_tokens, rec.get("completion_tokens"))
                    has_more = _has_inner_child(tree, cfg, q.path, rec)
                    done = 0
                    for i in key_items[q.key]:
                        outstanding[i] -= 1
                        if has_more:
                            more.add(i)
                        if outstanding[i] == 0 and i not in more:
                            done += 1
                    if done:
                        progress.advance(items_task, done)

                def on_progress(k: int, level_task: Any = level_task) -> None:
                    progress.advance(level_task, k)

                if questions:
                    decider.decide(list(questions.values()), on_decision, on_progress)
                progress.remove_task(level_task)
                if asks:
                    counters.per_level.append({"depth": depth, "questions": len(asks), "new": len(questions)})

                nxt: dict[int, list[Chain]] = collections.defaultdict(list)
                for i, path, key in asks:
                    rec = cache.get(key)
                    if rec is None or rec.get("status") not in FINAL:
                        raise RuntimeError(f"no decision for node {chain_str(path) or 'the root'} of item {ids[i]!r}")
                    for child in rec.get("chosen", []):
                        nxt[i].append(path + (child,))
                frontier = dict(nxt)
                depth += 1
    finally:
        log_file.close()
    return cache, counters


def _has_inner_child(tree: SkillTree, cfg: AnnotateConfig, path: Chain, rec: dict[str, Any]) -> bool:
    for child in rec.get("chosen", []):
        p = path + (child,)
        if p in tree and not tree.node(p).is_leaf and (cfg.max_depth is None or len(p) < cfg.max_depth):
            return True
    return False


def _item_status(tree: SkillTree, max_depth: int | None, decision: Callable[[Chain], dict[str, Any] | None]) -> str:
    """``failed`` when a decision the item's walk reached was refused by the server,
    ``unparseable`` when one stayed unreadable (and none was refused), else ``ok``."""
    worst = OK
    stack: list[Chain] = [()]
    while stack:
        path = stack.pop()
        node = tree.node(path)
        if node.is_leaf or (path and max_depth is not None and len(path) >= max_depth):
            continue
        rec = decision(path)
        if rec is None:
            continue
        if rec.get("status") == FAILED:
            return FAILED
        if rec.get("status") == UNPARSEABLE:
            worst = UNPARSEABLE
        stack.extend(path + (c,) for c in rec.get("chosen", []) if (path + (c,)) in tree)
    return worst


def _chains_for(tree: SkillTree, max_depth: int | None, decision: Callable[[Chain], dict[str, Any] | None]) -> list[list[str]]:
    """Depth-first over the recorded decisions, children in the order chosen."""
    chains: list[list[str]] = []
    stack: list[Chain] = [()]
    while stack:
        path = stack.pop()
        node = tree.node(path)
        if path and (node.is_leaf or (max_depth is not None and len(path) >= max_depth)):
            chains.append(list(path))
            continue
        if node.is_leaf:
            continue
        rec = decision(path)
        if rec is None:
            continue
        chosen = [c for c in rec.get("chosen", []) if (path + (c,)) in tree]
        stack.extend(path + (c,) for c in reversed(chosen))
    return [list(c) for c in dict.fromkeys(tuple(c) for c in chains)]


def decisions_used(tree: SkillTree, max_depth: int | None, text_hashes: Sequence[str], item_keys: Sequence[_Keys],
                   cache: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """key -> record of every decision the items' chains rest on (``item_keys[i]``: the keys
    item i's decisions are filed under)."""
    used: dict[str, dict[str, Any]] = {}
    for h, keys in zip(text_hashes, item_keys, strict=True):
        stack: list[Chain] = [()]
        while stack:
            path = stack.pop()
            node = tree.node(path)
            if node.is_leaf or (max_depth is not None and len(path) >= max_depth):
                continue
            key = keys(path, h)
            rec = cache.get(key)
            if rec is None:
                continue
            used[key] = rec
            stack.extend(path + (c,) for c in rec.get("chosen", []) if (path + (c,)) in tree)
    return used


def _summary(
    ids: list[str],
    skills: list[list[list[str]]],
    cache: dict[str, dict[str, Any]],
    text_hashes: list[str],
    tree: SkillTree,
    cfg: AnnotateConfig,
    decider: ChatDecider | EmbeddingDecider,
    item_keys: Sequence[_Keys],
    counters: _RunCounters,
    wall: float,
) -> dict[str, Any]:
    # Outcome over every decision the output rests on (cached or new).
    used = decisions_used(tree, cfg.max_depth, text_hashes, item_keys, cache)
    statuses = collections.Counter(r.get("status") for r in used.values())
    unmatched = collections.Counter(name for r in used.values() for name in r.get("unmatched", []))
    n = len(ids)
    chains = sum(len(s) for s in skills)
    return {
        "items": n,
        "items_with_skills": sum(1 for s in skills if s),
        "chains": chains,
        "chains_per_item": round(chains / n, 3) if n else 0.0,
        "backend": cfg.backend,
        "model": decider.model_id,
        "template": decider.version,
        "decisions": len(used),
        "decisions_this_run": sum(1 for k in used if k in counters.new_keys),
        "decisions_cached": sum(1 for k in used if k not in counters.new_keys),
        "calls_total": sum(r.get("calls", 0) for r in used.values()),
        "calls_this_run": counters.calls,
        "calls_per_item": round(sum(r.get("calls", 0) for r in used.values()) / n, 3) if n else 0.0,
        "prompt_tokens_this_run": counters.prompt_tokens,
        "completion_tokens_this_run": counters.completion_tokens,
        "repaired": sum(1 for r in used.values() if r.get("repair_answer") is not None),
        "failures": {"unparseable": statuses.get(UNPARSEABLE, 0), "failed": statuses.get(FAILED, 0)},
        "failed_reasons": [[r, c] for r, c in collections.Counter(
            (r.get("error") or "")[:120] for r in used.values() if r.get("status") == FAILED).most_common(5)],
        "no_valid_choice": statuses.get(NONE, 0),
        "unmatched_names": sum(unmatched.values()),
        "top_unmatched": [[name, count] for name, count in unmatched.most_common(20)],
        "per_level": counters.per_level,
        "wall_time_s": round(wall, 3),
        "items_per_s": round(n / wall, 2) if wall > 0 else None,
    }


def _make_progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from .progress import AverageRate, StageProgress

    return StageProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        AverageRate(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


# ----------------------------------------------------------------------------------
# Per-node counts
# ----------------------------------------------------------------------------------
def annotate_stats(skills: str | Path | pa.Table, tree: str | Path | SkillTree | None = None, *, max_depth: int | None = None) -> list[dict[str, Any]]:
    """Per-node counts over an annotated table (``skills.parquet``, its folder, or a Table).

    One row per node any chain passes through (every node of ``tree`` when given, zero
    counts included, in tree order): ``node`` (chain text), ``depth``, ``leaf``,
    ``items`` (items whose chains pass through it), ``chains`` (chains through it),
    ``share`` (items / all items).
    """
    if not isinstance(skills, pa.Table):
        p = Path(skills)
        if p.is_dir():
            p = p / SKILLS_FILE
        if not p.exists():
            raise InputError("annotated table not found", file=p)
        table = pq.read_table(p, columns=["skills"]) if "skills" in pq.read_schema(p).names else None
        if table is None:
            raise InputError("no 'skills' column: run `skilldistill annotate` first", file=p, field="skills")
    else:
        table = skills
    rows = table.column("skills").to_pylist()
    items: collections.Counter[Chain] = collections.Counter()
    chains: collections.Counter[Chain] = collections.Counter()
    for item_chains in rows:
        seen: set[Chain] = set()
        for chain in item_chains or []:
            for d in range(1, len(chain) + 1):
                prefix = tuple(chain[:d])
                chains[prefix] += 1
                if prefix not in seen:
                    seen.add(prefix)
                    items[prefix] += 1
    n = len(rows)
    t = tree if isinstance(tree, SkillTree) or tree is None else SkillTree.resolve(tree)
    if t is not None:
        paths = [p for p, _ in t.nodes() if p]
        extra = sorted(p for p in items if p not in t)  # chains from another tree version
        paths += extra
    else:
        paths = sorted(items)
    out = []
    for p in paths:
        if max_depth is not None and len(p) > max_depth:
            continue
        leaf = t.node(p).is_leaf if (t is not None and p in t) else None
        out.append({"node": chain_str(p), "depth": len(p), "leaf": leaf, "items": items[p], "chains": chains[p], "share": round(items[p] / n, 4) if n else 0.0})
    return out
