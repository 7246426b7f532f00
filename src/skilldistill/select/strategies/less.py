"""The ``less`` strategy: the items whose training gradient points where the target set's does, after LESS.

Source: Xia, Malladi, Gururangan, Arora and Chen 2024, "LESS: Selecting Influential Data for Targeted
Instruction Tuning" (ICML 2024, arXiv:2402.04333). Each item's feature is the gradient of the student's mean
loss on its training example with respect to LoRA adapters (or the last layers' weights), reduced by a seeded
Rademacher projection to ``less_dim`` dimensions (8192 as LESS) and normalised
(:mod:`skilldistill.select.item_gradients`). An item's score is its mean cosine similarity to the target set's
items, i.e. the inner product of its unit feature with the mean of the target's unit features; the highest
scores are taken first (equal scores in an order drawn from the seed), ``max_tokens`` refusing too long examples
as in the other strategies.

The target set (``less_target``):

- ``weak_skills``: the eligible pool items under the student's weakest leaves by the skill profile (the leaf
  accuracies the ``skill`` strategy reads): the lowest ``less_weak_share`` of the leaves with eligible items
  (at least one leaf; equal accuracies in profile order), or with ``less_weak_accuracy`` the leaves at or below
  that accuracy. The target items are pool items, so they score high themselves: the selection is the weak
  leaves' items plus the items whose gradients resemble theirs.
- ``dev``: the items of ``less_target_file`` (a development split: .jsonl or .parquet with question and
  response, formatted like the pool), as LESS's few-shot validation set.

What differs from LESS: no warmup training (LESS trains the LoRA model on 5% of the pool for four epochs and
sums the scores over its checkpoints weighted by the learning rate); here one checkpoint, the base student, with
LoRA ``B = 0`` (the model is the student itself; see :mod:`~skilldistill.select.gradient_features`). Without an
optimizer state the Adam preconditioning of the training gradients is omitted: both sides are plain (SGD)
gradients. LESS scores each target task separately and takes the maximum over tasks; here the target is one set.
LESS takes the top 5% of the pool; here the budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ..index import LeafIndex
from ..item_gradients import GradientSettings, ItemFeatures, entries_of, item_features
from ..item_loss import pool_messages
from ..weights import LeafAccuracy
from .draw import Accept, Draw, Progress, take_in_order


@dataclass
class Target:
    """The target set: its kind, its items' features, what it was made of."""

    kind: str  # "weak_skills" | "dev"
    mean: np.ndarray  # the mean of the target's unit features
    items: int  # target items with a feature
    detail: dict[str, Any]
    in_target: np.ndarray | None = None  # weak_skills: per pool item, whether it is a target item


def weak_leaves(accuracy: np.ndarray, sizes: np.ndarray, share: float, at_most: float | None) -> np.ndarray:
    """The weak leaves among those with items (``sizes > 0``): accuracy at most ``at_most`` when given, else the
    lowest ``ceil(share * n)`` of them (at least one; equal accuracies in leaf order)."""
    with_items = np.flatnonzero(sizes > 0)
    if at_most is not None:
        return with_items[accuracy[with_items] <= at_most]
    order = with_items[np.argsort(accuracy[with_items], kind="stable")]
    return order[:max(1, math.ceil(share * len(with_items)))]


def draw_less(eligible: np.ndarray, scores: np.ndarray, budget: int, rng: np.random.Generator, *,
              accept: Accept | None = None, progress: Progress | None = None) -> Draw:
    """The eligible scored items (``scores`` not NaN), the highest score first, ties in a seeded order."""
    order = rng.permutation(np.flatnonzero(eligible & ~np.isnan(scores)))
    order = order[np.argsort(-scores[order], kind="stable")]  # stable: the seeded order breaks ties
    return take_in_order(order, budget, accept=accept, progress=progress, ran_out="the scored items ran out")


def mean_feature(features: ItemFeatures, slots: np.ndarray, dim: int) -> tuple[np.ndarray, int]:
    """The mean of the unit features of ``slots`` (those with one), and how many had one."""
    total, n = np.zeros(dim, dtype=np.float64), 0
    for part, rows in features.iter_rows(slots):
        total += rows.sum(axis=0, dtype=np.float64)
        n += len(part)
    return (total / n if n else total), n


