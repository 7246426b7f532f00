"""The ``loss`` strategy: the items the student finds hardest to predict, by its loss on them.

Each eligible item's score is the student's mean negative log-likelihood per token of the teacher's
response given the question (cross-entropy over the assistant tokens of the training example,
:mod:`skilldistill.select.item_loss`), computed once before training. Then either:

- the highest losses first (default), equal losses in an order drawn from the seed; or
- with ``loss_band: [low, high]``, uniformly at random (from the seed) among the items whose loss
  lies between the ``low`` and ``high`` quantiles of the pool's losses (inclusive); the others are
  not eligible.

An item without a question or response, or whose prompt alone fills the scored length (no response
token left to score), is never taken. ``max_tokens`` still applies: a too long example is refused
and the next one taken.

Sources. The score is the "conditioned answer score" s(A|Q) of Li et al. 2024, "From Quantity to
Quality: Boosting LLM Performance with Self-Guided Data Selection for Instruction Tuning" (NAACL
2024, arXiv:2308.12032), the average cross-entropy of the answer tokens given the instruction;
their IFD divides it by the answer's loss without the instruction, which this strategy does not.
Li et al. 2024, "Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning" (ACL
2024, arXiv:2402.00530) find that a small model's perplexity and IFD rank data consistently with a
large one's, so ``loss_model`` may be a smaller model of the student's family (same tokenizer not
required: each model scores with its own). DataFlex (OpenDCAI, a data-centric training framework on
LLaMA-Factory) has a ``loss`` selector scoring each sample by the model's loss during training and
sampling with a focus on the low, medium or high loss quantiles; here the loss is measured once,
with the base student, before training, and the band is an explicit pair of quantiles.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ..item_loss import ItemLosses, LossModel, item_losses
from .draw import Accept, Draw, Progress, take_in_order


def band_bounds(losses: np.ndarray, band: tuple[float, float]) -> tuple[float, float]:
    """The losses at the band's quantiles (numpy's linear interpolation) of the scored ``losses``."""
    lo, hi = np.quantile(losses, [band[0], band[1]])
    return float(lo), float(hi)


def draw_loss(eligible: np.ndarray, losses: np.ndarray, budget: int, rng: np.random.Generator, *,
              bounds: tuple[float, float] | None = None, accept: Accept | None = None,
              progress: Progress | None = None) -> Draw:
    """The eligible scored items (``losses`` not NaN): the highest loss first, ties in a seeded order;
    with ``bounds`` (inclusive), the items inside them in a seeded uniform order."""
    scored = eligible & ~np.isnan(losses)
    if bounds is not None:
        with np.errstate(invalid="ignore"):
            scored &= (losses >= bounds[0]) & (losses <= bounds[1])
    order = rng.permutation(np.flatnonzero(scored))
    if bounds is None:
        order = order[np.argsort(-losses[order], kind="stable")]  # stable: the seeded order breaks ties
    return take_in_order(order, budget, accept=accept, progress=progress,
                         ran_out="the scored items inside the loss band ran out" if bounds is not None
                         else "the scored items ran out")


def _stats(values: np.ndarray) -> dict[str, Any] | None:
    if len(values) == 0:
        return None
    return {"min": round(float(values.min()), 6), "median": round(float(np.median(values)), 6),
            "mean": round(float(values.mean()), 6), "max": round(float(values.max()), 6)}


class LossSelection:
    """The ``loss`` strategy as the stage runs it, over losses measured once for the pool."""

    name = "loss"

    def __init__(self, scores: ItemLosses, band: tuple[float, float] | None, model: dict[str, Any]) -> None:
        self.scores = scores
        self.band = band
        scored = scores.losses[~np.isnan(scores.losses)]
        self.bounds = band_bounds(scored, band) if band is not None and len(scored) else None
        self.model = model  # what the report says of the model

    @property
    def losses(self) -> np.ndarray:
        return self.scores.losses

    def budget(self, eligible: np.ndarray, budget: int) -> int:
        return budget

    def draw(self, eligible: np.ndarray, budget: int, rng: np.random.Generator, *, accept: Accept | None = None,
             progress: Progress | None = None, part: str = "all") -> Draw:
        return draw_loss(eligible, self.losses, budget, rng, bounds=self.bounds, accept=accept, progress=progress)

    def report(self, eligible: np.ndarray, selected: np.ndarray, id_of: Callable[[int], Any]) -> dict[str, Any]:
        """The model, what was scored (and from where), the losses of the pool and of the selection, the band."""
        s = self.scores
        scored = eligible & ~np.isnan(self.losses)
        out: dict[str, Any] = {
            **self.model, "order": "uniform inside the loss band" if self.band is not None else "highest loss first",
            "scored": int(scored.sum()), "computed": s.computed, "from_cache": s.from_cache,
            "without_text": s.without_text, "no_response_tokens": s.no_response_tokens, "truncated": s.truncated,
            "pool_losses": _stats(self.losses[scored]), "selected_losses": _stats(self.losses[selected]),
            "seconds": round(s.seconds, 3),
            "items_per_s": round(s.computed / s.seconds, 3) if s.seconds > 0 else None,
            "tokens_per_s": round(s.tokens_forward / s.seconds, 1) if s.seconds > 0 else None,
        }
        if self.band is not None:
            in_band = int(np.sum(scored & (self.losses >= self.bounds[0]) & (self.losses <= self.bounds[1]))) \
                if self.bounds is not None else 0
            out["band"] = {"quantiles": list(self.band), "losses": None if self.bounds is None else
                           [round(b, 6) for b in self.bounds], "items": in_band}
        out["note"] = ("loss: the mean negative log-likelihood per response token (nats) under the model, of the "
                       "training example; seconds and items_per_s: the forward passes of this run (0 when every "
                       "loss came from item_losses.jsonl)")
        return out


def prepare_loss(src: Path, eligible: np.ndarray, lm: LossModel, cache_file: Path, *, fmt: Any, max_length: int,
                 batch_size: int, band: tuple[float, float] | None, progress: bool = True) -> LossSelection:
    """Score the eligible items (under a progress bar; those in ``cache_file`` reused), then the strategy."""
    from ...progress import StageProgress

    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("scoring items (student loss)", total=None)
        scores = item_losses(src, eligible, fmt, lm, cache_file, max_length=max_length, batch_size=batch_size,
                             progress=lambda k: bar.advance(task, k),
                             on_total=lambda total: bar.update(task, total=total))
    n_eligible = int(eligible.sum())
    if n_eligible and not np.any(~np.isnan(scores.losses[eligible])):
        raise InputError(f"none of the {n_eligible} eligible items could be scored ({scores.without_text} without a "
                         f"question or response, {scores.no_response_tokens} with no response token within "
                         f"{max_length} tokens)", file=src, field="response")
    model = {"model": lm.name, "device": lm.device, "dtype": lm.dtype, "max_length": max_length,
             "batch_size": batch_size, "example_style": fmt.style, "cache": cache_file.name}
    return LossSelection(scores, band, model)
