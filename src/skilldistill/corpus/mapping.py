"""The field mapping: which columns of a source row hold the question, the teacher
response, the answer and the id (a preset plus explicit field options), and one row
normalised through it into a corpus record."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InputError
from ..rows import ANSWER_EXTRACTORS, answer_problem, jsonable, text_problem, to_text
from ..textutil import question_id
from .config import IngestConfig
from .presets import PRESETS, RESPONSE_BUILDERS, detect_preset

log = logging.getLogger(__name__)


@dataclass
class FieldMapping:
    """The columns and extractors used for every row of one source."""

    question: str
    response: tuple[str, ...]
    answer: str | None
    answer_extractor: str
    answer_required: bool
    fallback_from: str | None
    fallback_extractor: str
    response_builder: str
    id_field: str | None
    source_field: str | None
    preset: str | None


def resolve_mapping(cfg: IngestConfig, columns: Iterable[str] | None = None) -> FieldMapping:
    """Preset + explicit field options -> the mapping used for every row."""
    preset_name = cfg.preset
    if preset_name == "auto" or (preset_name is None and not cfg.question_field):
        preset_name = detect_preset(columns or [])
        if preset_name is None:
            raise InputError(
                f"cannot detect the schema from columns {sorted(columns or [])}; pass --preset "
                f"({', '.join(sorted(PRESETS))}) or --question-field/--response-field/--answer-field",
                file=cfg.source,
            )
        log.info("detected preset %r", preset_name)
    if preset_name is not None and preset_name not in PRESETS:
        raise InputError(f"unknown preset {preset_name!r}; known: {', '.join(sorted(PRESETS))}")
    p = PRESETS.get(preset_name) if preset_name else None
    question = cfg.question_field or (p.question if p else None)
    if not question:
        raise InputError("no question field: pass --question-field or a --preset")
    if cfg.response_field:
        response: tuple[str, ...] = (cfg.response_field,)
        builder = "first"
    elif p:
        response, builder = p.response, p.response_builder
    else:
        raise InputError("no response field: pass --response-field or a --preset")
    if cfg.answer_field:
        answer, extractor, required = cfg.answer_field, "auto", True
    elif p:
        answer, extractor, required = p.answer, p.answer_extractor, p.answer_required
    else:
        answer, extractor, required = None, "auto", False  # extract from the response
    return FieldMapping(
        question=question,
        response=response,
        answer=answer,
        answer_extractor=extractor,
        answer_required=required,
        fallback_from=p.fallback_from if p and not cfg.answer_field else None,
        fallback_extractor=p.fallback_extractor if p else "final",
        response_builder=builder,
        id_field=cfg.id_field or (p.id_field if p else None),
        source_field=p.source_field if p else None,
        preset=preset_name,
    )


def normalise_row(
    data: dict, m: FieldMapping, *, default_source: str, require_response: bool = True
) -> tuple[dict[str, str] | None, str | None, str | None]:
    """One source row -> (record, None, None) or (None, reason, field)."""
    if m.question not in data:
        return None, f"missing field {m.question!r}", m.question
    if data.get(m.question) is not None and not isinstance(data.get(m.question), str):
        # a number, list or mapping is not a problem statement; its repr would become one
        return None, f"question is not text (a {type(data.get(m.question)).__name__})", m.question
    question = to_text(data.get(m.question))
    if question is None or not question.strip():
        return None, "empty question", m.question
    question = question.strip()
    refused = _not_text(data, m)
    if refused is not None:
        return None, *refused
    response = RESPONSE_BUILDERS[m.response_builder](data, m.response)
    if response is None or not response.strip():
        if require_response:
            return None, "no teacher response", m.response[0]
        response = ""
    answer = None
    raw_answer = data.get(m.answer) if m.answer else None
    if (why := answer_problem(raw_answer)) is not None:  # NaN is a missing answer, inf or a list of lists none
        return None, why, m.answer
    if m.answer and m.answer_required and not (to_text(raw_answer) or "").strip():
        # a required answer is the gold: never replaced by whatever the teacher boxed
        return None, "missing answer", m.answer
    if raw_answer is not None and (to_text(raw_answer) or "").strip():
        answer = ANSWER_EXTRACTORS[m.answer_extractor](raw_answer)
    if answer is None:
        fallback = data.get(m.fallback_from) if m.fallback_from else response
        answer = ANSWER_EXTRACTORS[m.fallback_extractor](fallback)
    if answer is None or not answer.strip():
        return None, "no extractable answer", m.answer or m.fallback_from or m.response[0]
    source = to_text(data.get(m.source_field)) if m.source_field else None
    rid = to_text(data.get(m.id_field)) if m.id_field else None
    used = {m.question, *m.response, m.answer, m.fallback_from, m.id_field, m.source_field}
    meta = {k: v for k, v in data.items() if k not in used and jsonable(v)}
    rec = {
        "id": rid if rid else question_id(question),
        "question": question,
        "response": response,
        "answer": answer.strip(),
        "source": source or default_source,
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True),
    }
    return rec, None, None


# Fields a response builder reads as one text (a list or mapping there would be joined or repr'd);
# "first_verified" picks among a list of generations itself.
_TEXT_RESPONSE_FIELDS = {"first": (0,), "gsm8k": (0,), "think_attempt": (1,)}


def _not_text(data: dict, m: FieldMapping) -> tuple[str, str] | None:
    """(reason, field) when the response, id or source field holds something other than text."""
    for i in _TEXT_RESPONSE_FIELDS.get(m.response_builder, ()):
        if i < len(m.response) and (why := text_problem(data.get(m.response[i]), "response")) is not None:
            return why, m.response[i]
    if m.response_builder == "think_attempt" and m.response:
        think = data.get(m.response[0])
        first = think[0] if isinstance(think, list | tuple) and think else think
        if (why := text_problem(first, "response")) is not None:
            return why, m.response[0]
    for name, fld in (("id", m.id_field), ("source", m.source_field)):
        if fld and (why := text_problem(data.get(fld), name, numbers=True)) is not None:
            return why, fld
    return None
