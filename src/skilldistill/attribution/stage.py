"""`skilldistill annotate`: attach root-to-leaf skill chains to every corpus item.

    skilldistill annotate runs/demo/corpus/corpus.parquet --tree skill_mix.json \\
        --out runs/demo/annotate --backend openai --model Qwen/Qwen2.5-32B-Instruct \\
        --base-url http://gpu1:8000/v1 --base-url http://gpu2:8000/v1

With ``backend: labels`` no model is asked: each item's chains come from a label the corpus
carries (``labels.py``). The other backends go top-down and multi-label (``walk.py``): at a
node, the backend is asked which of the node's children the item needs; every chosen child is
expanded in turn until leaves (or ``max_depth``), one tree level at a time for all pending
items together.

Every (item, node) decision is appended to ``calls.jsonl`` the moment it arrives, keyed
by hash(model, prompt template version, node path, item text). A rerun (after a crash,
a kill, or with more items) reuses every finished decision and repeats no finished call;
the output is identical to an uninterrupted run because it is rebuilt from the
decisions alone.

LLM answers are untrusted input (``parsing.py``): they are parsed as a JSON list, a Python
list literal (``ast.literal_eval``, never ``eval``) or bullet/numbered lines; names are
matched to the node's children case- and whitespace-insensitively, then by closest match
above ``match_threshold``; an unreadable answer (one naming no child, ``[]``, or one the
server cut or filtered included) gets one repair retry, then the branch is dropped and
recorded as ``unparseable``, and the item marked so.

Artifacts (``out_dir``): ``skills.parquet`` (the corpus + ``skills``: list of chains),
``calls.jsonl`` (the decision cache), ``summary.json``, ``manifest.json``.
See docs/annotate.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..artifacts import (
    hash_obj,
    locked_stage,
    manifest_matches,
    read_json,
    sha256_file,
    sha256_text,
    write_json,
    write_manifest,
    write_parquet,
)
from ..errors import InputError
from ..llm.base import CLIENT_ONLY_FIELDS, ChatBackend, fingerprint_view
from ..tree import SkillTree
from .anchor import Anchoring, anchor_failed_message, anchor_items
from .cache import CALLS_FILE, FAILED, OK, UNPARSEABLE, Decisions
from .chains import chains_for, item_status
from .config import AnnotateConfig
from .deciders import ChatDecider, Decider, EmbeddingDecider
from .decision_keys import DecisionKeys
from .items import SKILLS_FILE, SKILLS_STATUS, corpus_file, read_items
from .labels import (
    LabelMap,
    LabelReader,
    LabelResult,
    attribute_labels,
    failed_share_message,
    load_label_map,
)
from .prompt import PromptTemplate
from .summary import SUMMARY_FILE, build_summary
from .train_labels import train_labels_file
from .walk import RunCounters, walk_tree

log = logging.getLogger(__name__)

ANSWER_RULE = "named-none-unreadable"  # how chat answers are read; in a chat run's manifest inputs


@dataclass
class AnnotateResult:
    out_dir: Path
    skills_path: Path
    summary: dict[str, Any]
    skipped: bool = False  # True when the stage was already complete and nothing ran


@dataclass
class AnnotateRun:
    """What one run carries from step to step."""

    cfg: AnnotateConfig
    out: Path
    corpus_path: Path
    tree: SkillTree
    template: PromptTemplate
    inputs: dict[str, str]  # the input hashes the manifest matches
    started: float
    table: pa.Table | None = None
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text_hashes: list[str] = field(default_factory=list)
    decider: Decider | None = None
    decisions: Decisions = field(default_factory=dict)
    counters: RunCounters = field(default_factory=RunCounters)
    item_keys: list[DecisionKeys] = field(default_factory=list)  # per item: the keys its decisions are filed under
    skills: list[list[list[str]]] = field(default_factory=list)
    distilled: dict[str, Any] | None = None  # the distilled backend's summary section
    label_map: LabelMap | None = None  # the labels backend's map, checked against the tree
    labels: LabelResult | None = None  # the labels backend's chains, statuses and summary section
    anchor_map: LabelMap | None = None  # an anchored walk's label map, checked against the tree
    anchor: Anchoring | None = None  # an anchored walk's labelled decisions and summary section
    statuses: list[str] = field(default_factory=list)  # per item: skills_status
    summary: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0


@locked_stage("annotate")
def run_annotate(
    corpus: str | Path,
    tree: str | Path | SkillTree,
    out_dir: str | Path,
    config: AnnotateConfig | None = None,
    *,
    backend: ChatBackend | None = None,
    force: bool = False,
    show_progress: bool = True,
    retry_failed: bool = False,
) -> AnnotateResult:
    """Attribute skills to every item of ``corpus`` and write ``out_dir/skills.parquet``.

    ``corpus``: a corpus Parquet (or a folder holding ``corpus.parquet``) with at least
    ``id`` and ``question`` (``response`` used when present). ``tree``: a SkillTree, a
    tree file or a bundled tree name. ``backend``: an already built chat backend to use
    instead of building one from ``config.llm`` (it is not closed here).
    Resumes from ``calls.jsonl``; returns at once when the manifest shows the same
    config and inputs already done (unless ``force``).
    """
    run = _start(corpus, tree, out_dir, config or AnnotateConfig())
    if not force and not retry_failed and _up_to_date(run):
        log.info("annotate: %s is up to date", run.out)
        summary = read_json(run.out / SUMMARY_FILE) if (run.out / SUMMARY_FILE).exists() else {}
        return AnnotateResult(run.out, run.out / SKILLS_FILE, summary, skipped=True)
    _read_corpus(run)
    _attribute(run, backend, show_progress, retry_failed)
    _write_summary(run)
    _check_failed_share(run)
    _write_skills(run)
    return AnnotateResult(run.out, run.out / SKILLS_FILE, run.summary)


annotate = run_annotate


def _start(corpus: str | Path, tree: str | Path | SkillTree, out_dir: str | Path, cfg: AnnotateConfig) -> AnnotateRun:
    """The inputs resolved and hashed."""
    started = time.time()
    corpus_path = corpus_file(corpus)
    skill_tree = tree if isinstance(tree, SkillTree) else SkillTree.resolve(tree)
    template = PromptTemplate.load(cfg.prompt_template)
    asks_model = cfg.backend not in ("embedding", "labels") and (cfg.llm is not None or cfg.backend != "distilled")
    inputs = {
        "corpus": sha256_file(corpus_path),
        "tree": hash_obj(skill_tree.to_dict()),
        "template": template.version if asks_model else "",
    }
    if asks_model:
        # Chat answers are read by ANSWER_RULE: a run certified under an older rule (one that
        # took ``[]`` for a decision) is not up to date; its cache is re-read (cache.py).
        inputs["answers"] = ANSWER_RULE
    label_map = None
    if cfg.backend == "labels":  # the map checked against the tree before the corpus is read
        label_map = load_label_map(cfg.labels.label_map, skill_tree, cfg.labels.label_separator)
        inputs["label_map"] = label_map.digest  # what the file says, not where it is: an edit reruns
    anchor_map = None
    if cfg.anchor.label_field is not None:
        anchor_map = load_label_map(cfg.anchor.label_map, skill_tree, cfg.anchor.label_separator)
        inputs["anchor_map"] = anchor_map.digest
    if cfg.backend == "distilled" and cfg.distilled.train_labels is not None:
        inputs["train_labels"] = sha256_file(train_labels_file(cfg.distilled.train_labels))
    return AnnotateRun(cfg, Path(out_dir), corpus_path, skill_tree, template, inputs, started, label_map=label_map,
                       anchor_map=anchor_map)


def _up_to_date(run: AnnotateRun) -> bool:
    """The manifest certifies this config and these inputs, and the table is there.
    Client-only settings (concurrency, servers, retries) change no decision: not in the match."""
    return manifest_matches(run.out, config=fingerprint_view(run.cfg.public_dict()),
                            inputs=run.inputs) and (run.out / SKILLS_FILE).exists()


def _read_corpus(run: AnnotateRun) -> None:
    run.table = pq.read_table(run.corpus_path)
    run.ids, run.texts = read_items(run.table, run.corpus_path, run.cfg.max_chars)
    # From here on skills.parquet and summary.json change: the old manifest no longer
    # certifies them (a kill between their writes and the new manifest must not leave it).
    (run.out / "manifest.json").unlink(missing_ok=True)


def _attribute(run: AnnotateRun, backend: ChatBackend | None, show_progress: bool, retry_failed: bool) -> None:
    """Every item's decisions (asked or from the cache), chains and status."""
    cfg, tree = run.cfg, run.tree
    if cfg.backend == "labels":
        _read_labels(run)
        return
    own_backend = None
    if cfg.backend == "embedding":
        run.decider = EmbeddingDecider(cfg.embedding, tree_key=run.inputs["tree"])
    elif cfg.llm is not None or backend is not None:
        if backend is None:
            from ..llm.factory import make_backend

            assert cfg.llm is not None
            backend = own_backend = make_backend(cfg.llm)
        run.decider = ChatDecider(backend, cfg, run.template, tree.root.name)
    run.text_hashes = [sha256_text(t) for t in run.texts]
    if run.anchor_map is not None:
        assert run.table is not None
        run.anchor = anchor_items(run.table, run.corpus_path, tree, cfg.anchor, run.anchor_map, run.ids,
                                  run.text_hashes, cfg.max_depth)
    try:
        if cfg.backend == "distilled":
            _distilled_walk(run, show_progress, retry_failed)
        else:
            _walk(run, show_progress, retry_failed)
    finally:
        if own_backend is not None:
            own_backend.close()
    # Whether each item's chains rest on complete decisions: a refused call or an answer
    # that stayed unreadable drops a branch, and the item must say so, not pass for one
    # without those skills.
    run.statuses = [item_status(tree, cfg.max_depth, lambda p, h=h, k=k: run.decisions.get(k(p, h)))
                    for h, k in zip(run.text_hashes, run.item_keys, strict=True)]
    if run.anchor is not None and run.anchor.required:  # unanchored items were not walked
        run.statuses = [FAILED if run.anchor.failed(i) else st for i, st in enumerate(run.statuses)]


