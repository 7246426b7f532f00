"""Small text helpers shared by several stages: boxed answers, question normalisation."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])(?P<ws>\s*)")


def find_boxed(text: str) -> list[tuple[int, int, str]]:
    """Every complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``: (start, end, content).

    Braces are balanced (escaped ``\\{``/``\\}`` do not count); ``\\boxed 5`` (no braces)
    takes the next token. A box that never closes (output cut mid-box) is left out.
    """
    found: list[tuple[int, int, str]] = []
    for m in _BOX_RE.finditer(text):
        pos = m.end()
        if pos < len(text) and text[pos] == "{":
            depth, i = 0, pos
            while i < len(text):
                ch = text[i]
                if ch == "\\":
                    i += 2
                    continue
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        found.append((m.start(), i + 1, text[pos + 1 : i]))
                        break
                i += 1
        elif m.group("ws"):
            # "\boxed 5": the token up to whitespace, "$" or a closing delimiter
            tok = re.match(r"[^\s$}\\]+", text[pos:])
            if tok:
                found.append((m.start(), pos + tok.end(), tok.group(0)))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}``, else None."""
    boxes = find_boxed(text)
    return boxes[-1][2].strip() if boxes else None


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final(text: str) -> str | None:
    """The number after GSM8K's ``#### `` marker, commas removed."""
    m = _GSM8K_FINAL.search(text)
    if not m:
        return None
    return m.group(1).strip().replace(",", "")


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
