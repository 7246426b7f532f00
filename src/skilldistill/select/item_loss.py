"""The student's loss on each item: the mean negative log-likelihood per token of the teacher's
response under a causal LM (the student by default), given the question, in the example the
student is trained on.

The text scored is the training example itself: the item formatted by
:func:`skilldistill.format.examples.build_messages` with the selection's ``ExampleFormat``
(user turn: the question with the instruction; assistant turn: the response, after the skill
plan when skill-aware), rendered with the training chat template the train stage picks
(:func:`skilldistill.train.templates.resolve_chat_template`, ``auto``; a ChatML model's implicit
system turn added as training adds it), cut at ``max_length`` tokens. The loss is averaged over
the assistant tokens the template marks (those training puts in the loss), each predicted from
the tokens before it: exactly ``model(input_ids, labels=ids where assistant else -100).loss``
of one example.

Batched (``batch_size`` examples a forward pass, right-padded, sorted by length within chunks of
``_CHUNK_ITEMS`` items so padding stays small and only one chunk's texts are in memory); the
logits are computed ``_HEAD_ROWS`` positions at a time from the last hidden state, so a long
example with a large vocabulary never holds its full logits (a model whose head does more than
the output projection, e.g. logit soft-capping, is found on the first batch and scored from its
full logits instead).

Every finished batch is appended to ``item_losses.jsonl`` (:class:`~skilldistill.artifacts.AppendLog`)
under a key of the model's identity (its files' names, sizes and modification times), the dtype
and the length; an item is found there by its id and the hash of its formatted messages. A
killed run resumes with the items not scored yet; a rerun with another seed or budget scores
nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ..artifacts import AppendLog, hash_obj
from ..errors import ConfigError
from ..format.config import ExampleFormat
from ..format.examples import build_messages
from ..train.templates import implicit_system_prompt, resolve_chat_template, with_implicit_system

log = logging.getLogger(__name__)

_READ_ROWS = 8192  # pool rows read at once
_CHUNK_ITEMS = 1024  # items rendered, sorted by length and scored together (their texts in memory)
_RENDER_AT_ONCE = 64  # conversations per apply_chat_template call
_HEAD_ROWS = 2048  # token positions whose logits exist at once


@dataclass
class LossModel:
    """A loaded causal LM with its tokenizer and training chat template."""

    model: Any
    tokenizer: Any
    template: str  # the training chat template (marks the assistant tokens)
    system: str | None  # a ChatML model's implicit system turn, added as training adds it
    name: str  # the model as given (folder/file for a GGUF)
    device: str
    dtype: str
    identity: str  # what the cache keys on: the name and the model files' names, sizes, modification times
    chunked_head: bool | None = None  # logits from the last hidden state chunk by chunk (decided on the first batch)


def model_location(spec: str, gguf_file: str | None) -> tuple[str, str | None]:
    """The folder (or hub id) and the GGUF file in it: a path to a ``.gguf`` file is split."""
    path = Path(spec)
    if gguf_file is None and path.suffix.lower() == ".gguf" and path.is_file():
        return str(path.parent), path.name
    return spec, gguf_file


def model_identity(spec: str, gguf_file: str | None, revision: str | None = None) -> str:
    """The model's name, its hub revision (when loaded from the hub) and its local files (name, size,
    modification time): a model rewritten at the same path (a retrained student) is another model."""
    root = Path(spec)
    if gguf_file:
        paths = [root / gguf_file] if (root / gguf_file).is_file() else []
    else:
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    files = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return hash_obj({"model": spec, "gguf_file": gguf_file, "revision": revision, "files": files})[:16]


def load_loss_model(spec: str, gguf_file: str | None = None, device: str = "auto", *,
                    field: str = "loss_model") -> LossModel:
    """The model, its tokenizer and training template; any failure is a ConfigError naming the model (as the
    setting ``field`` that gave it: ``loss_model``, ``less_model``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..llm.hf_backend import resolve_device
    from ..progress import library_bars_off

    spec, gguf = model_location(spec, gguf_file)
    where = str(Path(spec) / gguf) if gguf else spec
    dev = resolve_device(device)
    dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32  # bf16 matmuls are slow on CPU
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        with library_bars_off():
            tokenizer = AutoTokenizer.from_pretrained(spec, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype, **kwargs)
    except Exception as e:
        raise ConfigError(f"cannot load {field} {where!r}: {type(e).__name__}: {str(e)[:300]}") from e
    try:
        template, template_name = resolve_chat_template(tokenizer, "auto")
    except ConfigError as e:
        raise ConfigError(f"{field} {where!r}: {e}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev)
    model.eval()
    system = implicit_system_prompt(tokenizer) if template_name == "chatml" else None
    revision = getattr(model.config, "_commit_hash", None)  # a hub model's snapshot
    return LossModel(model, tokenizer, template, system, where, dev, str(dtype).removeprefix("torch."),
                     model_identity(spec, gguf, revision if isinstance(revision, str) else None))


# ---------------------------------------------------------------------------------
# One batch
# ---------------------------------------------------------------------------------
Example = tuple[list[int], list[int]]  # token ids, assistant mask (1: in the loss)


def render(lm: LossModel, conversations: list[list[dict[str, str]]], max_length: int) -> list[Example]:
    """Token ids and assistant masks of each conversation as training renders it, cut at ``max_length``."""
    out: list[Example] = []
    for start in range(0, len(conversations), _RENDER_AT_ONCE):
        batch = [with_implicit_system(list(c), lm.system) for c in conversations[start:start + _RENDER_AT_ONCE]]
        enc = lm.tokenizer.apply_chat_template(batch, tokenize=True, return_dict=True, chat_template=lm.template,
                                               return_assistant_tokens_mask=True)
        out.extend((list(ids)[:max_length], list(mask)[:max_length])
                   for ids, mask in zip(enc["input_ids"], enc["assistant_masks"], strict=True))
    return out


def head_is_projection(lm: LossModel, ids: list[int]) -> bool:
    """Whether the logits are the output projection of the last hidden state (no soft-capping or
    scaling in the head), checked once on a few real tokens."""
    import torch

    base = getattr(lm.model, getattr(lm.model, "base_model_prefix", ""), None)
    head = lm.model.get_output_embeddings()
    if base is None or head is None:
        return False
    probe = torch.tensor([ids[:32]], device=lm.device)
    with torch.inference_mode():
        full = lm.model(input_ids=probe, use_cache=False).logits.float()
        mine = head(base(input_ids=probe, use_cache=False).last_hidden_state).float()
    return mine.shape == full.shape and bool(torch.allclose(mine, full, rtol=1e-3, atol=1e-3 * float(full.abs().max())))


def pad_batch(lm: LossModel, batch: list[Example]) -> tuple[Any, Any, Any]:
    """The right-padded batch on the model's device: token ids, attention mask, and which positions predict an
    assistant token (``sel[:, t - 1]``: token ``t`` is in the loss; the first token is never predicted)."""
    import torch

    n, width = len(batch), max(len(ids) for ids, _ in batch)
    ids = torch.full((n, width), lm.tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    scored = torch.zeros((n, width), dtype=torch.bool)
    for r, (x, m) in enumerate(batch):
        ids[r, :len(x)] = torch.tensor(x)
        attention[r, :len(x)] = 1
        scored[r, :len(m)] = torch.tensor(m, dtype=torch.bool)
    return ids.to(lm.device), attention.to(lm.device), scored[:, 1:].to(lm.device)


def forward_nll(lm: LossModel, batch: list[Example]) -> list[tuple[float, int]]:
    """Per example: the summed negative log-likelihood of its assistant tokens (each predicted from
    the tokens before it) and how many there are, from one forward pass over the right-padded batch."""
    import torch
    import torch.nn.functional as F

    if lm.chunked_head is None:
        lm.chunked_head = head_is_projection(lm, batch[0][0])
    n = len(batch)
    ids, attention, sel = pad_batch(lm, batch)
    rows = sel.nonzero()[:, 0]
    targets = ids[:, 1:][sel]
    sums = torch.zeros(n, dtype=torch.float64, device=lm.device)
    with torch.inference_mode():
        if lm.chunked_head:
            base = getattr(lm.model, lm.model.base_model_prefix)
            states = base(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state[:, :-1][sel]
            head = lm.model.get_output_embeddings()
        else:
            states = lm.model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1][sel]
            head = None
        for s in range(0, len(targets), _HEAD_ROWS):
            part = states[s:s + _HEAD_ROWS]
            logits = (head(part) if head is not None else part).float()
            nll = F.cross_entropy(logits, targets[s:s + _HEAD_ROWS], reduction="none")
            sums.index_add_(0, rows[s:s + _HEAD_ROWS], nll.double())
    counts = sel.sum(dim=1).tolist()
    return [(float(v), int(c)) for v, c in zip(sums.tolist(), counts, strict=True)]


# ---------------------------------------------------------------------------------
# The pool
# ---------------------------------------------------------------------------------
@dataclass
class ItemLosses:
    losses: np.ndarray  # per pool item: mean NLL per assistant token; NaN: not scored
    tokens: np.ndarray  # per pool item: assistant tokens scored (-1: not scored)
    without_text: int  # eligible items with a null or blank question or response: never scored
    no_response_tokens: int  # items whose prompt alone fills max_length: no assistant token to score
    truncated: int  # scored items cut at max_length
    from_cache: int  # items whose loss was in item_losses.jsonl
    computed: int  # items scored by this run
    tokens_forward: int  # tokens through the model in this run (padding left out)
    seconds: float  # the forward passes of this run


@dataclass
class _Pending:
    item: int  # pool row
    id: Any
    text: str  # hash of the formatted messages


def settings_key(lm: LossModel, max_length: int) -> str:
    """What a cached loss depends on besides the item's text: the model's files, the dtype, the length."""
    return hash_obj({"model": lm.identity, "dtype": lm.dtype, "max_length": max_length, "template": lm.template,
                     "system": lm.system})[:16]


def pool_messages(src: Path, eligible: np.ndarray, fmt: ExampleFormat,
                   rows: set[int] | None = None) -> Iterator[tuple[int, Any, list[dict[str, str]] | None]]:
    """(pool row, id, the formatted messages or None without a question or response) of each eligible
    item (only ``rows`` when given), streamed by record batch."""
    names = pq.read_schema(src).names
    columns = ["id", "question", "response"] + (["skills"] if "skills" in names and fmt.style != "plain" else [])
    offset = 0
    for batch in pq.ParquetFile(src).iter_batches(batch_size=_READ_ROWS, columns=columns):
        picked = np.flatnonzero(eligible[offset:offset + batch.num_rows])
        if rows is not None:
            picked = np.array([r for r in picked.tolist() if offset + r in rows], dtype=np.int64)
        if len(picked):
            sub = batch.take(picked).to_pydict()
            chains = sub.get("skills") or [None] * len(picked)
            for r, i, q, a, c in zip(picked.tolist(), sub["id"], sub["question"], sub["response"], chains, strict=True):
                ok = isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()
                yield offset + r, i, build_messages(q, a, c, fmt) if ok else None
        offset += batch.num_rows


def _read_cache(log_file: AppendLog, key: str) -> dict[tuple[str, str], tuple[float | None, int, bool]]:
    return {(str(r.get("id")), str(r.get("text"))): (r.get("loss"), int(r.get("tokens", 0)), bool(r.get("truncated")))
            for r in log_file.iter() if r.get("key") == key}


def item_losses(src: Path, eligible: np.ndarray, fmt: ExampleFormat, lm: LossModel, cache_file: Path, *,
                max_length: int, batch_size: int = 8, progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None) -> ItemLosses:
    """The loss of every eligible item with a question and a response: from ``cache_file`` when it holds
    it, else scored in batches (each batch appended to ``cache_file`` as soon as it is done).
    ``on_total`` is told how many items will be scored, ``progress`` how many each batch scored."""
    n = len(eligible)
    out = ItemLosses(np.full(n, np.nan), np.full(n, -1, dtype=np.int64), 0, 0, 0, 0, 0, 0, 0.0)
    key = settings_key(lm, max_length)
    log_file = AppendLog(cache_file)
    cached = _read_cache(log_file, key)
    pending: dict[int, _Pending] = {}
    for item, item_id, messages in pool_messages(src, eligible, fmt):
        if messages is None:
            out.without_text += 1
            continue
        text = hash_obj(messages)[:32]
        hit = cached.get((str(item_id), text))
        if hit is None:
            pending[item] = _Pending(item, item_id, text)
        else:
            _record(out, item, *hit)
            out.from_cache += 1
    if on_total is not None:
        on_total(len(pending))
    if pending:
        try:
            _score_pending(src, eligible, fmt, lm, pending, log_file, key, out, max_length, batch_size, progress)
        finally:
            log_file.close()
    return out


def _record(out: ItemLosses, item: int, loss: float | None, tokens: int, truncated: bool) -> None:
    if loss is None:
        out.no_response_tokens += 1
        return
    out.losses[item] = loss
    out.tokens[item] = tokens
    out.truncated += int(truncated)


def _score_pending(src: Path, eligible: np.ndarray, fmt: ExampleFormat, lm: LossModel, pending: dict[int, _Pending],
                   log_file: AppendLog, key: str, out: ItemLosses, max_length: int, batch_size: int,
                   progress: Callable[[int], None] | None) -> None:
    """Score the items not in the cache, a chunk of ``_CHUNK_ITEMS`` at a time (texts rendered, sorted
    by length, longest first so that a batch too large for memory fails at once), batch by batch."""
    chunk: list[tuple[_Pending, list[dict[str, str]]]] = []

    def flush() -> None:
        examples = render(lm, [m for _, m in chunk], max_length + 1)  # one more token: tells a cut example
        order = sorted(range(len(chunk)), key=lambda k: -len(examples[k][0]))
        for start in range(0, len(order), batch_size):
            picked = order[start:start + batch_size]
            _score_batch(lm, [(chunk[k][0], examples[k]) for k in picked], log_file, key, out, max_length)
            if progress is not None:
                progress(len(picked))
        chunk.clear()

    for item, _, messages in pool_messages(src, eligible, fmt, rows=set(pending)):
        assert messages is not None
        chunk.append((pending[item], messages))
        if len(chunk) >= _CHUNK_ITEMS:
            flush()
    if chunk:
        flush()


def _score_batch(lm: LossModel, batch: list[tuple[_Pending, Example]], log_file: AppendLog, key: str,
                 out: ItemLosses, max_length: int) -> None:
    """One forward pass; the losses recorded and appended to the log."""
    cut = [(ids[:max_length], mask[:max_length]) for _, (ids, mask) in batch]
    truncated = [len(ids) > max_length for _, (ids, _mask) in batch]
    runnable = [k for k, (_, mask) in enumerate(cut) if any(mask[1:])]
    results: dict[int, tuple[float, int]] = {}
    if runnable:
        t0 = time.perf_counter()
        for k, res in zip(runnable, forward_nll(lm, [cut[k] for k in runnable]), strict=True):
            results[k] = res
        out.seconds += time.perf_counter() - t0
        out.tokens_forward += sum(len(cut[k][0]) for k in runnable)
    records = []
    for k, (p, _) in enumerate(batch):
        total, count = results.get(k, (0.0, 0))
        loss = total / count if count else None
        records.append({"key": key, "id": str(p.id), "text": p.text, "loss": loss, "tokens": count,
                        "truncated": truncated[k]})
        _record(out, p.item, loss, count, truncated[k])
        out.computed += 1
    log_file.append_many(records)
