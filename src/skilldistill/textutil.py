"""Small text helpers shared by several stages: boxed answers, question normalisation."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_BOXED_CMDS = ("\\boxed", "\\fbox")
_THINK_END = "</think>"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces), else None.

    Also accepts the brace-less form ``\\boxed 5`` that some models write.
    """
    best_pos = -1
    best: str | None = None
    for cmd in _BOXED_CMDS:
        start = 0
        while (pos := text.find(cmd, start)) != -1:
            start = pos + len(cmd)
            content = _boxed_content(text, pos + len(cmd))
            if content is not None and pos > best_pos:
                best_pos, best = pos, content
    return best


def _boxed_content(text: str, i: int) -> str | None:
    n = len(text)
    if i < n and text[i] == "{":
        depth = 0
        for j in range(i, n):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j].strip()
        return None  # unbalanced: the answer was cut off
    if i < n and text[i] == " ":
        m = re.match(r" +([^\s$]+)", text[i:])
        return m.group(1) if m else None
    return None


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final(text: str) -> str | None:
    """The number after GSM8K's ``#### `` marker, commas removed."""
    m = _GSM8K_FINAL.search(text)
    if not m:
        return None
    return m.group(1).strip().replace(",", "")


def final_solution(response: str) -> str:
    """The text after ``</think>`` when there is one (the part graders and annotators read)."""
    if _THINK_END in response:
        return response.rsplit(_THINK_END, 1)[1].strip()
    return response


_WS = re.compile(r"\s+")


def normalize_question(text: str) -> str:
    """Canonical form used for deduplication and decontamination.

    Unicode NFKC, case-folded, whitespace collapsed, and ``$``/spaces around LaTeX
    delimiters ignored, so the same problem copied between datasets matches.
    """
    t = unicodedata.normalize("NFKC", text).casefold()
    t = t.replace("$", " ").replace("\\(", " ").replace("\\)", " ")
    t = _WS.sub(" ", t).strip()
    return t.rstrip(" .")


def question_id(text: str) -> str:
    """Stable id: the first 16 hex digits of SHA-256 of the normalised question."""
    return hashlib.sha256(normalize_question(text).encode("utf-8")).hexdigest()[:16]
