"""The distilled backend's sample: item features (sentence embeddings, kept by text hash), a
sample stratified over their k-means clusters, and its hold-out split."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..artifacts import atomic_path, write_json

if TYPE_CHECKING:
    from ..llm.embedding import EmbeddingAttributor

log = logging.getLogger(__name__)

FEATURES_FILE = "features.npz"
SAMPLE_FILE = "sample.json"


def item_features(attributor: EmbeddingAttributor, texts: Sequence[str], hashes: Sequence[str], path: Path,
                  progress: Callable[[int], None] | None = None, chunk: int = 2048) -> np.ndarray:
    """One normalised embedding per item (rows in input order), kept in ``path`` by text
    hash and model: a rerun or a grown corpus embeds only the new texts."""
    known = _known_features(attributor, path)
    missing = list(dict.fromkeys(h for h in hashes if h not in known))
    if missing:
        by_hash = dict(zip(hashes, texts, strict=True))
        for start in range(0, len(missing), chunk):
            part = missing[start:start + chunk]
            known.update(zip(part, attributor.encode([by_hash[h] for h in part]), strict=True))
            if progress:
                progress(len(part))
        keys = list(dict.fromkeys(hashes))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.array(keys), vectors=np.stack([known[h] for h in keys]).astype(np.float32),
                         model=np.array(attributor.model_id))
    elif progress:
        progress(len(hashes))
    return np.stack([known[h] for h in hashes]).astype(np.float32)


def _known_features(attributor: EmbeddingAttributor, path: Path) -> dict[str, np.ndarray]:
    """Text hash -> vector of the features file, when it holds this model's."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["model"]) == attributor.model_id:
                return dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    except (OSError, ValueError, KeyError) as e:  # damaged: recomputed, never trusted
        log.warning("%s unreadable (%s): recomputing the features", path, e)
    return {}


def stratified_sample(features: np.ndarray, size: int, strata: int, seed: int) -> np.ndarray:
    """Indices of ``size`` items drawn from every k-means cluster of the features in
    proportion to its size (largest remainders), sorted. All items when ``size >= n``."""
    n = len(features)
    if size >= n:
        return np.arange(n)
    from sklearn.cluster import MiniBatchKMeans

    k = max(1, min(strata, size, n))
    labels = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit_predict(features)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=k)
    quota = counts * size / n
    take = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - take), kind="stable")[: size - int(take.sum())]:
        take[j] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False) for c, t in enumerate(take) if t]
    return np.sort(np.concatenate(picked))


def holdout_split(sample: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of the sample; at least one training item."""
    n_out = min(int(round(len(sample) * fraction)), len(sample) - 1)
    rng = np.random.default_rng(seed + 1)
    out = np.zeros(len(sample), dtype=bool)
    out[rng.choice(len(sample), size=n_out, replace=False)] = True
    return np.sort(sample[~out]), np.sort(sample[out])


def write_sample(out: Path, ids: Sequence[str], train: Sequence[int], held_out: Sequence[int]) -> None:
    write_json(out / SAMPLE_FILE, {"train": [ids[i] for i in train], "held_out": [ids[i] for i in held_out]})
