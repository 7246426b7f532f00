"""The ``less`` strategy's per-item gradient features: for each item, the gradient of the student's mean loss on
the item's training example with respect to a parameter set (LoRA adapters or the last layers,
:mod:`~skilldistill.select.gradient_features`), reduced to ``dim`` dimensions by a seeded random projection
(:mod:`~skilldistill.select.projection`) and scaled to unit length.

The example is exactly the one :mod:`~skilldistill.select.item_loss` scores (the item formatted with the
selection's ``ExampleFormat``, rendered with the training chat template, cut at ``max_length`` tokens; the loss
over the assistant tokens the template marks), built with its helpers; an item without a question or response,
or whose prompt alone fills ``max_length``, has no feature.

Batched: ``batch_size`` examples a forward and backward pass (right-padded, sorted by length within chunks of
items), their per-example gradients (``d`` floats each) gathered into a group, and the group projected at once,
so that a projection too large to keep (``d x dim`` above 256 MiB as float32) is regenerated once per group, not
per batch. A group is ``_GROUP_ITEMS`` (64) items when the projection is kept, else as many as fit in
``_GROUP_BYTES`` (256 MiB) of gradients, at most 512, a multiple of the batch size either way. Peak memory beyond the model
and its batch: the group's gradients (<= 256 MiB, or one batch when a single batch is larger) plus the
projection (<= 256 MiB kept, else one 32 MiB block at ``dim`` 8192).

Resumable: each finished group is written as one shard, ``item_gradients/<key>/<name>.npy`` (float16, one unit
row per item, written atomically), then its items are appended to ``item_gradients/index.jsonl``
(:class:`~skilldistill.artifacts.AppendLog`), keyed by the model's identity (its files' names, sizes,
modification times), the dtype, template and length (as ``item_losses.jsonl``) and the gradient settings
(parameters, rank or layers, dim, projection seed); an item is found there by its id and the hash of its
formatted messages. A killed run resumes with the items not done (a shard written without its index records is
written again); a rerun with another selection seed or budget computes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import AppendLog, atomic_path, hash_obj
from .gradient_features import GradientModel, per_example_gradients
from .item_loss import Example, render, settings_key
from .projection import Projection

_CHUNK_ITEMS = 1024  # items rendered, sorted by length and computed together (their texts in memory)
_GROUP_ITEMS = 64  # items a shard holds when the projection is kept in memory
_GROUP_ITEMS_REGENERATED = 512  # at most, when the projection is regenerated per group
_GROUP_BYTES = 256 * 2**20  # per-example gradients gathered before projecting, when it is regenerated per group
INDEX = "index.jsonl"

# (slot, id, formatted messages or None without a question or response); ``rows`` limits it to those slots.
Entries = Callable[[set[int] | None], Iterator[tuple[int, Any, list[dict[str, str]] | None]]]


@dataclass(frozen=True)
class GradientSettings:
    params: str  # "lora" | "last_layers"
    rank: int
    layers: int
    dim: int
    seed: int  # the LoRA A matrices and the projection
    max_length: int

    def key(self, gm: GradientModel) -> str:
        """What a cached feature depends on besides the item's text."""
        detail = {"rank": self.rank} if self.params == "lora" else {"layers": self.layers}
        return hash_obj({"loss": settings_key(gm.lm, self.max_length), "params": self.params, **detail,
                         "dim": self.dim, "seed": self.seed, "d": gm.d})[:16]


