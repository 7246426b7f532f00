"""The ``distilled`` attribution backend: an LLM labels a sample, per-node classifiers learn
from it and label the rest, unsure decisions go back to the LLM.

Top-down LLM attribution costs (calls per item) x (items): about 2 calls per item on the
paper's skill_mix tree, 14.7 on EvalTree's. This backend spends those calls on a stratified
sample only (``distilled.sample_size`` items, default 2,000):

1. **Features**: every item text is embedded once with the embedding backend's sentence
   model (all-MiniLM-L6-v2 by default), kept in ``features.npz`` by text hash.
2. **Sample**: items are clustered (scikit-learn ``MiniBatchKMeans``, ``strata`` clusters)
   and the sample is drawn from every cluster in proportion to its size; a
   ``holdout_fraction`` of it is kept out of training.
3. **LLM walk** of the sample: the normal top-down walk of the chosen LLM backend (openai,
   vllm or transformers), decisions cached in ``calls.jsonl`` as for that backend.
4. **Per-node classifiers**: for every inner node the training items reached, one
   logistic regression per child (scikit-learn, L2; ``C`` by cross-validated log loss, so its
   probabilities are calibrated) on the standardised features predicts whether
   the LLM chose that child; a child always or never chosen there gets a constant (smoothed)
   probability. A node with fewer than ``min_examples`` training decisions gets no
   classifier: its decisions all go to the LLM. Weights are written as plain arrays
   (``classifiers.npz`` + ``classifiers.json``, with the training-set hash), never pickled.
5. **Distilled walk** of every other item (and of the held-out items, to measure them): at
   each node the children with probability >= 0.5 are chosen. When a child's probability
   falls inside ``uncertain_band`` (default 0.2-0.8), or the node has no classifier, the
   decision is the LLM's: taken from the cache when the LLM already answered that very
   question (held-out items), else asked. Decisions are cached in ``calls.jsonl`` under
   keys that carry the training-set hash, so a rerun with the same sample resumes and a
   changed sample asks again.

The summary's ``distilled`` section reports the sample, the classifiers, the share of
decisions that fell back to the LLM, the held-out agreement with the LLM's own labels
(leaf chains and top-level skills, precision and recall, classifier-only and with
fallback), and the LLM calls made versus labelling every item with the LLM.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .artifacts import atomic_path, write_json
from .tree import Chain, SkillTree

if TYPE_CHECKING:
    from .annotate import AnnotateConfig, ChatDecider, Question, _Keys
    from .llm.embedding import EmbeddingAttributor

log = logging.getLogger(__name__)

FEATURES_FILE = "features.npz"
CLASSIFIERS_FILE = "classifiers.npz"
CLASSIFIERS_INDEX = "classifiers.json"
SAMPLE_FILE = "sample.json"
CLASSIFIER_RULE = "logistic-ovr-standardised-v1"


class DistilledConfig(BaseModel):
    """Settings of the ``distilled`` backend (the ``annotate.distilled`` section)."""

    model_config = ConfigDict(extra="forbid")

    sample_size: int = Field(2000, ge=1, description="Items the LLM labels (stratified); the rest get classifier labels.")
    holdout_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the sample kept out of training, to measure agreement.")
    strata: int = Field(32, ge=1, description="Clusters of the item embeddings the sample is drawn from in proportion.")
    min_examples: int = Field(30, ge=1, description="A node with fewer training decisions gets no classifier (the LLM decides).")
    uncertain_band: tuple[float, float] = Field(
        (0.2, 0.8), description="A child probability strictly inside this band sends the decision to the LLM.")
    C: float | None = Field(
        None, gt=0, description="Inverse L2 strength of each logistic regression (scikit-learn's C) on standardised "
        "features; null: chosen per (node, child) from C_grid by 3-fold cross-validated log loss, so the probabilities "
        "the uncertain band reads are calibrated.")
    C_grid: list[float] = Field([0.003, 0.01, 0.03, 0.1, 0.3, 1.0], min_length=1, description="Candidates when C is null.")
    seed: int = Field(0, description="Sample, hold-out split and clustering.")

    @model_validator(mode="after")
    def _check_band(self) -> DistilledConfig:
        lo, hi = self.uncertain_band
        if not 0 <= lo <= 0.5 <= hi <= 1:
            raise ValueError(f"uncertain_band must satisfy 0 <= low <= 0.5 <= high <= 1, got {list(self.uncertain_band)}")
        return self


# ----------------------------------------------------------------------------------
# Features and the sample
# ----------------------------------------------------------------------------------
def item_features(attributor: EmbeddingAttributor, texts: Sequence[str], hashes: Sequence[str], path: Path,
                  progress: Callable[[int], None] | None = None, chunk: int = 2048) -> np.ndarray:
    """One normalised embedding per item (rows in input order), kept in ``path`` by text
    hash and model: a rerun or a grown corpus embeds only the new texts."""
    known: dict[str, np.ndarray] = {}
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["model"]) == attributor.model_id:
                    known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
        except (OSError, ValueError, KeyError) as e:  # damaged: recomputed, never trusted
            log.warning("%s unreadable (%s): recomputing the features", path, e)
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


# ----------------------------------------------------------------------------------
# Per-node classifiers
# ----------------------------------------------------------------------------------
@dataclass
class NodeModel:
    path: Chain
    children: list[str]
    examples: int
    positives: list[int]
    weights: np.ndarray | None  # (children, dim); None: too few examples, the LLM decides here
    bias: np.ndarray | None

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        assert self.weights is not None and self.bias is not None
        z = x @ self.weights.T + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def training_examples(tree: SkillTree, cfg: AnnotateConfig, hashes: Sequence[str], train: Sequence[int],
                      llm_keys: _Keys, cache: dict[str, dict[str, Any]]) -> dict[Chain, list[tuple[int, list[str]]]]:
    """Per inner node: (item index, chosen children) of every training item the LLM's walk
    brought there with a final decision (``ok`` or ``none``; failed and unreadable ones
    teach nothing)."""
    from .annotate import NONE, OK

    per_node: dict[Chain, list[tuple[int, list[str]]]] = collections.defaultdict(list)
    for i in train:
        stack: list[Chain] = [()]
        while stack:
            path = stack.pop()
            node = tree.node(path)
            if node.is_leaf or (cfg.max_depth is not None and len(path) >= cfg.max_depth):
                continue
            rec = cache.get(llm_keys(path, hashes[i]))
            if rec is None or rec.get("status") not in (OK, NONE):
                continue
            chosen = [c for c in rec.get("chosen", []) if path + (c,) in tree]
            per_node[path].append((i, chosen))
            stack.extend(path + (c,) for c in chosen)
    return dict(per_node)


def train_node_models(tree: SkillTree, examples: dict[Chain, list[tuple[int, list[str]]]], features: np.ndarray,
                      dcfg: DistilledConfig) -> dict[Chain, NodeModel]:
    """One logistic regression per (node, child) with both outcomes in its training data;
    constant smoothed probabilities ``(positives + 0.5) / (examples + 1)`` otherwise."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler

    models: dict[Chain, NodeModel] = {}
    dim = features.shape[1]
    # Standardised features (one scaler over every training item): on raw unit-norm
    # embeddings an L2 penalty of C=1 keeps every probability near the prior, so nothing
    # is ever confident. The scaling is folded into the stored weights, which apply to
    # raw features.
    train_rows = sorted({i for rows in examples.values() for i, _ in rows})
    scaler = StandardScaler().fit(features[train_rows]) if train_rows else None
    for path in sorted(examples):
        rows = examples[path]
        children = [c.name for c in tree.node(path).children]
        n = len(rows)
        y = np.array([[name in chosen for name in children] for _, chosen in rows], dtype=bool)
        positives = [int(v) for v in y.sum(axis=0)]
        if n < dcfg.min_examples:
            models[path] = NodeModel(path, children, n, positives, None, None)
            continue
        assert scaler is not None
        x = scaler.transform(features[[i for i, _ in rows]])
        w = np.zeros((len(children), dim), dtype=np.float32)
        b = np.zeros(len(children), dtype=np.float32)
        for j, pos in enumerate(positives):
            if 0 < pos < n:
                folds = min(3, pos, n - pos)
                if dcfg.C is None and folds >= 2:
                    lr = LogisticRegressionCV(Cs=dcfg.C_grid, cv=folds, scoring="neg_log_loss", max_iter=2000)
                else:  # a fixed C, or too few of one outcome to cross-validate: the strongest penalty
                    lr = LogisticRegression(C=dcfg.C if dcfg.C is not None else min(dcfg.C_grid), max_iter=2000)
                with warnings.catch_warnings():  # scikit-learn 1.9's notices of 1.10 defaults, not problems
                    warnings.simplefilter("ignore", FutureWarning)
                    lr.fit(x, y[:, j])
                coef = lr.coef_[0] / scaler.scale_
                w[j], b[j] = coef, lr.intercept_[0] - float(coef @ scaler.mean_)
            else:
                p = (pos + 0.5) / (n + 1)
                b[j] = np.log(p / (1 - p))
        models[path] = NodeModel(path, children, n, positives, w, b)
    return models


