"""The demo's seed labels: the generator's true skills of a seeded share of the pool, standing in
for the few hundred items a user labels by hand (or offline with any model) to train the
``distilled`` attributor's classifiers (``demo.attribution: seed-labels``).

One JSON object per line, ``{"id": ..., "skills": ["Algebra->Linear equations", ...]}``: the
labels-file form ``annotate --train-labels`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..artifacts import write_manifest, write_text
from .attribution_config import SEED_LABELS_FILE


def write_seed_labels(corpus: Path, out_dir: Path, share: float, seed: int) -> int:
    """Write ``out_dir/seed_labels.jsonl`` for ``share`` of the pool's items (at least one), drawn with
    ``seed``; returns how many."""
    table = pq.read_table(corpus, columns=["id", "true_skills"])
    ids, chains = table.column("id").to_pylist(), table.column("true_skills").to_pylist()
    n = max(1, round(share * len(ids)))
    picked = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    lines = [json.dumps({"id": ids[i], "skills": ["->".join(c) for c in chains[i]]}) for i in picked.tolist()]
    write_text(out_dir / SEED_LABELS_FILE, "".join(line + "\n" for line in lines))
    write_manifest(out_dir, config={"share": share, "seed": seed}, inputs={}, counts={"labelled_items": n,
                   "pool_items": len(ids)}, artifacts=[SEED_LABELS_FILE])
    return n


__all__ = ["write_seed_labels"]