@dataclass
class ItemFeatures:
    """Where each slot's unit feature is (a shard and its row), and what the pass did."""

    folder: Path
    shard: np.ndarray  # per slot: index into ``shards`` (-1: no feature)
    row: np.ndarray
    shards: list[str] = field(default_factory=list)
    without_text: int = 0
    no_response_tokens: int = 0
    truncated: int = 0
    from_cache: int = 0
    computed: int = 0
    tokens_forward: int = 0
    seconds: float = 0.0
    d: int = 0  # gradient dimensions before projection
    group_items: int = 0
    peak_bytes: int = 0  # the gradients gathered and the projection at their peak (not the model)
    _shard_of: dict[str, int] = field(default_factory=dict)

    @property
    def has(self) -> np.ndarray:
        return self.shard >= 0

    def place(self, slot: int, shard: str, row: int) -> None:
        if shard not in self._shard_of:
            self._shard_of[shard] = len(self.shards)
            self.shards.append(shard)
        self.shard[slot], self.row[slot] = self._shard_of[shard], row

    def iter_rows(self, slots: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(slots, their unit features as float32 rows), one shard at a time (only one in memory)."""
        slots = np.asarray(slots, dtype=np.int64)
        slots = slots[self.shard[slots] >= 0]
        by_shard = np.argsort(self.shard[slots], kind="stable")
        slots = slots[by_shard]
        bounds = np.flatnonzero(np.diff(self.shard[slots])) + 1
        for part in np.split(slots, bounds) if len(slots) else []:
            data = np.load(self.folder / self.shards[int(self.shard[part[0]])])
            yield part, data[self.row[part]].astype(np.float32)


def _read_index(log_file: AppendLog, key: str, folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The index's records of ``key`` whose shard is there."""
    out, present = {}, {}
    for r in log_file.iter():
        if r.get("key") != key:
            continue
        shard = r.get("shard")
        if shard is not None and shard not in present:
            present[shard] = (folder / shard).is_file()
        if shard is None or present[shard]:
            out[(str(r.get("id")), str(r.get("text")))] = r
    return out


def item_features(entries: Entries, n_slots: int, gm: GradientModel, settings: GradientSettings, folder: Path, *,
                  batch_size: int = 8, progress: Callable[[int], None] | None = None,
                  on_total: Callable[[int], None] | None = None) -> ItemFeatures:
    """The unit feature of every entry with a question and a response: from ``folder`` when it holds it, else
    computed in batches, each group written as a shard as soon as it is done. ``on_total`` is told how many items
    will be computed, ``progress`` how many each batch computed."""
    out = ItemFeatures(folder, np.full(n_slots, -1, dtype=np.int64), np.zeros(n_slots, dtype=np.int64), d=gm.d)
    key = settings.key(gm)
    log_file = AppendLog(folder / INDEX)
    cached = _read_index(log_file, key, folder)
    pending: dict[int, tuple[Any, str]] = {}
    for slot, item_id, messages in entries(None):
        if messages is None:
            out.without_text += 1
            continue
        text = hash_obj(messages)[:32]
        hit = cached.get((str(item_id), text))
        if hit is None:
            pending[slot] = (item_id, text)
        else:
            _record(out, slot, hit)
            out.from_cache += 1
    if on_total is not None:
        on_total(len(pending))
    if pending:
        run = _GroupWriter(gm, settings, key, folder, log_file, out, batch_size)
        try:
            run.compute(entries, pending, progress)
        finally:
            log_file.close()
    return out


def _record(out: ItemFeatures, slot: int, r: dict[str, Any]) -> None:
    if r.get("shard") is None:
        out.no_response_tokens += 1
        return
    out.place(slot, str(r["shard"]), int(r["row"]))
    out.truncated += int(bool(r.get("truncated")))


def group_items(d: int, batch_size: int, projection_kept: bool) -> int:
    """Items gathered before projecting: a multiple of the batch size (see the module docstring)."""
    target = _GROUP_ITEMS if projection_kept else min(_GROUP_ITEMS_REGENERATED, _GROUP_BYTES // (4 * max(d, 1)))
    return batch_size * max(1, target // batch_size)


class _GroupWriter:
    """Computes the pending items batch by batch, gathers their gradients, projects and writes each group."""

    def __init__(self, gm: GradientModel, settings: GradientSettings, key: str, folder: Path, log_file: AppendLog,
                 out: ItemFeatures, batch_size: int) -> None:
        self.gm, self.settings, self.key, self.folder, self.log, self.out = gm, settings, key, folder, log_file, out
        self.batch_size = batch_size
        self.projection = Projection(gm.d, settings.dim, settings.seed, device=gm.lm.device)
        self.group = group_items(gm.d, batch_size, self.projection.cached)
        out.group_items = self.group
        self.rows: list[Any] = []  # per-example gradient tensors of the group
        self.items: list[dict[str, Any]] = []  # the group's records (no shard yet)
        self.empty: list[dict[str, Any]] = []  # items without response tokens (no feature)

    def compute(self, entries: Entries, pending: dict[int, tuple[Any, str]],
                progress: Callable[[int], None] | None) -> None:
        chunk: list[tuple[int, list[dict[str, str]]]] = []
        for slot, _, messages in entries(set(pending)):
            assert messages is not None
            chunk.append((slot, messages))
            if len(chunk) >= _CHUNK_ITEMS:
                self._chunk(chunk, pending, progress)
                chunk = []
        if chunk:
            self._chunk(chunk, pending, progress)
        self._flush()

    def _chunk(self, chunk: list[tuple[int, list[dict[str, str]]]], pending: dict[int, tuple[Any, str]],
               progress: Callable[[int], None] | None) -> None:
        """Render, sort by length (longest first: a batch too large for memory fails at once), run the batches."""
        max_length = self.settings.max_length
        examples = render(self.gm.lm, [m for _, m in chunk], max_length + 1)  # one more token: tells a cut example
        order = sorted(range(len(chunk)), key=lambda k: -len(examples[k][0]))
        for start in range(0, len(order), self.batch_size):
            picked = order[start:start + self.batch_size]
            self._batch([(chunk[k][0], *pending[chunk[k][0]], examples[k]) for k in picked])
            if progress is not None:
                progress(len(picked))

    def _batch(self, batch: list[tuple[int, Any, str, Example]]) -> None:
        """One forward and backward pass over the batch's examples that have response tokens."""
        max_length, out = self.settings.max_length, self.out
        cut = [(ids[:max_length], mask[:max_length]) for *_, (ids, mask) in batch]
        runnable = [k for k, (_, mask) in enumerate(cut) if any(mask[1:])]
        if runnable:
            t0 = time.perf_counter()
            grads, nll = per_example_gradients(self.gm, [cut[k] for k in runnable])
            out.seconds += time.perf_counter() - t0
            out.tokens_forward += sum(len(cut[k][0]) for k in runnable)
            self.rows.append(grads)
        done = dict(zip(runnable, nll if runnable else [], strict=True))
        for k, (slot, item_id, text, (ids, _)) in enumerate(batch):
            rec = {"key": self.key, "id": str(item_id), "text": text, "slot": slot,
                   "truncated": len(ids) > max_length}
            if k in done:
                total, count = done[k]
                self.items.append(rec | {"tokens": count, "loss": total / count})
            else:
                self.empty.append(rec | {"shard": None, "tokens": 0, "loss": None})
        if len(self.items) >= self.group:
            self._flush()

    def _flush(self) -> None:
        """Project the group, write its shard, then its index records (an item counts once both are there)."""
        import torch

        out = self.out
        records = self.empty
        if self.items:
            t0 = time.perf_counter()
            grads = torch.cat(self.rows)
            out.peak_bytes = max(out.peak_bytes, grads.numel() * 4 + self.projection.peak_bytes)
            feats = self.projection(grads)
            norms = feats.norm(dim=1, keepdim=True)
            unit = (feats / norms.clamp(min=1e-30)).cpu().numpy().astype(np.float16)
            out.seconds += time.perf_counter() - t0
            name = f"{self.key}/{hash_obj([(r['id'], r['text']) for r in self.items])[:16]}.npy"
            with atomic_path(self.folder / name) as tmp, open(tmp, "wb") as f:
                np.save(f, unit)
            norm_list = norms[:, 0].tolist()
            records = records + [r | {"shard": name, "row": i, "norm": norm_list[i]} for i, r in enumerate(self.items)]
        for r in records:
            slot = r.pop("slot")
            _record(out, slot, r)
            out.computed += 1
        if records:
            self.log.append_many(records)
        self.rows, self.items, self.empty = [], [], []


def entries_of(rows: Iterable[tuple[Any, list[dict[str, str]] | None]]) -> Entries:
    """Entries over an in-memory list of (id, messages) (a development set): slot = position."""
    listed = list(rows)

    def entries(only: set[int] | None) -> Iterator[tuple[int, Any, list[dict[str, str]] | None]]:
        for slot, (item_id, messages) in enumerate(listed):
            if only is None or slot in only:
                yield slot, item_id, messages

    return entries
