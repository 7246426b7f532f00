"""The distilled backend's per-node classifiers: training examples from the LLM's decisions,
one logistic regression per (node, child), their plain-array artifacts (never pickled), and
an item's chains from the classifiers alone."""

from __future__ import annotations

import collections
import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import atomic_path, write_json
from ..tree import Chain, SkillTree
from .cache import NONE, OK, Decisions
from .config import AnnotateConfig, DistilledConfig
from .decision_keys import DecisionKeys

CLASSIFIERS_FILE = "classifiers.npz"
CLASSIFIERS_INDEX = "classifiers.json"
CLASSIFIER_RULE = "logistic-ovr-standardised-v1"

Examples = dict[Chain, list[tuple[int, list[str]]]]  # node -> (item index, children chosen) per training decision


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
                      llm_keys: DecisionKeys, cache: Decisions,
                      keys_of: Callable[[int], DecisionKeys] | None = None) -> Examples:
    """Per inner node: (item index, chosen children) of every training item the LLM's walk
    brought there with a final decision (``ok`` or ``none``; failed and unreadable ones
    teach nothing). ``keys_of``: item -> its keys, when they are not all ``llm_keys`` (an
    anchored walk: the labelled nodes' decisions are filed under the anchor's keys)."""
    per_node: Examples = collections.defaultdict(list)
    for i in train:
        keys = keys_of(i) if keys_of is not None else llm_keys
        stack: list[Chain] = [()]
        while stack:
            path = stack.pop()
            node = tree.node(path)
            if node.is_leaf or (cfg.max_depth is not None and len(path) >= cfg.max_depth):
                continue
            rec = cache.get(keys(path, hashes[i]))
            if rec is None or rec.get("status") not in (OK, NONE):
                continue
            chosen = [c for c in rec.get("chosen", []) if path + (c,) in tree]
            per_node[path].append((i, chosen))
            stack.extend(path + (c,) for c in chosen)
    return dict(per_node)


def train_node_models(tree: SkillTree, examples: Examples, features: np.ndarray,
                      dcfg: DistilledConfig) -> dict[Chain, NodeModel]:
    """One logistic regression per (node, child) with both outcomes in its training data;
    constant smoothed probabilities ``(positives + 0.5) / (examples + 1)`` otherwise."""
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
                coef, intercept = _fit_child(x, y[:, j], pos, n, scaler, dcfg)
                w[j], b[j] = coef, intercept
            else:
                p = (pos + 0.5) / (n + 1)
                b[j] = np.log(p / (1 - p))
        models[path] = NodeModel(path, children, n, positives, w, b)
    return models


def prior_models(models: dict[Chain, NodeModel], dim: int) -> dict[Chain, NodeModel]:
    """``models`` with every node left without a classifier (fewer than ``min_examples``) given its
    constant smoothed probabilities instead: where no LLM decides, the training labels' shares do."""
    out = {}
    for path, m in models.items():
        if m.weights is None and m.examples:
            p = (np.array(m.positives, dtype=np.float64) + 0.5) / (m.examples + 1)
            m = NodeModel(path, m.children, m.examples, m.positives, np.zeros((len(m.children), dim), dtype=np.float32),
                          np.log(p / (1 - p)).astype(np.float32))
        out[path] = m
    return out


def _fit_child(x: np.ndarray, y: np.ndarray, pos: int, n: int, scaler: Any, dcfg: DistilledConfig) -> tuple[np.ndarray, float]:
    """One child's logistic regression on standardised features, as (weights, bias) on raw ones."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    folds = min(3, pos, n - pos)
    if dcfg.C is None and folds >= 2:
        lr = LogisticRegressionCV(Cs=dcfg.C_grid, cv=folds, scoring="neg_log_loss", max_iter=2000)
    else:  # a fixed C, or too few of one outcome to cross-validate: the strongest penalty
        lr = LogisticRegression(C=dcfg.C if dcfg.C is not None else min(dcfg.C_grid), max_iter=2000)
    with warnings.catch_warnings():  # scikit-learn 1.9's notices of 1.10 defaults, not problems
        warnings.simplefilter("ignore", FutureWarning)
        lr.fit(x, y)
    coef = lr.coef_[0] / scaler.scale_
    return coef, lr.intercept_[0] - float(coef @ scaler.mean_)


def training_hash(examples: Examples, hashes: Sequence[str], feature_model: str, dcfg: DistilledConfig) -> str:
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


def classifier_only_chains(tree: SkillTree, cfg: AnnotateConfig, models: dict[Chain, NodeModel], x: np.ndarray,
                           llm_decision: Callable[[Chain], dict[str, Any] | None],
                           fixed: Callable[[Chain], dict[str, Any] | None] | None = None,
                           end_without_decision: bool = False) -> list[list[str]]:
    """One item's chains from the classifiers alone (children with p >= 0.5, the best one
    when none reaches it); at a node ``fixed`` decides (an anchor label), its decision; at a
    node without a classifier, the LLM's cached decision, or the branch is dropped there
    (``end_without_decision``: the chain ends there, as a labels file's chain may)."""
    chains: list[list[str]] = []
    stack: list[Chain] = [()]
    while stack:
        path = stack.pop()
        node = tree.node(path)
        if path and (node.is_leaf or (cfg.max_depth is not None and len(path) >= cfg.max_depth)):
            chains.append(list(path))
            continue
        m = models.get(path)
        given = fixed(path) if fixed is not None else None
        if given is not None:
            chosen = [c for c in given.get("chosen", []) if path + (c,) in tree]
        elif m is not None and m.weights is not None:
            p = m.probabilities(x[None, :])[0]
            picked = list(np.flatnonzero(p >= 0.5)) or [int(np.argmax(p))]
            chosen = [m.children[j] for j in picked]
        else:
            rec = llm_decision(path)
            chosen = [c for c in (rec or {}).get("chosen", []) if path + (c,) in tree]
            if rec is None and end_without_decision and path:
                chains.append(list(path))
        stack.extend(path + (c,) for c in reversed(chosen))
    return chains
