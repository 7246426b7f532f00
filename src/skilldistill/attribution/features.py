"""The distilled backend's item features: MiniLM sentence embeddings (``sampling.item_features``,
kept by text hash) or TF-IDF (``distilled.features: tfidf``), and the identity each is known by
in the classifiers' training-set hash."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..artifacts import hash_obj

log = logging.getLogger(__name__)

TFIDF_RULE = "tfidf-word12-sublinear-v1"
TFIDF_MAX_FEATURES = 4096  # dense float32: 16 KB per item (1.6 GB at 100K items)


def tfidf_features(texts: Sequence[str]) -> tuple[np.ndarray, str]:
    """One TF-IDF row per text (word 1-2-grams, sublinear tf, l2-normalised, the
    ``TFIDF_MAX_FEATURES`` most frequent terms seen in at least 2 texts), fit on ``texts``
    themselves (the corpus: no other data), as a dense array; and the features' identity:
    the rule and a hash of the fitted vocabulary and idf (the same corpus gives the same
    features, a grown corpus new ones)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(texts) >= 20 else 1,
                          max_features=TFIDF_MAX_FEATURES, dtype=np.float32)
    x = vec.fit_transform(list(texts)).toarray().astype(np.float32)
    vocab = sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])
    ident = hash_obj({"terms": [t for t, _ in vocab], "idf": [round(float(v), 5) for v in vec.idf_]})
    log.info("distilled: TF-IDF features, %d terms over %d texts", x.shape[1], len(texts))
    return x, f"{TFIDF_RULE}:{ident[:16]}"
