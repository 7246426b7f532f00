"""Token counts of chat examples as the trainer sees them (the student's tokenizer and the
training chat template)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def load_tokenizer(spec: str, gguf_file: str | None = None) -> Any:
    """A Hugging Face tokenizer from a hub id, a local folder, or a ``.gguf`` file path."""
    from transformers import AutoTokenizer

    path = Path(spec)
    if gguf_file is None and path.suffix.lower() == ".gguf" and path.is_file():
        spec, gguf_file = str(path.parent), path.name
    try:
        if gguf_file:
            return AutoTokenizer.from_pretrained(spec, gguf_file=gguf_file)
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load tokenizer {spec!r}{f' ({gguf_file})' if gguf_file else ''}: {e}") from e


def count_tokens(tokenizer: Any, conversations: Sequence[list[dict[str, str]]], batch_size: int = 32,
                 chat_template: str = "auto") -> list[int]:
    """Token count of each conversation as the trainer sees it: rendered with the training
    chat template the train stage picks (``chat_template`` as in ``TrainConfig``), with the
    model's implicit system turn added the way the train stage adds it."""
    from ..train.templates import (
        implicit_system_prompt,
        resolve_chat_template,
        with_implicit_system,
    )

    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the tokenizer has no chat template: cannot measure chat examples")
    template, name = resolve_chat_template(tokenizer, chat_template)
    system = implicit_system_prompt(tokenizer) if name == "chatml" else None
    out: list[int] = []
    for start in range(0, len(conversations), batch_size):
        batch = [with_implicit_system(list(c), system) for c in conversations[start:start + batch_size]]
        enc = tokenizer.apply_chat_template(batch, tokenize=True, return_dict=True, chat_template=template)
        out.extend(len(ids) for ids in enc["input_ids"])
    return out


def count_with_progress(tokenizer: Any, conversations: list, progress: bool, batch_size: int = 32) -> Iterator[int]:
    """:func:`count_tokens` batch by batch, under a progress bar (``progress``: shown)."""
    from ..progress import StageProgress

    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("counting tokens", total=len(conversations))
        for start in range(0, len(conversations), batch_size):
            batch = conversations[start:start + batch_size]
            yield from count_tokens(tokenizer, batch, batch_size)
            bar.advance(task, len(batch))


def token_stats(values: list[int]) -> dict[str, Any] | None:
    """Count, min, mean, median, p95, max and total of sorted token counts (None when empty)."""
    if not values:
        return None

    def percentile(q: float) -> int:
        return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]

    return {
        "count": len(values), "min": values[0], "mean": round(sum(values) / len(values), 1),
        "p50": percentile(0.5), "p95": percentile(0.95), "max": values[-1], "total": sum(values),
    }