def item_scores(features: ItemFeatures, eligible: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per pool item: its unit feature's inner product with ``target`` (its mean cosine to the target items);
    NaN without a feature."""
    scores = np.full(len(eligible), np.nan)
    t = target.astype(np.float32)
    for part, rows in features.iter_rows(np.flatnonzero(eligible)):
        scores[part] = rows @ t
    return scores


def _stats(values: np.ndarray) -> dict[str, Any] | None:
    if len(values) == 0:
        return None
    return {"min": round(float(values.min()), 6), "median": round(float(np.median(values)), 6),
            "mean": round(float(values.mean()), 6), "max": round(float(values.max()), 6)}


class LessSelection:
    """The ``less`` strategy as the stage runs it, over scores computed once for the pool."""

    name = "less"

    def __init__(self, features: ItemFeatures, scores: np.ndarray, target: Target, model: dict[str, Any]) -> None:
        self.features = features
        self.scores = scores
        self.target = target
        self.model = model  # what the report says of the model and the settings

    def budget(self, eligible: np.ndarray, budget: int) -> int:
        return budget

    def draw(self, eligible: np.ndarray, budget: int, rng: np.random.Generator, *, accept: Accept | None = None,
             progress: Progress | None = None, part: str = "all") -> Draw:
        return draw_less(eligible, self.scores, budget, rng, accept=accept, progress=progress)

    def report(self, eligible: np.ndarray, selected: np.ndarray, id_of: Callable[[int], Any]) -> dict[str, Any]:
        """The model and settings, what was computed (and from where), the target, the scores of the pool and the
        selection."""
        f = self.features
        scored = eligible & ~np.isnan(self.scores)
        target = dict(self.target.detail, items=self.target.items)
        if self.target.in_target is not None:
            target["selected_from_target"] = int(self.target.in_target[selected].sum())
        return {
            **self.model, "order": "highest mean cosine to the target first", "target": target,
            "scored": int(scored.sum()), "computed": f.computed, "from_cache": f.from_cache,
            "without_text": f.without_text, "no_response_tokens": f.no_response_tokens, "truncated": f.truncated,
            "gradient_dims": f.d, "group_items": f.group_items, "peak_feature_bytes": f.peak_bytes,
            "pool_scores": _stats(self.scores[scored]), "selected_scores": _stats(self.scores[selected]),
            "seconds": round(f.seconds, 3),
            "items_per_s": round(f.computed / f.seconds, 3) if f.seconds > 0 else None,
            "tokens_per_s": round(f.tokens_forward / f.seconds, 1) if f.seconds > 0 else None,
            "note": "score: the mean cosine similarity of the item's projected gradient to the target items'; seconds "
                    "and items_per_s: the gradient passes and projections of this run (0 when every feature came "
                    "from item_gradients/)",
        }


def read_dev_items(path: str | Path, fmt: Any) -> list[tuple[Any, list[dict[str, str]] | None]]:
    """(id, formatted messages or None) of each row of a development file (.jsonl or .parquet with question and
    response; id: its ``id`` column, else ``dev:<row>``)."""
    import pyarrow.parquet as pq

    from ...format.examples import build_messages

    p = Path(path)
    if not p.is_file():
        raise InputError("development items (less_target_file) not found", file=p)
    if p.suffix.lower() == ".parquet":
        rows = pq.read_table(p).to_pylist()
    else:
        rows = []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"not a JSON line ({e.msg})", file=p, row=n) from None
    for col in ("question", "response"):
        if rows and col not in rows[0]:
            raise InputError(f"missing column {col!r}", file=p, field=col)
    out = []
    for n, r in enumerate(rows):
        q, a = r.get("question"), r.get("response")
        ok = isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()
        out.append((r.get("id", f"dev:{n}"), build_messages(q, a, r.get("skills"), fmt) if ok else None))
    return out


@dataclass
class LessRequest:
    """What the strategy needs besides the pool and the model: the gradient settings and the target set's."""

    settings: GradientSettings
    batch_size: int
    fmt: Any  # the ExampleFormat of the examples
    target: str  # "weak_skills" | "dev"
    target_file: str | None = None
    weak_share: float = 0.2
    weak_accuracy: float | None = None
    index: LeafIndex | None = None  # weak_skills: the eligible pool's leaves
    accuracy: LeafAccuracy | None = None  # weak_skills: their accuracies by the profile


def weak_skills_target(features: ItemFeatures, eligible: np.ndarray, req: LessRequest) -> Target:
    """The eligible items under the weak leaves; refused with the counts when none of them has a feature."""
    from ...tree import CHAIN_SEP

    assert req.index is not None and req.accuracy is not None
    index, acc = req.index, req.accuracy.accuracy
    sizes = index.sizes()
    leaves = weak_leaves(acc, sizes, req.weak_share, req.weak_accuracy)
    in_target = np.zeros(len(eligible), dtype=bool)
    for leaf in leaves.tolist():
        in_target[index.items[index.ptr[leaf]:index.ptr[leaf + 1]]] = True
    in_target &= eligible
    mean, n = mean_feature(features, np.flatnonzero(in_target), req.settings.dim)
    n_with = int((sizes > 0).sum())
    how = (f"accuracy at most {req.weak_accuracy:g}" if req.weak_accuracy is not None
           else f"the lowest {req.weak_share:g} of the leaves")
    if n == 0:
        lowest = f"{float(acc[sizes > 0].min()):.3f}" if n_with else "none"
        raise InputError(f"less_target weak_skills: {len(leaves)} of the {n_with} leaves with eligible items are weak "
                         f"({how}; the lowest accuracy is {lowest}), holding {int(in_target.sum())} eligible items, "
                         f"{n} of them with a gradient feature", field="less_target")
    detail = {"kind": "weak_skills", "rule": how, "leaves": len(leaves), "leaves_with_items": n_with,
              "leaf_names": [CHAIN_SEP.join(index.keys[lf]) for lf in leaves.tolist()[:50]],
              "accuracy": [round(float(acc[lf]), 6) for lf in leaves.tolist()[:50]], "eligible_items": int(in_target.sum())}
    return Target("weak_skills", mean, n, detail, in_target)


def dev_target(gm: Any, folder: Path, req: LessRequest, bar: Any) -> Target:
    """The development items' features (computed, or from the cache); refused with the counts when none has one."""
    assert req.target_file is not None
    rows = read_dev_items(req.target_file, req.fmt)
    task = bar.add_task("gradient features (development items)", total=None)
    dev = item_features(entries_of(rows), len(rows), gm, req.settings, folder, batch_size=req.batch_size,
                        progress=lambda k: bar.advance(task, k), on_total=lambda total: bar.update(task, total=total))
    mean, n = mean_feature(dev, np.arange(len(rows)), req.settings.dim)
    if n == 0:
        raise InputError(f"none of the {len(rows)} development items has a gradient feature ({dev.without_text} "
                         f"without a question or response, {dev.no_response_tokens} with no response token within "
                         f"{req.settings.max_length} tokens)", file=req.target_file, field="less_target_file")
    detail = {"kind": "dev", "file": str(req.target_file), "rows": len(rows), "computed": dev.computed,
              "from_cache": dev.from_cache}
    return Target("dev", mean, n, detail)


def prepare_less(src: Path, eligible: np.ndarray, gm: Any, folder: Path, req: LessRequest, *,
                 progress: bool = True) -> LessSelection:
    """The features of the eligible items and of the target (under progress bars; those in ``folder`` reused),
    then the scores and the strategy."""
    from ...progress import StageProgress

    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("gradient features (student)", total=None)
        features = item_features(lambda rows: pool_messages(src, eligible, req.fmt, rows), len(eligible), gm,
                                 req.settings, folder, batch_size=req.batch_size,
                                 progress=lambda k: bar.advance(task, k),
                                 on_total=lambda total: bar.update(task, total=total))
        n_eligible = int(eligible.sum())
        if n_eligible and not features.has[eligible].any():
            raise InputError(f"none of the {n_eligible} eligible items has a gradient feature ({features.without_text} "
                             f"without a question or response, {features.no_response_tokens} with no response token "
                             f"within {req.settings.max_length} tokens)", file=src, field="response")
        target = (weak_skills_target(features, eligible, req) if req.target == "weak_skills"
                  else dev_target(gm, folder, req, bar))
    s = req.settings
    model = {"model": gm.lm.name, "device": gm.lm.device, "dtype": gm.lm.dtype, "max_length": s.max_length,
             "batch_size": req.batch_size, "example_style": req.fmt.style, "params": s.params,
             **({"lora_rank": s.rank} if s.params == "lora" else {"layers": s.layers}), "dim": s.dim,
             "projection_seed": s.seed, "cache": folder.name}
    return LessSelection(features, item_scores(features, eligible, target.mean), target, model)
