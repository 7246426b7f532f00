r"""Presets: how each published teacher-solution schema maps onto the normalised record.

Presets are rows of the :data:`PRESETS` table, not code branches; a preset names its
response builder (how the teacher solution is put together from its fields) and answer
extractors (:data:`skilldistill.rows.ANSWER_EXTRACTORS`) by key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..rows import to_text
from ..textutil import gsm8k_final


@dataclass(frozen=True)
class Preset:
    """Field mapping for one published dataset schema.

    ``response`` names the teacher-solution field (or the fields ``response_builder``
    combines). The gold answer is read from ``answer`` with ``answer_extractor``; when
    that field is absent or empty in a row, it is extracted with ``fallback_extractor``
    from ``fallback_from`` (default: the built response). ``answer_required``: fail on a
    file without the answer column (else every row falls back).
    """

    name: str
    hf_id: str | None
    question: str
    response: tuple[str, ...]
    answer: str | None = None
    answer_extractor: str = "auto"
    answer_required: bool = True
    fallback_from: str | None = None
    fallback_extractor: str = "final"
    response_builder: str = "first"
    id_field: str | None = None
    source_field: str | None = None
    default_split: str = "train"
    default_config: str | None = None
    notes: str = ""
    rows: int | None = None  # rows the published dataset has (what `plan` assumes before it is ingested)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("openmathreasoning", "nvidia/OpenMathReasoning", "problem", ("generated_solution",),
               answer="expected_answer", source_field="problem_source", default_split="cot",
               notes="DeepSeek-R1 / QwQ traces; splits cot, tir, genselect"),
        Preset("openr1-math", "open-r1/OpenR1-Math-220k", "problem", ("generations", "correctness_math_verify"),
               answer="answer", response_builder="first_verified", id_field="uuid", source_field="source",
               default_config="default",
               notes="R1 generations; the first one math-verify marked correct is used"),
        Preset("deepmath", "zwhe99/DeepMath-103K", "question", ("r1_solution_1",), answer="final_answer",
               notes="three R1 solutions per problem; r1_solution_1 is used (--response-field for another)"),
        Preset("numinamath", "AI-MO/NuminaMath-CoT", "problem", ("solution",), answer=None,
               answer_required=False, source_field="source", notes="answer from the last \\boxed{}"),
        Preset("math", "EleutherAI/hendrycks_math", "problem", ("solution",), answer="answer",
               answer_required=False, fallback_from="solution", fallback_extractor="boxed",
               id_field="unique_id", default_split="test",
               notes="MATH / MATH-500: the answer field when present, else the solution's last \\boxed{}"),
        Preset("gsm8k", "openai/gsm8k", "question", ("answer",), answer="answer", answer_extractor="gsm8k",
               response_builder="gsm8k", default_config="main",
               notes="answer after '####'; calculator notes removed and the answer boxed in the response"),
        Preset("s1k", "simplescaling/s1K-1.1", "question",
               ("deepseek_thinking_trajectory", "deepseek_attempt"), answer="solution",
               answer_extractor="boxed_or_short", response_builder="think_attempt", source_field="source_type",
               notes="trajectory wrapped in <think>, then the attempt (s1K 1.0: map thinking_trajectories/attempt)",
               rows=1000),
        Preset("limo", "GAIR/LIMO", "question", ("solution",), answer="answer",
               notes="long R1-style solutions with a separate answer", rows=817),
    ]
}


def detect_preset(columns: Iterable[str]) -> str | None:
    """The most specific preset whose fields are all present in ``columns``."""
    cols = set(columns)
    best, best_n = None, 0
    for p in PRESETS.values():
        needed = {p.question, *p.response} | ({p.answer} if p.answer and p.answer_required else set())
        if needed <= cols and len(needed) > best_n:
            best, best_n = p.name, len(needed)
    return best


# -- response builders: (row, response fields) -> teacher solution or None ----------
def _resp_first(row: dict, fields: Sequence[str]) -> str | None:
    return to_text(row.get(fields[0]))


def _resp_first_verified(row: dict, fields: Sequence[str]) -> str | None:
    gens, ok = row.get(fields[0]), row.get(fields[1]) if len(fields) > 1 else None
    if isinstance(gens, str):
        return gens
    if not isinstance(gens, list | tuple) or not gens:
        return None
    if isinstance(ok, list | tuple):
        for g, good in zip(gens, ok, strict=False):
            if good and isinstance(g, str) and g.strip():
                return g
        return None  # verified, and none of them right: no teacher solution to learn from
    return gens[0] if isinstance(gens[0], str) else None


def _resp_think_attempt(row: dict, fields: Sequence[str]) -> str | None:
    think, attempt = row.get(fields[0]), row.get(fields[1]) if len(fields) > 1 else None
    if isinstance(think, list | tuple):
        think = think[0] if think else None
    think, attempt = to_text(think), to_text(attempt)
    if not attempt:
        return None
    if not think:
        return attempt
    return f"<think>\n{think.strip()}\n</think>\n\n{attempt.strip()}"


_CALC_NOTE = re.compile(r"<<[^<>]*>>")


def _resp_gsm8k(row: dict, fields: Sequence[str]) -> str | None:
    s = to_text(row.get(fields[0]))
    if s is None:
        return None
    final = gsm8k_final(s)
    body = _CALC_NOTE.sub("", s.split("####")[0]).rstrip()
    if final is None:
        return body
    return f"{body}\nThe final answer is $\\boxed{{{final}}}$."


RESPONSE_BUILDERS: dict[str, Callable[[dict, Sequence[str]], str | None]] = {
    "first": _resp_first,
    "first_verified": _resp_first_verified,
    "think_attempt": _resp_think_attempt,
    "gsm8k": _resp_gsm8k,
}