def _walk(run: AnnotateRun, show_progress: bool, retry_failed: bool) -> None:
    """The plain backends: one walk of every item with the decider (below its anchor, if any)."""
    assert run.decider is not None
    keys = DecisionKeys(run.tree, run.decider.model_id, run.decider.version)
    anchor, n = run.anchor, len(run.ids)
    run.decisions, run.counters = walk_tree(run.ids, run.texts, run.text_hashes, keys, run.tree, run.cfg, run.decider,
                                            run.out / CALLS_FILE, show_progress, retry_failed,
                                            starts=anchor.starts(range(n)) if anchor else None)
    run.item_keys = [anchor.keys(keys, i) for i in range(n)] if anchor else [keys] * n
    if anchor is not None:
        run.decisions.update(anchor.records)
    run.skills = [chains_for(run.tree, run.cfg.max_depth, lambda p, h=h, k=k: run.decisions.get(k(p, h)))
                  for h, k in zip(run.text_hashes, run.item_keys, strict=True)]


def _distilled_walk(run: AnnotateRun, show_progress: bool, retry_failed: bool) -> None:
    """The distilled backend: the LLM labels a sample, classifiers the rest."""
    from .distilled import run_distilled

    assert run.decider is None or isinstance(run.decider, ChatDecider)
    result = run_distilled(run.ids, run.texts, run.text_hashes, run.tree, run.cfg, run.decider, run.out,
                           run.out / CALLS_FILE, show_progress, retry_failed, anchor=run.anchor)
    run.decisions, run.counters, run.item_keys = result.cache, result.counters, result.item_keys
    run.skills, run.distilled = result.skills, result.section
    if run.decider is None:  # classifiers from a labels file, no LLM: the summary names them
        run.decider = result.decider


