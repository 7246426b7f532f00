"""Chat templates for training: the template whose ``{% generation %}`` markers tell TRL
which tokens are the assistant turn (the loss), and the system turn a ChatML model's own
template adds by itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# A ChatML template (``<|im_start|>role ... <|im_end|>``, the format of Qwen2.5, Qwen3 and
# SmolLM2) that renders every message verbatim and marks the assistant turn, up to and
# including ``<|im_end|>``, for the loss. Unlike TRL's Qwen3 training template it does not
# move text around ``<think>``, so a skill plan written before ``<think>`` survives; this is
# also how LLaMA-Factory's qwen3 template (the paper's trainer) renders the turn.
CHATML_TRAINING_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CHATML_SYSTEM = re.compile(r"^<\|im_start\|>system\n(.*?)<\|im_end\|>\n", re.S)


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and re.search(r"\{%-?\s*generation\s*-?%\}", template) is not None


def is_chatml(tokenizer: Any) -> bool:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    vocab = tokenizer.get_vocab()
    return bool(template) and "<|im_start|>" in template and "<|im_start|>" in vocab and "<|im_end|>" in vocab


def implicit_system_prompt(tokenizer: Any) -> str | None:
    """The system turn a ChatML model's own template inserts when a conversation has none
    (SmolLM2: "You are a helpful AI assistant named SmolLM...", Qwen2.5: "You are Qwen...").

    The ChatML training template does not invent one, so training conversations get it
    explicitly (:func:`with_implicit_system`): the trained text is then what the model's
    own template renders, at training and at inference alike.
    """
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if not own or "<|im_start|>" not in own:
        return None
    marker = "\u2063probe\u2063"  # text no template writes by itself
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False)
    except Exception:  # a template that needs more than a user turn: no default to copy
        return None
    m = _CHATML_SYSTEM.match(text)
    if m and marker not in m.group(1):
        return m.group(1)
    return None


def with_implicit_system(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """``messages`` with ``system`` as a first system turn when they have none."""
    if not system or (messages and messages[0].get("role") == "system"):
        return messages
    return [{"role": "system", "content": system}, *messages]


def resolve_chat_template(tokenizer: Any, spec: str = "auto") -> tuple[str, str]:
    """The training chat template (with generation markers) and a name saying where it came from.

    - ``model``: the tokenizer's own template (must carry ``{% generation %}`` markers);
    - ``chatml``: :data:`CHATML_TRAINING_TEMPLATE` (ChatML tokenizers: Qwen2.5, Qwen3, SmolLM2);
    - ``trl``: the training template TRL ships for this model family
      (``trl.chat_template_utils.get_training_chat_template``: Qwen3, Llama 3, Gemma, Phi, ...);
    - a path to a ``.jinja`` file;
    - ``auto``: ``model`` if it has markers, else ``chatml`` for a ChatML tokenizer, else ``trl``.
    """
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if spec == "auto":
        if has_generation_markers(own):
            return own, "model"
        if is_chatml(tokenizer):
            return CHATML_TRAINING_TEMPLATE, "chatml"
        return resolve_chat_template(tokenizer, "trl")
    if spec == "model":
        if not own:
            raise ConfigError("the tokenizer has no chat template; use chat_template: chatml, trl or a .jinja file")
        if not has_generation_markers(own):
            raise ConfigError(
                "the tokenizer's chat template has no {% generation %} markers, so assistant-only loss "
                "cannot find the assistant turn; use chat_template: auto, chatml, trl or a .jinja file"
            )
        return own, "model"
    if spec == "chatml":
        if not is_chatml(tokenizer):
            raise ConfigError("chat_template: chatml needs a tokenizer with <|im_start|> and <|im_end|> tokens")
        return CHATML_TRAINING_TEMPLATE, "chatml"
    if spec == "trl":
        return _trl_training_template(tokenizer, own), "trl"
    path = Path(spec)
    if path.suffix in (".jinja", ".j2"):
        return _template_file(path), str(path)
    raise ConfigError(f"chat_template: expected auto, model, chatml, trl or a .jinja path, got {spec!r}")


def _trl_training_template(tokenizer: Any, own: str | None) -> str:
    """The training template TRL ships for the tokenizer's model family."""
    from trl.chat_template_utils import get_training_chat_template

    if not own:
        raise ConfigError("the tokenizer has no chat template for TRL to patch")
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError as e:
        raise ConfigError(
            f"TRL ships no training template for this model's chat template ({e}); "
            "use chat_template: chatml (ChatML models) or a .jinja file with {% generation %} markers"
        ) from None
    return patched or own


def _template_file(path: Path) -> str:
    """A user's ``.jinja`` training template, which must mark the assistant turn."""
    if not path.is_file():
        raise ConfigError(f"chat template file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if not has_generation_markers(text):
        raise ConfigError(f"{path}: no {{% generation %}} markers around the assistant turn")
    return text


def inference_chat_template(own: str | None, training: str, training_name: str) -> str | None:
    """The template ``final/`` is saved with: the model's own where training used an
    equivalent one (chatml / trl); an explicitly given template file stays."""
    return own if (own and training_name in ("chatml", "trl")) else training