def training_hash(examples: dict[Chain, list[tuple[int, list[str]]]], hashes: Sequence[str], feature_model: str,
                  dcfg: DistilledConfig) -> str:
    """Identity of the classifiers: what they were trained on and how."""
    h = hashlib.sha256()
    h.update(json.dumps({"features": feature_model, "rule": CLASSIFIER_RULE, "min_examples": dcfg.min_examples,
                         "C": dcfg.C, "C_grid": dcfg.C_grid}, sort_keys=True).encode())
    for path in sorted(examples):
        for i, chosen in examples[path]:
            h.update(json.dumps([list(path), hashes[i], chosen]).encode())
    return h.hexdigest()


def save_node_models(out: Path, models: dict[Chain, NodeModel], train_hash: str, feature_model: str,
                     dcfg: DistilledConfig) -> None:
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for k, m in enumerate(models.values()):
        entry = {"path": list(m.path), "children": m.children, "examples": m.examples, "positives": m.positives,
                 "decides": "classifier" if m.weights is not None else "llm"}
        if m.weights is not None:
            arrays[f"w{k}"], arrays[f"b{k}"] = m.weights, m.bias
            entry["arrays"] = [f"w{k}", f"b{k}"]
        nodes.append(entry)
    with atomic_path(out / CLASSIFIERS_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    write_json(out / CLASSIFIERS_INDEX, {"training_set": train_hash, "features": feature_model, "rule": CLASSIFIER_RULE,
                                         "config": dcfg.model_dump(mode="json"), "nodes": nodes})


def load_node_models(out: Path) -> tuple[str, dict[Chain, NodeModel]]:
    """(training-set hash, models) from the plain artifacts ``save_node_models`` wrote."""
    index = json.loads((out / CLASSIFIERS_INDEX).read_text(encoding="utf-8"))
    models: dict[Chain, NodeModel] = {}
    with np.load(out / CLASSIFIERS_FILE, allow_pickle=False) as z:
        for e in index["nodes"]:
            w, b = (z[e["arrays"][0]], z[e["arrays"][1]]) if "arrays" in e else (None, None)
            path = tuple(e["path"])
            models[path] = NodeModel(path, e["children"], e["examples"], e["positives"], w, b)
    return index["training_set"], models


# ----------------------------------------------------------------------------------
# The distilled decider
# ----------------------------------------------------------------------------------
class DistilledDecider:
    """Decides from the node classifiers; unsure decisions and nodes without a classifier
    go to the LLM (its cached answer to the same question when there is one)."""

    def __init__(self, models: dict[Chain, NodeModel], features: np.ndarray, row_of: dict[str, int],
                 llm: ChatDecider, llm_answer: Callable[[Chain, str], dict[str, Any] | None],
                 train_hash: str, band: tuple[float, float]) -> None:
        self.models, self.features, self.row_of = models, features, row_of
        self.llm, self.llm_answer, self.band = llm, llm_answer, band
        self.model_id = f"distilled:{llm.model_id}:{train_hash[:16]}"
        self.version = f"{llm.version}|band={band[0]:g},{band[1]:g}"

    def decide(self, questions: list[Question], on_decision: Callable[[Question, dict[str, Any]], None],
               progress: Callable[[int], None]) -> None:
        from .annotate import NONE, OK, sha256_text

        ask: list[Question] = []
        by_node: dict[Chain, list[Question]] = collections.defaultdict(list)
        for q in questions:
            model = self.models.get(q.path)
            if q.pending is not None or model is None or model.weights is None:
                ask.append(q)
            else:
                by_node[q.path].append(q)
        lo, hi = self.band
        for path, qs in by_node.items():
            model = self.models[path]
            probs = model.probabilities(self.features[[self.row_of[sha256_text(q.text)] for q in qs]])
            done = 0
            for q, p in zip(qs, probs, strict=True):
                if np.any((p > lo) & (p < hi)):
                    ask.append(q)
                    continue
                chosen = [model.children[j] for j in np.flatnonzero(p >= 0.5)]
                on_decision(q, {"status": OK if chosen else NONE, "chosen": chosen, "unmatched": [], "calls": 0,
                                "source": "classifier",
                                "probs": {model.children[j]: round(float(p[j]), 4) for j in np.argsort(-p)[:5]}})
                done += 1
            progress(done)

        # the LLM's own answer to this question, when it gave one (the held-out sample)
        fresh = []
        for q in ask:
            prev = self.llm_answer(q.path, sha256_text(q.text)) if q.pending is None else None
            if prev is not None:
                on_decision(q, {k: v for k, v in prev.items() if k not in ("key", "node", "item")}
                            | {"source": "llm-cached", "calls": 0})
                progress(1)
            else:
                fresh.append(q)
        if fresh:
            def relay(q: Question, rec: dict[str, Any]) -> None:
                on_decision(q, {**rec, "source": "llm"})

            self.llm.decide(fresh, relay, progress)


# ----------------------------------------------------------------------------------
# Agreement
# ----------------------------------------------------------------------------------
def chain_agreement(predicted: Sequence[Sequence[Sequence[str]]], reference: Sequence[Sequence[Sequence[str]]]) -> dict[str, Any]:
    """Per-item precision and recall of the predicted chain sets against the reference,
    averaged over items (an item with no predicted chain counts precision 0), at the leaf
    (whole chain) and the top level (first skill)."""
    def score(pairs: list[tuple[set, set]]) -> tuple[float | None, float | None]:
        if not pairs:
            return None, None
        prec = [len(p & r) / len(p) if p else 0.0 for p, r in pairs]
        rec = [len(p & r) / len(r) if r else (1.0 if not p else 0.0) for p, r in pairs]
        return round(float(np.mean(prec)), 4), round(float(np.mean(rec)), 4)

    leaf = [({tuple(c) for c in p}, {tuple(c) for c in r}) for p, r in zip(predicted, reference, strict=True)]
    top = [({c[0] for c in p if c}, {c[0] for c in r if c}) for p, r in zip(predicted, reference, strict=True)]
    lp, lr = score(leaf)
    tp, tr = score(top)
    return {"items": len(leaf), "leaf_precision": lp, "leaf_recall": lr, "top_precision": tp, "top_recall": tr}


def classifier_only_chains(tree: SkillTree, cfg: AnnotateConfig, models: dict[Chain, NodeModel], x: np.ndarray,
                           llm_decision: Callable[[Chain], dict[str, Any] | None]) -> list[list[str]]:
    """One item's chains from the classifiers alone (children with p >= 0.5, the best one
    when none reaches it); at a node without a classifier, the LLM's cached decision, or
    the chain ends there."""
    chains: list[list[str]] = []
    stack: list[Chain] = [()]
    while stack:
        path = stack.pop()
        node = tree.node(path)
        if path and (node.is_leaf or (cfg.max_depth is not None and len(path) >= cfg.max_depth)):
            chains.append(list(path))
            continue
        m = models.get(path)
        if m is not None and m.weights is not None:
            p = m.probabilities(x[None, :])[0]
            picked = list(np.flatnonzero(p >= 0.5)) or [int(np.argmax(p))]
            chosen = [m.children[j] for j in picked]
        else:
            rec = llm_decision(path)
            chosen = [c for c in (rec or {}).get("chosen", []) if path + (c,) in tree]
        stack.extend(path + (c,) for c in reversed(chosen))
    return chains


@dataclass
class DistilledRun:
    skills: list[list[list[str]]]
    cache: dict[str, dict[str, Any]]
    item_keys: list[Any]  # per item: the _Keys its decisions are filed under
    counters: Any  # annotate._RunCounters, both walks added up
    section: dict[str, Any]


def run_distilled(ids: list[str], texts: list[str], hashes: list[str], tree: SkillTree, cfg: AnnotateConfig,
                  llm: ChatDecider, out: Path, calls_path: Path, show_progress: bool, retry_failed: bool) -> DistilledRun:
    """The whole backend: features, sample, LLM walk of the sample, classifiers, distilled
    walk of the rest and of the held-out items, agreement."""
    from .annotate import _add, _chains_for, _Keys, _make_progress, _walk
    from .llm.embedding import EmbeddingAttributor

    dcfg = cfg.distilled
    attributor = EmbeddingAttributor(cfg.embedding)
    progress = _make_progress(show_progress)
    with progress:
        task = progress.add_task("distilled: item features", total=len(texts), unit="items")
        features = item_features(attributor, texts, hashes, out / FEATURES_FILE,
                                 progress=lambda k: progress.advance(task, k))
    row_of = {h: i for i, h in enumerate(hashes)}
    sample = stratified_sample(features, dcfg.sample_size, dcfg.strata, dcfg.seed)
    train, held_out = holdout_split(sample, dcfg.holdout_fraction, dcfg.seed)
    write_sample(out, ids, train, held_out)
    log.info("distilled: the LLM labels %d of %d items (%d to train on, %d held out)", len(sample), len(ids),
             len(train), len(held_out))

    # 1. the LLM walks the sample, as the LLM backend would
    llm_keys = _Keys(tree, llm.model_id, llm.version)
    sel = [int(i) for i in sample]
    cache, c_llm = _walk([ids[i] for i in sel], [texts[i] for i in sel], [hashes[i] for i in sel], llm_keys, tree, cfg,
                         llm, calls_path, show_progress, retry_failed)
    calls_sample = sum(cache[k].get("calls", 0) for k in _used_keys(tree, cfg, [hashes[i] for i in sel], llm_keys, cache))

    # 2. classifiers from the training part of the sample
    examples = training_examples(tree, cfg, hashes, [int(i) for i in train], llm_keys, cache)
    t_hash = training_hash(examples, hashes, attributor.model_id, dcfg)
    models = train_node_models(tree, examples, features, dcfg)
    save_node_models(out, models, t_hash, attributor.model_id, dcfg)

    # 3. the classifiers walk every other item and the held-out ones
    def llm_answer(path: Chain, text_hash: str) -> dict[str, Any] | None:
        from .annotate import FINAL

        rec = cache.get(llm_keys(path, text_hash))
        return rec if rec is not None and rec.get("status") in FINAL else None

    decider = DistilledDecider(models, features, row_of, llm, llm_answer, t_hash, dcfg.uncertain_band)
    d_keys = _Keys(tree, decider.model_id, decider.version)
    in_sample = set(sel)
    walk = [i for i in range(len(ids)) if i not in in_sample] + [int(i) for i in held_out]
    d_cache, c_dist = _walk([ids[i] for i in walk], [texts[i] for i in walk], [hashes[i] for i in walk], d_keys, tree,
                            cfg, decider, calls_path, show_progress, retry_failed)
    cache.update(d_cache)

    # every sample item keeps the LLM's own labels; the rest get the distilled ones
    item_keys = [llm_keys if i in in_sample else d_keys for i in range(len(ids))]
    skills = [_chains_for(tree, cfg.max_depth, lambda p, h=hashes[i], k=item_keys[i]: cache.get(k(p, h)))
              for i in range(len(ids))]

    # 4. agreement on the held-out items, and what it cost
    ho = [int(i) for i in held_out]
    reference = [skills[i] for i in ho]
    with_fallback = [_chains_for(tree, cfg.max_depth, lambda p, h=hashes[i]: cache.get(d_keys(p, h))) for i in ho]
    alone = [classifier_only_chains(tree, cfg, models, features[i], lambda p, h=hashes[i]: llm_answer(p, h)) for i in ho]
    rest = [i for i in range(len(ids)) if i not in in_sample]
    used_rest = _used_keys(tree, cfg, [hashes[i] for i in rest], d_keys, cache)
    sources = collections.Counter(cache[k].get("source", "llm") for k in used_rest)
    calls_rest = sum(cache[k].get("calls", 0) for k in used_rest)
    ho_keys = _used_keys(tree, cfg, [hashes[i] for i in ho], d_keys, cache)
    calls_check = sum(cache[k].get("calls", 0) for k in ho_keys)
    per_item = calls_sample / len(sel) if sel else 0.0
    all_llm = per_item * len(ids)
    made = calls_sample + calls_rest + calls_check
    n_dec = sum(sources.values())
    section = {
        "sample": {"items": len(sel), "train": len(train), "held_out": len(held_out), "strata": dcfg.strata,
                   "llm_calls_per_item": round(per_item, 3)},
        "classifiers": {"training_set": t_hash, "nodes": len(models),
                        "nodes_with_classifier": sum(m.weights is not None for m in models.values()),
                        "nodes_llm_only": sum(m.weights is None for m in models.values()),
                        "training_decisions": sum(m.examples for m in models.values()), "features": attributor.model_id},
        "decisions": {"items": len(rest), "total": n_dec, "classifier": sources.get("classifier", 0),
                      "llm": sources.get("llm", 0) + sources.get("llm-cached", 0),
                      "fallback_share": round((n_dec - sources.get("classifier", 0)) / n_dec, 4) if n_dec else None},
        "held_out_agreement": {"with_fallback": chain_agreement(with_fallback, reference),
                               "classifier_only": chain_agreement(alone, reference)},
        "llm_calls": {"sample": calls_sample, "fallback": calls_rest, "held_out_check": calls_check, "total": made,
                      "all_llm_estimate": round(all_llm), "saved": round(all_llm - made),
                      "saved_share": round(1 - made / all_llm, 4) if all_llm else None},
    }
    counters = c_llm
    counters.new_keys |= c_dist.new_keys
    counters.calls += c_dist.calls
    counters.prompt_tokens = _add(counters.prompt_tokens, c_dist.prompt_tokens)
    counters.completion_tokens = _add(counters.completion_tokens, c_dist.completion_tokens)
    counters.per_level = [{"walk": "llm-sample", **x} for x in c_llm.per_level] + \
        [{"walk": "distilled", **x} for x in c_dist.per_level]
    return DistilledRun(skills, cache, item_keys, counters, section)


def _used_keys(tree: SkillTree, cfg: AnnotateConfig, hashes: Sequence[str], keys: _Keys,
               cache: dict[str, dict[str, Any]]) -> set[str]:
    """Keys of the decisions the items' chains rest on."""
    from .annotate import decisions_used

    return set(decisions_used(tree, cfg.max_depth, hashes, [keys] * len(hashes), cache))


def write_sample(out: Path, ids: Sequence[str], train: Sequence[int], held_out: Sequence[int]) -> None:
    write_json(out / SAMPLE_FILE, {"train": [ids[i] for i in train], "held_out": [ids[i] for i in held_out]})


__all__ = [
    "DistilledConfig", "DistilledDecider", "DistilledRun", "NodeModel", "run_distilled", "chain_agreement", "classifier_only_chains", "holdout_split",
    "item_features", "load_node_models", "save_node_models", "stratified_sample", "train_node_models",
    "training_examples", "training_hash",
]