def _read_labels(run: AnnotateRun) -> None:
    """The labels backend: every item's chains and status from its label field, no model asked.
    No decision is made or cached: the summary counts none."""
    assert run.table is not None and run.label_map is not None
    run.labels = attribute_labels(run.table, run.corpus_path, run.tree, run.cfg.labels, run.label_map,
                                  run.cfg.max_depth)
    reader = LabelReader(run.cfg.labels, run.label_map)
    run.decider = reader
    run.text_hashes = [sha256_text(t) for t in run.texts]
    run.item_keys = [DecisionKeys(run.tree, reader.model_id, reader.version)] * len(run.ids)
    run.skills, run.statuses = run.labels.skills, run.labels.statuses


def _write_summary(run: AnnotateRun) -> None:
    assert run.decider is not None
    run.wall = time.time() - run.started
    summary = build_summary(run.ids, run.skills, run.decisions, run.text_hashes, run.tree, run.cfg, run.decider,
                            run.item_keys, run.counters, run.wall)
    summary["items_incomplete"] = {FAILED: run.statuses.count(FAILED), UNPARSEABLE: run.statuses.count(UNPARSEABLE)}
    if run.distilled is not None:
        summary["model"] = run.cfg.llm.model if run.cfg.llm else summary["model"]
        summary["distilled"] = run.distilled
    if run.anchor is not None:
        summary["anchor"] = run.anchor.section
    if run.labels is not None:  # the names that matched no node are the label values that name none
        summary["labels"], summary["failed_reasons"] = run.labels.section, run.labels.failed_reasons
        summary["unmatched_names"] = run.labels.section["unmapped"]["labels"]
        summary["top_unmatched"] = run.labels.section["unmapped"]["values"]
    write_json(run.out / SUMMARY_FILE, summary)
    run.summary = summary


