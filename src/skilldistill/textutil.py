"""Small text helpers shared by several stages: boxed answers, question normalisation."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])(?P<ws>\s*)")


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of its ``}``, in one pass (escaped braces skipped).
    Unclosed braces have no entry."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def find_boxed(text: str) -> list[tuple[int, int, str]]:
    """Every complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``: (start, end, content).

    Braces are balanced (escaped ``\\{``/``\\}`` do not count); ``\\boxed 5`` (no braces)
    takes the next token. A box that never closes (output cut mid-box) is left out. Linear
    in the length of the text, whatever it holds (thousands of unclosed boxes included).
    """
    found: list[tuple[int, int, str]] = []
    pairs: dict[int, int] | None = None
    for m in _BOX_RE.finditer(text):
        pos = m.end()
        if pos < len(text) and text[pos] == "{":
            if pairs is None:
                pairs = _matching_braces(text)
            close = pairs.get(pos)
            if close is not None:
                found.append((m.start(), close + 1, text[pos + 1 : close]))
        elif m.group("ws"):
            # "\boxed 5": the token up to whitespace, "$" or a closing delimiter
            tok = re.match(r"[^\s$}\\]+", text[pos:pos + 200])
            if tok:
                found.append((m.start(), pos + tok.end(), tok.group(0)))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}``, else None."""
    boxes = find_boxed(text)
    return boxes[-1][2].strip() if boxes else None


# The marker on the text's last line only: "#### Step 1" headings inside a solution are not
# an answer (and "(.+?)$" with DOTALL took everything after the first of them).
_GSM8K_FINAL = re.compile(r"####[ \t]*([^\n]*\S)[ \t]*\s*\Z")


def gsm8k_final(text: str) -> str | None:
    """The number after GSM8K's ``#### `` marker on the last line, commas removed."""
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


# The user turn around a problem. The default puts the problem first; the paper's authors
# (their eval_checkpoints.py and training data) put the instruction first.
DEFAULT_PROMPT_TEMPLATE = "{question}\n\n{instruction}"
AUTHORS_PROMPT_TEMPLATE = "{instruction}\n\nQuestion: {question}"
_FIELD_RE = re.compile(r"\{([^{}]*)\}")


def check_prompt_template(template: str) -> str:
    """A prompt template names ``{question}`` and at most ``{instruction}`` besides it."""
    import string

    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"prompt_template {template!r}: {e} (write literal braces as {{{{ and }}}})") from None
    if "question" not in fields:
        raise ValueError(f"prompt_template {template!r} must contain {{question}}")
    unknown = fields - {"question", "instruction"}
    if unknown:
        raise ValueError(f"prompt_template {template!r}: unknown field(s) {sorted(unknown)}; "
                         "allowed: {question}, {instruction}")
    return template


def render_user_prompt(question: str, instruction: str | None, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """The user turn: ``template`` filled in; with no instruction, the bare problem."""
    question = question.strip()
    if not instruction:
        return question
    return template.format(question=question, instruction=instruction)


# A name that becomes a file or folder name (recipe, arm, dataset, benchmark): letters,
# digits, "_", "-", "." inside, never a path ("a/b", "..", an absolute path) or hidden.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_SAFE_NAME_RE = re.compile(SAFE_NAME)


def check_safe_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _SAFE_NAME_RE.fullmatch(name) or ".." in name:  # "$" matches before a final newline
        raise ValueError(f"{what} {name!r} must be 1-128 letters, digits, '_', '-' or '.', start with a letter "
                         "or digit and hold no '..' (it becomes a file or folder name)")
    return name
