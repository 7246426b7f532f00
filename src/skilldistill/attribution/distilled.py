"""The ``distilled`` attribution backend: an LLM labels a sample, per-node classifiers learn
from it and label the rest, unsure decisions go back to the LLM.

Top-down LLM attribution costs (calls per item) x (items): about 2 calls per item on the
paper's skill_mix tree, 14.7 on EvalTree's. This backend spends those calls on a stratified
sample only (``distilled.sample_size`` items, default 2,000):

1. **Features**: every item text is embedded once with the embedding backend's sentence
   model (all-MiniLM-L6-v2 by default), kept in ``features.npz`` by text hash.
2. **Sample**: items are clustered (scikit-learn ``MiniBatchKMeans``, ``strata`` clusters)
   and the sample is drawn from every cluster in proportion to its size; a
   ``holdout_fraction`` of it is kept out of training (``sampling.py``).
3. **LLM walk** of the sample: the normal top-down walk of the chosen LLM backend (openai,
   vllm or transformers), decisions cached in ``calls.jsonl`` as for that backend.
4. **Per-node classifiers** (``classifiers.py``): for every inner node the training items
   reached, one logistic regression per child (scikit-learn, L2; ``C`` by cross-validated
   log loss, so its probabilities are calibrated) on the standardised features predicts
   whether the LLM chose that child; a child always or never chosen there gets a constant
   (smoothed) probability. A node with fewer than ``min_examples`` training decisions gets
   no classifier: its decisions all go to the LLM. Weights are written as plain arrays
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

**From a labels file** (``distilled.train_labels``, ``train_labels.py``): steps 2-3 are
replaced by the file's labelled items (a few hundred labelled by hand, or offline by any
model), split into training and held-out items the same way; the classifiers learn the
file's chains and the held-out agreement is against them. An LLM is then optional: without
one the classifiers decide every node (no uncertain band: the children with p >= 0.5, else
the most likely one; a node below ``min_examples`` decides by the labels' shares), and at a
node no labelled chain went below, the chain ends (``ends_chain``). Labelled items keep
their labels. **Features** (``distilled.features``): ``minilm`` as above, or ``tfidf``
(``features.py``: fit on the corpus's item texts, deterministic, seconds instead of minutes
on a CPU). An anchored walk (``anchor.py``) starts every walk here below the anchor.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import sha256_text
from ..tree import Chain, SkillTree
from .anchor import ANCHOR_SOURCE, Anchoring
from .cache import FINAL, NONE, OK, Decisions
from .chains import ENDS_CHAIN, chains_for, decisions_used
from .classifiers import (
    NodeModel,
    classifier_only_chains,
    prior_models,
    save_node_models,
    train_node_models,
    training_examples,
    training_hash,
)
from .config import AnnotateConfig
from .deciders import ChatDecider, Decider, OnDecision, OnProgress, Question
from .decision_keys import DecisionKeys
from .sampling import FEATURES_FILE, holdout_split, item_features, stratified_sample, write_sample
from .train_labels import TrainLabels, label_examples, read_train_labels
from .walk import RunCounters, make_progress, walk_tree

if TYPE_CHECKING:
    pass

NO_EXAMPLES = "no-examples"  # ``source`` of a decision at a node no training label went below (no LLM)

log = logging.getLogger(__name__)


class DistilledDecider:
    """Decides from the node classifiers; unsure decisions and nodes without a classifier
    go to the LLM (its cached answer to the same question when there is one). Without an LLM
    (classifiers from a labels file) the classifiers decide every node they have; a node
    without one ends the chain."""

    def __init__(self, models: dict[Chain, NodeModel], features: np.ndarray, row_of: dict[str, int],
                 llm: ChatDecider | None, llm_answer: Callable[[Chain, str], dict[str, Any] | None],
                 train_hash: str, band: tuple[float, float]) -> None:
        self.models, self.features, self.row_of = models, features, row_of
        self.llm, self.llm_answer, self.band = llm, llm_answer, band
        if llm is None:
            self.model_id, self.version = f"distilled:labels:{train_hash[:16]}", "classifiers-only|best-if-none"
        else:
            self.model_id = f"distilled:{llm.model_id}:{train_hash[:16]}"
            self.version = f"{llm.version}|band={band[0]:g},{band[1]:g}"

    def decide(self, questions: list[Question], on_decision: OnDecision, progress: OnProgress) -> None:
        ask: list[Question] = []
        by_node: dict[Chain, list[Question]] = collections.defaultdict(list)
        for q in questions:
            model = self.models.get(q.path)
            if q.pending is not None or model is None or model.weights is None:
                ask.append(q)
            else:
                by_node[q.path].append(q)
        for path, qs in by_node.items():
            ask.extend(self._classify(path, qs, on_decision, progress))
        if self.llm is None:
            for q in ask:  # no classifier and no LLM: nothing decides below this node
                on_decision(q, {"status": OK, "chosen": [], "unmatched": [], "calls": 0, "source": NO_EXAMPLES,
                                ENDS_CHAIN: True})
            progress(len(ask))
            return
        self._ask_llm(ask, on_decision, progress)

    def _classify(self, path: Chain, qs: list[Question], on_decision: OnDecision, progress: OnProgress) -> list[Question]:
        """The node's classifier decides the questions it is sure of; returns the others."""
        lo, hi = self.band
        model = self.models[path]
        probs = model.probabilities(self.features[[self.row_of[sha256_text(q.text)] for q in qs]])
        unsure: list[Question] = []
        done = 0
        for q, p in zip(qs, probs, strict=True):
            if self.llm is not None and np.any((p > lo) & (p < hi)):
                unsure.append(q)
                continue
            picked = np.flatnonzero(p >= 0.5)
            if self.llm is None and not len(picked):  # nobody to ask: the most likely child
                picked = [int(np.argmax(p))]
            chosen = [model.children[j] for j in picked]
            on_decision(q, {"status": OK if chosen else NONE, "chosen": chosen, "unmatched": [], "calls": 0,
                            "source": "classifier",
                            "probs": {model.children[j]: round(float(p[j]), 4) for j in np.argsort(-p)[:5]}})
            done += 1
        progress(done)
        return unsure

    def _ask_llm(self, ask: list[Question], on_decision: OnDecision, progress: OnProgress) -> None:
        """The LLM's own answer to each question, when it gave one (the held-out sample), else a new ask."""
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

            assert self.llm is not None
            self.llm.decide(fresh, relay, progress)


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