def _check_failed_share(run: AnnotateRun) -> None:
    """Over ``max_failed_share`` incomplete items the stage fails (nothing certified, the
    cache kept); below it they are marked and counted."""
    cfg, statuses, n = run.cfg, run.statuses, len(run.ids)
    n_bad = n - statuses.count(OK)
    if n_bad > cfg.max_failed_share * n and run.labels is not None:
        raise InputError(failed_share_message(run.labels.section, n_bad, n, cfg.max_failed_share),
                         file=run.out / SUMMARY_FILE)
    if n_bad > cfg.max_failed_share * n and run.anchor is not None and run.anchor.required and \
            run.anchor.section["unanchored"]["items"]:
        raise InputError(anchor_failed_message(run.anchor.section, n_bad, n, cfg.max_failed_share),
                         file=run.out / SUMMARY_FILE)
    if n_bad > cfg.max_failed_share * n:
        reasons = "; ".join(r for r, _ in run.summary["failed_reasons"][:2])
        unreadable = ", ".join(f"{r} ({c})" for r, c in run.summary["unreadable_reasons"][:3])
        raise InputError(
            f"{n_bad} of {n} items have no complete attribution ({statuses.count(FAILED)} with a call the "
            f"server refused, {statuses.count(UNPARSEABLE)} with an answer that stayed unreadable"
            + (f"; the server said: {reasons}" if reasons else "")
            + (f"; the unreadable answers: {unreadable}" if unreadable else "")
            + f"), over max_failed_share {cfg.max_failed_share:g}. Every decision is kept in {run.out / CALLS_FILE}: fix "
            "the cause and rerun with --retry-failed to ask those decisions again (or raise annotate.max_failed_share)",
            file=run.out / SUMMARY_FILE)
    if n_bad:
        log.warning("annotate: %d of %d items have no complete attribution (marked in skills_status; %s)", n_bad, n,
                    "summary.json: labels" if run.labels is not None else "rerun with --retry-failed to ask again")


def _write_skills(run: AnnotateRun) -> None:
    """``skills.parquet`` (the corpus + skills + skills_status), then the manifest that certifies it."""
    table = run.table
    assert table is not None
    for col in ("skills", SKILLS_STATUS):
        if col in table.column_names:
            table = table.drop_columns([col])
    table = table.append_column("skills", pa.array(run.skills, type=pa.list_(pa.list_(pa.string()))))
    table = table.append_column(SKILLS_STATUS, pa.array(run.statuses, type=pa.string()))
    write_parquet(run.out / SKILLS_FILE, table)
    public = run.cfg.public_dict()
    write_manifest(
        run.out,
        config=fingerprint_view(public),
        inputs=run.inputs,
        # recorded, not matched: how requests were sent changes no decision
        client={k: v for k, v in (public.get("llm") or {}).items() if k in CLIENT_ONLY_FIELDS},
        counts={k: run.summary[k] for k in ("items", "items_with_skills", "chains", "decisions", "calls_this_run")},
        wall_time_s=round(run.wall, 3),
    )
