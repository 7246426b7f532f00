"""The attribution prompt: a template with ``{{item}}``, ``{{skills}}`` and ``{{node}}``, and
the follow-up turn that asks again after an unreadable answer."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..artifacts import sha256_text
from ..errors import ConfigError
from ..tree import Chain, SkillNode

DEFAULT_TEMPLATE = "attribution_v1"

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
            file = Path(path)
            if not file.exists():
                raise ConfigError(f"prompt template not found: {file}")
            text, name = file.read_text(encoding="utf-8"), file.stem
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
        return "".join(values[piece] if i % 2 else piece for i, piece in enumerate(pieces))

    @functools.cached_property
    def _pieces(self) -> list[str]:
        return _PLACEHOLDER.split(self.text)


def repair_message(children: Sequence[SkillNode], named_none: bool = False) -> str:
    """The follow-up turn: after an unreadable answer, or (``named_none``) a list naming
    none of the listed skills, which the question offers no room for."""
    names = json.dumps([c.name for c in children], ensure_ascii=False)
    said = ("Your answer named none of the listed skills; the item needs at least one of them."
            if named_none else "Your answer could not be read.")
    return f"{said} Reply with only a JSON list of the needed skill names, each copied exactly from this list: {names}"