@dataclass
class DistilledRun:
    skills: list[list[list[str]]]
    cache: Decisions
    item_keys: list[DecisionKeys]  # per item: the keys its decisions are filed under
    counters: RunCounters  # both walks added up
    section: dict[str, Any]
    decider: DistilledDecider  # the classifiers' decider (the summary names it when no LLM is asked)


def run_distilled(ids: list[str], texts: list[str], hashes: list[str], tree: SkillTree, cfg: AnnotateConfig,
                  llm: ChatDecider | None, out: Path, calls_path: Path, show_progress: bool, retry_failed: bool,
                  anchor: Anchoring | None = None) -> DistilledRun:
    """The whole backend: features, sample (an LLM-labelled one, or a labels file's items),
    classifiers, distilled walk of the rest and of the held-out items, agreement.
    ``anchor``: an anchored walk's labels (every walk starts below them)."""
    run = DistilledAttribution(ids, texts, hashes, tree, cfg, llm, calls_path, show_progress, retry_failed, anchor)
    run.item_features(out)
    if cfg.distilled.train_labels is not None:
        run.labelled_sample(out)
        run.train_classifiers(out)
    else:
        if llm is None:
            raise ValueError("the distilled backend needs an LLM or distilled.train_labels")
        run.draw_sample(out)
        run.llm_walk_of_sample()
        run.train_classifiers(out)
    decider = run.distilled_walk()
    skills = run.chains()
    section = run.section(skills)
    return DistilledRun(skills, run.cache, run.item_keys, run.counters(), section, decider)


