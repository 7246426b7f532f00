"""A model's answer is untrusted input: the skill chains read from it, line by line.

A chain is a line ``A -> B -> C`` (``→`` and `` > `` are read as ``->`` too). Before splitting,
a bullet or a number (``-``, ``1.``, ``Step 2:``) and markdown around the line are taken off;
each name loses quotes, markdown and trailing punctuation and has its spacing collapsed.
Nothing in an answer is ever executed.

A line is dropped, and counted by reason (``DROP_REASONS``), when it has no arrow (prose),
an empty step, a name longer than ``max_name_chars``, or a name the tree format refuses (a
control or invisible character, a bidirectional override). Leading parts naming the root or
one of ``strip_leading`` are taken off; a chain longer than ``max_depth`` is cut (counted).
Equal chains count once; after ``max_chains`` chains the remaining lines are dropped. An
answer the server cut at the token cap keeps its complete lines (its last line may be cut
mid-name: dropped); an answer withheld otherwise (a filter, a tool call) or a reasoning block
that never ended gives no chain.
"""

from __future__ import annotations

import collections
import functools
import re
from dataclasses import dataclass, field

from ..attribution.labels import norm_name
from ..attribution.parsing import INCOMPLETE_FINISH
from ..errors import TreeError
from ..tree import Chain, SkillTree

_PREFIX = re.compile(r"^\s*(?:[-*+\u2022>]+|\d{1,3}[.):]|\(\d{1,3}\)|(?:step|chain)\s*\d{0,3}\s*[:.)-])\s*", re.I)
_ARROW = re.compile(r"\s*(?:->|\u2192|\u27f6|\s>\s)\s*")
_MARKUP = "*_`\"'"

DROP_REASONS = ("no_arrow", "empty_step", "name_too_long", "bad_name", "over_max_chains", "cut_off", "no_answer")
MAX_LINES = 2000  # lines of one answer read at most (a runaway answer of repeated lines)


@dataclass
class ReadChains:
    """What one answer gives: its chains, and its lines dropped by reason."""

    chains: list[Chain] = field(default_factory=list)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    cut_to_depth: int = 0


@dataclass(frozen=True)
class ChainRules:
    max_chains: int
    max_depth: int
    max_name_chars: int
    strip_leading: frozenset[str]  # names folded with norm_name


def read_chains(text: str | None, finish_reason: str | None, rules: ChainRules) -> ReadChains:
    """The chains of one answer (see the module docstring)."""
    out = ReadChains()
    lines = _answer_lines(text, finish_reason, out)
    seen: set[Chain] = set()
    for line in lines:
        chain = _read_line(line, rules, out)
        if chain is None or chain in seen:
            continue
        if len(out.chains) >= rules.max_chains:
            out.dropped["over_max_chains"] += 1
            continue
        seen.add(chain)
        out.chains.append(chain)
    return out


def _answer_lines(text: str | None, finish_reason: str | None, out: ReadChains) -> list[str]:
    if not text or (finish_reason in INCOMPLETE_FINISH and finish_reason != "length"):
        out.dropped["no_answer"] += 1
        return []
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        out.dropped["no_answer"] += 1
        return []
    lines = [s for s in text.splitlines() if s.strip()]
    if len(lines) > MAX_LINES:
        out.dropped["over_max_chains"] += len(lines) - MAX_LINES
        lines = lines[:MAX_LINES]
    elif finish_reason == "length" and lines:
        lines.pop()  # cut mid-line by the token cap: its last name may be half a name
        out.dropped["cut_off"] += 1
    return lines


def _read_line(line: str, rules: ChainRules, out: ReadChains) -> Chain | None:
    line = line.strip().strip(_MARKUP).strip()
    line = _PREFIX.sub("", line, count=1).strip().strip(_MARKUP)
    if not _ARROW.search(line):
        out.dropped["no_arrow"] += 1
        return None
    parts = [clean_name(p) for p in _ARROW.split(line)]
    if not all(parts):
        out.dropped["empty_step"] += 1
        return None
    if any(len(p) > rules.max_name_chars for p in parts):
        out.dropped["name_too_long"] += 1
        return None
    if not all(_valid_name(p) for p in parts):
        out.dropped["bad_name"] += 1
        return None
    while parts and norm_name(parts[0]) in rules.strip_leading:
        parts.pop(0)
    if not parts:
        out.dropped["empty_step"] += 1
        return None
    if len(parts) > rules.max_depth:
        out.cut_to_depth += 1
        parts = parts[: rules.max_depth]
    return tuple(parts)


def clean_name(part: str) -> str:
    """A name as kept: markdown, quotes and trailing punctuation off, spacing collapsed."""
    part = " ".join(part.split())
    for _ in range(2):
        part = part.strip(_MARKUP + " ").rstrip(".,;:").strip()
    return part


@functools.lru_cache(maxsize=65536)
def _valid_name(name: str) -> bool:
    """Whether the tree format takes ``name`` as a node name (the loader's own checks)."""
    try:
        SkillTree.from_dict({"name": "root", "children": [name]})
    except TreeError:
        return False
    return True
