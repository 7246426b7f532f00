"""Model answers are untrusted input: the names an answer lists (a JSON list, a Python list
literal read with ``ast.literal_eval``, never ``eval``, or bullet / numbered lines), matched
to a node's children exactly, then normalised, then by a clear closest match."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz import process as rf_process

from ..llm.base import Completion
from ..tree import CHAIN_SEP, SkillNode

_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)]|\(\d{1,3}\))\s+(.+?)\s*$")
_FENCE = re.compile(r"```(?:json|python)?\s*(.*?)```", re.S)

FUZZY_MARGIN = 10.0  # points of fuzz.ratio the best name must lead the next by


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
        names = _listed_names(cand)
        if names is not None:
            return names
    bullets = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    if bullets:
        return [_strip_name(b) for b in bullets if _strip_name(b)]
    return None


def _listed_names(candidate: str) -> list[str] | None:
    """The names of the bracketed list in ``candidate``, read as JSON, else as a literal."""
    start, end = candidate.find("["), candidate.rfind("]")
    if start == -1 or end <= start:
        return None
    snippet = candidate[start : end + 1]
    for loader in (json.loads, _literal):
        try:
            value = loader(snippet)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        names = _flatten_names(value)
        if names is not None:
            return names
    return None


# Finish reasons that make an answer no answer, whatever list it holds: cut off by the token
# cap (``length``), withheld or cut by the server's filter (``content_filter``), a tool call
# instead of text (``tool_calls``, ``function_call``), a request the engine gave up (``abort``,
# ``error``). ``stop`` and an unreported reason (None) are complete answers.
INCOMPLETE_FINISH = frozenset({"length", "content_filter", "tool_calls", "function_call", "abort", "error"})


def read_complete_answer(completion: Completion, rec: dict[str, Any]) -> list[str] | None:
    """The names of a complete answer; None (unreadable: repaired, else counted) when the
    server did not let it end (``INCOMPLETE_FINISH``, recorded as ``finish_reason``): a list
    half written, reasoning cut mid-sentence, or ``[]`` from a content filter is no answer."""
    if completion.finish_reason in INCOMPLETE_FINISH:
        rec["finish_reason"] = completion.finish_reason
        return None
    return parse_answer(completion.text)


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