class DistilledAttribution:
    """What one distilled run carries from step to step: the items, the sample, the two
    walks' decisions and keys, the classifiers."""

    # set by the steps, in order
    features: np.ndarray
    feature_model: str
    sample: list[int]
    in_sample: set[int]
    train: np.ndarray
    held_out: np.ndarray
    labels: TrainLabels | None = None  # the labels file's chains (train_labels), else None
    llm_keys: DecisionKeys | None = None
    cache: Decisions
    llm_counters: RunCounters
    calls_sample: int
    train_hash: str
    models: dict[Chain, NodeModel]
    distilled_keys: DecisionKeys
    rest: list[int]
    distilled_counters: RunCounters
    item_keys: list[DecisionKeys]

    def __init__(self, ids: list[str], texts: list[str], hashes: list[str], tree: SkillTree, cfg: AnnotateConfig,
                 llm: ChatDecider | None, calls_path: Path, show_progress: bool, retry_failed: bool,
                 anchor: Anchoring | None = None) -> None:
        self.ids, self.texts, self.hashes, self.tree, self.cfg, self.llm = ids, texts, hashes, tree, cfg, llm
        self.calls_path, self.show_progress, self.retry_failed = calls_path, show_progress, retry_failed
        self.anchor = anchor
        self.row_of = {h: i for i, h in enumerate(hashes)}

    def keyed(self, keys: DecisionKeys, i: int) -> DecisionKeys:
        """Item ``i``'s keys over ``keys`` (an anchored item's labelled nodes have the anchor's)."""
        return self.anchor.keys(keys, i) if self.anchor is not None else keys

    def item_features(self, out: Path) -> None:
        """Every item's features: MiniLM embeddings (kept in ``features.npz``) or TF-IDF."""
        if self.cfg.distilled.features == "tfidf":
            from .features import tfidf_features

            self.features, self.feature_model = tfidf_features(self.texts)
            return
        from ..llm.embedding import EmbeddingAttributor

        attributor = EmbeddingAttributor(self.cfg.embedding)
        progress = make_progress(self.show_progress)
        with progress:
            task = progress.add_task("distilled: item features", total=len(self.texts), unit="items")
            self.features = item_features(attributor, self.texts, self.hashes, out / FEATURES_FILE,
                                          progress=lambda k: progress.advance(task, k))
        self.feature_model = attributor.model_id

    def draw_sample(self, out: Path) -> None:
        """The stratified sample and its hold-out split (``sample.json``)."""
        dcfg = self.cfg.distilled
        sample = stratified_sample(self.features, dcfg.sample_size, dcfg.strata, dcfg.seed)
        self.split(sample, out)
        log.info("distilled: the LLM labels %d of %d items (%d to train on, %d held out)", len(sample), len(self.ids),
                 len(self.train), len(self.held_out))

    def split(self, sample: np.ndarray, out: Path) -> None:
        dcfg = self.cfg.distilled
        self.train, self.held_out = holdout_split(sample, dcfg.holdout_fraction, dcfg.seed)
        write_sample(out, self.ids, self.train, self.held_out)
        self.sample = [int(i) for i in sample]
        self.in_sample = set(self.sample)

    def labelled_sample(self, out: Path) -> None:
        """The labels file's items as the sample, split as an LLM-labelled one would be."""
        assert self.cfg.distilled.train_labels is not None
        self.labels = read_train_labels(self.cfg.distilled.train_labels, self.ids, self.tree, self.cfg.max_depth)
        self.split(np.array(sorted(self.labels.chains), dtype=np.int64), out)
        log.info("distilled: %d labelled items from %s (%d to train on, %d held out)", len(self.sample),
                 self.cfg.distilled.train_labels, len(self.train), len(self.held_out))
        self.cache = dict(self.anchor.records) if self.anchor is not None else {}
        self.llm_counters, self.calls_sample = RunCounters(), 0
        if self.llm is not None:
            self.llm_keys = DecisionKeys(self.tree, self.llm.model_id, self.llm.version)

    def walk(self, items: list[int], keys: DecisionKeys, decider: Decider) -> tuple[Decisions, RunCounters]:
        """The top-down walk of these items (indices) with ``decider``."""
        starts = self.anchor.starts(items) if self.anchor is not None else None
        return walk_tree([self.ids[i] for i in items], [self.texts[i] for i in items], [self.hashes[i] for i in items],
                         keys, self.tree, self.cfg, decider, self.calls_path, self.show_progress, self.retry_failed,
                         starts=starts)

    def calls_behind(self, items: list[int], keys: DecisionKeys) -> tuple[set[str], int]:
        """Keys of the decisions the items' chains rest on, and the LLM requests they took."""
        used = decisions_used(self.tree, self.cfg.max_depth, [self.hashes[i] for i in items],
                              [self.keyed(keys, i) for i in items], self.cache)
        used_keys = {k for k, r in used.items() if r.get("source") != ANCHOR_SOURCE}
        return used_keys, sum(self.cache[k].get("calls", 0) for k in used_keys)

    def llm_walk_of_sample(self) -> None:
        """The LLM walks the sample, as the LLM backend would."""
        assert self.llm is not None
        self.llm_keys = DecisionKeys(self.tree, self.llm.model_id, self.llm.version)
        self.cache, self.llm_counters = self.walk(self.sample, self.llm_keys, self.llm)
        if self.anchor is not None:
            self.cache.update(self.anchor.records)
        self.calls_sample = self.calls_behind(self.sample, self.llm_keys)[1]

    def train_classifiers(self, out: Path) -> None:
        """Classifiers from the training part of the sample, LLM-labelled or from the labels
        file (``classifiers.npz`` / ``.json``)."""
        dcfg, train = self.cfg.distilled, [int(i) for i in self.train]
        if self.labels is not None:
            examples = label_examples(self.tree, self.labels.chains, train, self.cfg.max_depth)
        else:
            assert self.llm_keys is not None
            llm_keys = self.llm_keys
            examples = training_examples(self.tree, self.cfg, self.hashes, train, llm_keys, self.cache,
                                         keys_of=lambda i: self.keyed(llm_keys, i))
        self.train_hash = training_hash(examples, self.hashes, self.feature_model, dcfg)
        self.models = train_node_models(self.tree, examples, self.features, dcfg)
        if self.llm is None:  # nobody to leave a node to: the labels' shares decide below min_examples
            self.models = prior_models(self.models, self.features.shape[1])
        save_node_models(out, self.models, self.train_hash, self.feature_model, dcfg)

    def llm_answer(self, path: Chain, text_hash: str) -> dict[str, Any] | None:
        """The LLM's final decision on this question, when the sample walk made one."""
        if self.llm_keys is None:
            return None
        rec = self.cache.get(self.llm_keys(path, text_hash))
        return rec if rec is not None and rec.get("status") in FINAL else None

    def distilled_walk(self) -> DistilledDecider:
        """The classifiers walk every other item and the held-out ones."""
        decider = DistilledDecider(self.models, self.features, self.row_of, self.llm, self.llm_answer, self.train_hash,
                                   self.cfg.distilled.uncertain_band)
        self.distilled_keys = DecisionKeys(self.tree, decider.model_id, decider.version)
        self.rest = [i for i in range(len(self.ids)) if i not in self.in_sample]
        d_cache, self.distilled_counters = self.walk(self.rest + [int(i) for i in self.held_out], self.distilled_keys,
                                                     decider)
        self.cache.update(d_cache)
        # sample items keep their labels (the LLM's, or the file's: under keys that find no decision)
        sample_keys = self.llm_keys or DecisionKeys(self.tree, "labels-file", "-")
        self.item_keys = [self.keyed(sample_keys if i in self.in_sample else self.distilled_keys, i)
                          for i in range(len(self.ids))]
        return decider

    def chains(self) -> list[list[list[str]]]:
        chains = [chains_for(self.tree, self.cfg.max_depth, lambda p, h=self.hashes[i], k=self.item_keys[i]: self.cache.get(k(p, h)))
                  for i in range(len(self.ids))]
        if self.labels is not None:  # labelled items: the file's chains
            for i, item_chains in self.labels.chains.items():
                chains[i] = [list(c) for c in item_chains]
        return chains

    def section(self, skills: list[list[list[str]]]) -> dict[str, Any]:
        """The summary's ``distilled`` section: agreement on the held-out items, and what it cost."""
        dcfg, models = self.cfg.distilled, self.models
        held_out = [int(i) for i in self.held_out]
        used_rest, calls_rest = self.calls_behind(self.rest, self.distilled_keys)
        sources = collections.Counter(self.cache[k].get("source", "llm") for k in used_rest)
        calls_check = self.calls_behind(held_out, self.distilled_keys)[1]
        per_item = self.calls_sample / len(self.sample) if self.sample and self.labels is None else 0.0
        all_llm = per_item * len(self.ids) if self.labels is None else None
        made = self.calls_sample + calls_rest + calls_check
        n_dec = sum(sources.values())
        llm = sources.get("llm", 0) + sources.get("llm-cached", 0)
        section = {
            "sample": {"items": len(self.sample), "train": len(self.train), "held_out": len(self.held_out),
                       "strata": dcfg.strata if self.labels is None else None,
                       "llm_calls_per_item": round(per_item, 3)},
            "classifiers": {"training_set": self.train_hash, "nodes": len(models),
                            "nodes_with_classifier": sum(m.weights is not None for m in models.values()),
                            "nodes_llm_only": sum(m.weights is None for m in models.values()),
                            "training_decisions": sum(m.examples for m in models.values()),
                            "features": self.feature_model},
            "decisions": {"items": len(self.rest), "total": n_dec, "classifier": sources.get("classifier", 0),
                          "llm": llm, "fallback_share": round(llm / n_dec, 4) if n_dec else None},
            "held_out_agreement": self.held_out_agreement(skills, held_out),
            "llm_calls": {"sample": self.calls_sample, "fallback": calls_rest, "held_out_check": calls_check,
                          "total": made, "all_llm_estimate": None if all_llm is None else round(all_llm),
                          "saved": None if all_llm is None else round(all_llm - made),
                          "saved_share": round(1 - made / all_llm, 4) if all_llm else None},
        }
        if self.labels is not None:  # learnt from a labels file: where from, and the chains ended for want of labels
            section["labels"] = self.labels.section
            section["sample"]["source"] = "labels file"
            section["decisions"]["no_examples"] = sources.get(NO_EXAMPLES, 0)
        return section

    def held_out_agreement(self, skills: list[list[list[str]]], held_out: list[int]) -> dict[str, Any]:
        """The held-out items' chains, distilled (with fall-back) and classifier-only, against
        their labels (the LLM's, or the labels file's)."""
        reference = [skills[i] for i in held_out]
        with_fallback = [chains_for(self.tree, self.cfg.max_depth,
                                    lambda p, h=self.hashes[i], k=self.keyed(self.distilled_keys, i): self.cache.get(k(p, h)))
                         for i in held_out]
        alone = [classifier_only_chains(self.tree, self.cfg, self.models, self.features[i],
                                        lambda p, h=self.hashes[i]: self.llm_answer(p, h),
                                        fixed=self.anchored_decision(i), end_without_decision=self.labels is not None)
                 for i in held_out]
        return {"with_fallback": chain_agreement(with_fallback, reference),
                "classifier_only": chain_agreement(alone, reference)}

    def anchored_decision(self, i: int) -> Callable[[Chain], dict[str, Any] | None] | None:
        """Item ``i``'s decisions its anchor label made (None: not anchored)."""
        if self.anchor is None or not self.anchor.anchored(i):
            return None
        keys, h = self.anchor.keys(self.distilled_keys, i), self.hashes[i]

        def decision(path: Chain) -> dict[str, Any] | None:
            rec = self.cache.get(keys(path, h))
            return rec if rec is not None and rec.get("source") == ANCHOR_SOURCE else None

        return decision

    def counters(self) -> RunCounters:
        """Both walks' counts added up, each level row labelled with its walk."""
        counters = self.llm_counters
        counters.add(self.distilled_counters)
        counters.per_level = [{"walk": "llm-sample", **x} for x in self.llm_counters.per_level] + \
            [{"walk": "distilled", **x} for x in self.distilled_counters.per_level]
        return counters
