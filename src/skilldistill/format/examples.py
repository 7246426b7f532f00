"""One item as a chat example: the user turn (problem and instruction) and the assistant
turn (the teacher's response, after the skill plan when skill-aware)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..generate.config import DEFAULT_INSTRUCTION
from ..textutil import DEFAULT_PROMPT_TEMPLATE, render_user_prompt
from ..tree import CHAIN_SEP
from .config import Depth, ExampleFormat

SKILLS_HEADER = "Skills:"
THINK_OPEN = "<think>"


def build_user_prompt(question: str, instruction: str | None = DEFAULT_INSTRUCTION,
                      template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """The user turn: ``template`` with the problem and the instruction (the bare problem
    when there is no instruction).

    The same form as ``GenerationConfig`` in :mod:`skilldistill.generate` renders for
    profiling and evaluation, so the student sees one prompt at every stage.
    """
    return render_user_prompt(question, instruction, template)


def chain_window(chain: Sequence[str], depth: Depth) -> tuple[str, ...]:
    """The part of a chain shown in the plan."""
    chain = tuple(chain)
    if depth == "top":
        return chain[:1]
    if depth == "leaf":
        return chain[-1:]
    return chain


def skill_plan_lines(
    chains: Sequence[Sequence[str]] | None, depth: Depth = "full", separator: str = CHAIN_SEP, *,
    window: tuple[int, int | None] = (0, None), short_chains: str = "keep", names: dict[str, str] | None = None,
) -> list[str]:
    """One line per chain, duplicates removed, order kept: the levels ``window`` (start,
    exclusive end) of the chain (a chain shorter than the end kept in part, or dropped with
    ``short_chains="drop"``), then the ``depth`` window, each name through ``names``."""
    lines: list[str] = []
    seen: set[str] = set()
    lo, hi = window
    for chain in chains or ():
        if not chain:
            continue
        if hi is not None and len(chain) < hi and short_chains == "drop":
            continue
        shown = chain_window(tuple(chain)[lo:hi], depth)
        if not shown:
            continue
        line = separator.join(names.get(n, n) for n in shown) if names else separator.join(shown)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def plan_chains_shown(chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> list[tuple[str, ...]]:
    """The levels of each line the plan shows (window and depth applied; long names; a line
    shown once however many chains give it, as in :func:`skill_plan_lines`)."""
    lo, hi = fmt.min_shown_depth, fmt.max_shown_depth
    out: list[tuple[str, ...]] = []
    for chain in chains or ():
        if chain and not (hi is not None and len(chain) < hi and fmt.short_chains == "drop"):
            shown = chain_window(tuple(chain)[lo:hi], fmt.depth)
            if shown and shown not in out:
                out.append(shown)
    return out


def plan_lines(chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> list[str]:
    """The plan lines of ``fmt`` (window, depth, separator, short names)."""
    return skill_plan_lines(
        chains, fmt.depth, fmt.separator, window=(fmt.min_shown_depth, fmt.max_shown_depth),
        short_chains=fmt.short_chains, names=load_name_map(fmt.short_names) if fmt.short_names else None,
    )


def load_name_map(path: str | Path) -> dict[str, str]:
    """A ``{name: short name}`` JSON map (a list value: its first entry), checked and cached."""
    p = Path(path)
    if not p.exists():
        raise InputError("short-names map not found", file=p)
    st = p.stat()
    return _load_name_map(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_name_map(path: str, _mtime: int, _size: int) -> dict[str, str]:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a JSON file: {e}", file=path) from None
    if not isinstance(data, dict):
        raise InputError(f"must be a JSON object of name -> short name, got {type(data).__name__}", file=path)
    out: dict[str, str] = {}
    for k, v in data.items():
        short = v[0] if isinstance(v, list) and v else v
        if not isinstance(short, str) or not short.strip():
            raise InputError(f"the short name of {k[:80]!r} must be a non-empty string (or a list of them)",
                             file=path, field=k[:80])
        if "\n" in short or "\r" in short or CHAIN_SEP in short:
            raise InputError(f"the short name {short[:80]!r} holds a line break or {CHAIN_SEP!r}: the plan is one "
                             "chain per line", file=path, field=k[:80])
        out[k] = short.strip()
    return out


def assistant_target(response: str, chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> str:
    """The assistant turn: the response, or ``Skills:`` + one chain per line + response."""
    if fmt.style == "plain":
        return response
    lines = plan_lines(chains, fmt)
    if not lines:
        return response  # nothing to plan with: the item is kept plain (counted in the report)
    plan = SKILLS_HEADER + "\n" + "\n".join(lines) + "\n"
    if fmt.plan_position == "inside_think":
        stripped = response.lstrip()
        if stripped.startswith(THINK_OPEN):
            rest = stripped[len(THINK_OPEN):]
            return THINK_OPEN + "\n" + plan + rest.lstrip("\n")
    return plan + response


def build_messages(question: str, response: str, chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> list[dict[str, str]]:
    """``[system?, user, assistant]`` in the role/content form of chat templates."""
    messages = []
    if fmt.system_prompt:
        messages.append({"role": "system", "content": fmt.system_prompt})
    messages.append({"role": "user", "content": build_user_prompt(question, fmt.instruction, fmt.prompt_template)})
    messages.append({"role": "assistant", "content": assistant_target(response, chains, fmt)})
    return messages
