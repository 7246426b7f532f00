"""The training data: reading and checking conversations (a jsonl file or a datasets folder),
the dataset's hash, and tokenizing them with the training template (the over-long ones
dropped and counted)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..artifacts import hash_obj, sha256_file
from ..errors import ConfigError, InputError

ROLES = ("system", "user", "assistant")


def resolve_dataset(path: str | Path) -> tuple[Path, str]:
    """The file or folder to read and its kind (``jsonl`` or ``hf``).

    Accepts a ``.jsonl`` file, a ``datasets.save_to_disk`` folder, or a format-stage folder
    (its ``train.jsonl`` first, else its ``hf/``).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix != ".jsonl":
            raise InputError("expected a .jsonl file or a dataset folder", file=path)
        return path, "jsonl"
    if path.is_dir():
        if (path / "train.jsonl").is_file():
            return path / "train.jsonl", "jsonl"
        if _is_hf_dir(path):
            return path, "hf"
        if _is_hf_dir(path / "hf"):
            return path / "hf", "hf"
        raise InputError("no train.jsonl, hf/ or datasets folder here", file=path)
    raise InputError("no such file or folder", file=path)


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def dataset_hash(path: Path, kind: str) -> str:
    if kind == "jsonl":
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("cache-"))
    return hash_obj({str(p.relative_to(path)): sha256_file(p) for p in files})


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"id", "messages"}`` from a jsonl file or a datasets folder, validated."""
    src, kind = resolve_dataset(path)
    rows = _jsonl_rows(src) if kind == "jsonl" else _datasets_rows(src)
    if not rows:
        raise InputError("the dataset has no examples", file=src)
    return rows


def _jsonl_rows(src: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with open(src, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON: {e.msg}", file=src, row=line_no) from None
            rows.append(_validate_row(obj, src, line_no))
    return rows


def _datasets_rows(src: Path) -> list[dict[str, Any]]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(src), keep_in_memory=True)
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise InputError(f"dataset dict has no 'train' split (splits: {', '.join(ds)})", file=src)
        ds = ds["train"]
    if "messages" not in ds.column_names:
        raise InputError("no 'messages' column", file=src, field="messages")
    return [_validate_row(obj, src, i + 1) for i, obj in enumerate(ds)]


def _validate_row(obj: Any, src: Path, row: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object", file=src, row=row)
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("expected a non-empty list of messages", file=src, row=row, field="messages")
    clean = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputError(
                f"message {j}: expected role in {ROLES}, got {m.get('role') if isinstance(m, dict) else m!r}",
                file=src, row=row, field="messages",
            )
        if not isinstance(m.get("content"), str):
            raise InputError(f"message {j}: content must be a string", file=src, row=row, field="messages")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "assistant":
        raise InputError("the last message must be the assistant turn", file=src, row=row, field="messages")
    return {"id": str(obj.get("id", row)), "messages": clean}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def prepare_examples(
    rows: list[dict[str, Any]],
    tokenizer: Any,
    chat_template: str,
    *,
    max_length: int | None,
    drop_overlong: bool,
    assistant_only_loss: bool = True,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Render every example with the training template; check it; drop the over-long ones.

    Raises ConfigError when the template loses assistant text (e.g. TRL's Qwen3 template
    keeps only what follows ``<think>``, which drops a skill plan written before it) or
    marks no assistant token. Returns the kept rows and statistics.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..progress import StageProgress

    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    lengths: list[int] = []
    assistant_tokens = 0
    with StageProgress(
        TextColumn("[bold]tokenizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not progress, transient=True,
    ) as bar:
        task = bar.add_task("tokenize", total=len(rows))
        for row in rows:
            n_tokens, n_assistant = _render_checked(row, tokenizer, chat_template, assistant_only_loss)
            assistant_tokens += n_assistant
            if max_length is not None and n_tokens > max_length and drop_overlong:
                dropped.append({"id": row["id"], "tokens": n_tokens})
            else:
                kept.append(row)
                lengths.append(n_tokens)
            bar.advance(task)
    stats = {
        "examples_read": len(rows),
        "examples_kept": len(kept),
        "dropped_overlong": len(dropped),
        "dropped_overlong_examples": dropped,
        "tokens_total": sum(lengths),
        "tokens_max": max(lengths) if lengths else 0,
        "tokens_mean": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "assistant_tokens": assistant_tokens if assistant_only_loss else None,
    }
    return kept, stats


def _render_checked(row: dict[str, Any], tokenizer: Any, chat_template: str,
                    assistant_only_loss: bool) -> tuple[int, int]:
    """Tokenize one example; check that the trained tokens hold every assistant message.
    Returns its token count and how many of them are in the loss (0 without the mask)."""
    enc = tokenizer.apply_chat_template(
        row["messages"], chat_template=chat_template, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=assistant_only_loss,
    )
    ids = list(enc["input_ids"])
    n_assistant = 0
    if assistant_only_loss:
        mask = list(enc["assistant_masks"])
        if not any(mask):
            raise ConfigError(f"example {row['id']!r}: the chat template marks no assistant token")
        rendered = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        n_assistant = sum(mask)
    else:
        rendered = tokenizer.decode(ids)
    rendered_sq = _squash(rendered)
    for msg in row["messages"]:
        if msg["role"] == "assistant" and _squash(msg["content"]) not in rendered_sq:
            raise ConfigError(
                f"example {row['id']!r}: the chat template does not render the assistant turn "
                "verbatim, so part of it would never be trained (a skill plan before <think> is "
                "dropped by templates that keep only the text around the think block). "
                "Use chat_template: chatml (ChatML models) or a .jinja template that renders "
                f"message content as is. Rendered: {rendered[:200]!r}"
            )
    return len(ids), n_assistant
