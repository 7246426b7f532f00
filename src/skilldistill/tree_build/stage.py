"""`skilldistill tree build`: a skill tree induced from a corpus.

    skilldistill tree build runs/x/corpus --backend openai --model Qwen/Qwen2.5-32B-Instruct \\
        --base-url http://gpu1:8000/v1 --items 2000 --out math_tree.json

As the authors' ``extract_skill_tree.py`` does: a chat model writes, for each item of a seeded
sample, one skill chain per solution step (broad area first; ``prompt.py``), and the chains
merge into one tree (``merge.py``: near-duplicate sibling names merged by MiniLM similarity,
at most ``max_children`` children per node, a minimum count per node).

Resumable: every answer is appended to ``proposals.jsonl`` the moment it arrives
(``proposals.py``); a rerun asks only the items without one, and the merge is rebuilt from
the answers alone. Answers are untrusted (``chains.py``: bad lines dropped and counted). An
item with no usable chain (refused, or no readable line) is counted as failed; over
``max_failed_share`` the stage fails, the answers kept.

Artifacts (``out_dir``): ``tree.json`` (loads with ``SkillTree.load``, passes ``tree validate``),
``tree_counts.json`` (per node its items and the items stopping there; the merges, folds and
drops), ``items.jsonl`` (per item its chains and the nodes they stop at), ``summary.json``, ``proposals.jsonl`` and ``manifest.json`` (written last: the stage is
done when it matches the config and inputs).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..artifacts import (
    locked_stage,
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_jsonl,
    write_manifest,
)
from ..attribution.items import corpus_file, read_items
from ..attribution.labels import norm_name
from ..attribution.labels_tree import nested_tree
from ..errors import InputError
from ..llm.base import CLIENT_ONLY_FIELDS, ChatBackend, fingerprint_view
from ..tree import SkillTree
from .chains import ChainRules, ReadChains, read_chains
from .config import TreeBuildConfig
from .merge import MergedTree, MergeRules, merge_chains
from .prompt import PROMPT_VERSION, conversation
from .proposals import (
    ANSWERED,
    PROPOSALS_FILE,
    Ask,
    AskCounters,
    ask,
    load_records,
    proposal_key,
    to_ask,
)
from .summary import ITEMS_FILE, SUMMARY_FILE, build_counts, build_summary, item_rows

log = logging.getLogger(__name__)

TREE_FILE, COUNTS_FILE = "tree.json", "tree_counts.json"


@dataclass
class TreeBuildResult:
    out_dir: Path
    tree_path: Path
    counts_path: Path
    summary: dict[str, Any]
    skipped: bool = False  # the manifest showed this build done: nothing ran


@dataclass
class TreeBuildRun:
    """What one run carries from step to step."""

    cfg: TreeBuildConfig
    out: Path
    corpus_path: Path
    inputs: dict[str, str]
    started: float
    ids: list[str] = field(default_factory=list)  # the sampled items
    asks: list[Ask] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: AskCounters = field(default_factory=AskCounters)
    read: list[ReadChains] = field(default_factory=list)  # per sampled item
    merged: MergedTree | None = None
    tree: SkillTree | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@locked_stage("tree build")
def run_tree_build(corpus: str | Path, out_dir: str | Path, config: TreeBuildConfig, *,
                   backend: ChatBackend | None = None, force: bool = False, retry_failed: bool = False,
                   show_progress: bool = True) -> TreeBuildResult:
    """Induce a skill tree from ``corpus`` (a corpus Parquet, or a folder holding
    ``corpus.parquet``, with ``id``, ``question`` and optionally ``response``) into ``out_dir``.

    ``backend``: an already built chat backend to use instead of one from ``config.llm`` (not
    closed here). Resumes from ``proposals.jsonl``; returns at once when the manifest shows
    this config and corpus done (unless ``force``); ``retry_failed`` asks again the items
    whose request the server refused."""
    run = _start(corpus, out_dir, config)
    if not force and not retry_failed and _up_to_date(run):
        log.info("tree build: %s is up to date", run.out)
        return TreeBuildResult(run.out, run.out / TREE_FILE, run.out / COUNTS_FILE, read_json(run.out / SUMMARY_FILE),
                               skipped=True)
    _sample(run)
    _propose(run, backend, retry_failed, show_progress)
    _read_answers(run)
    _check_failed_share(run)
    _merge(run)
    _write(run)
    return TreeBuildResult(run.out, run.out / TREE_FILE, run.out / COUNTS_FILE, run.summary)


def _start(corpus: str | Path, out_dir: str | Path, cfg: TreeBuildConfig) -> TreeBuildRun:
    path = corpus_file(corpus)
    return TreeBuildRun(cfg, Path(out_dir), path, {"corpus": sha256_file(path), "prompt": PROMPT_VERSION}, time.time())


def _fingerprint(cfg: TreeBuildConfig) -> Any:
    return fingerprint_view(cfg.public_dict())


def _up_to_date(run: TreeBuildRun) -> bool:
    return (manifest_matches(run.out, config=_fingerprint(run.cfg), inputs=run.inputs)
            and all((run.out / f).exists() for f in (TREE_FILE, COUNTS_FILE, SUMMARY_FILE)))


def _sample(run: TreeBuildRun) -> None:
    """The items asked: every row, or the first ``items`` rows of a seeded shuffle (in corpus
    order): a larger sample with the same seed holds the smaller one, whose answers it reuses."""
    cfg = run.cfg
    table = pq.read_table(run.corpus_path)
    ids, _ = read_items(table, run.corpus_path, cfg.max_chars)  # every row checked: ids, questions, responses
    questions = table.column("question").to_pylist()
    responses = table.column("response").to_pylist() if "response" in table.column_names else [None] * len(ids)
    rows = range(len(ids))
    if cfg.items is not None and cfg.items < len(ids):
        order = list(range(len(ids)))
        random.Random(cfg.seed).shuffle(order)
        rows = sorted(order[: cfg.items])
    params, extra = cfg.sampling(), cfg.llm.extra_body or {}
    for i in rows:
        conv = conversation(questions[i], responses[i], cfg.max_chars)
        run.asks.append(Ask(ids[i], proposal_key(cfg.llm.model, conv, params, extra), conv))
    run.ids = [a.item_id for a in run.asks]
    (run.out / "manifest.json").unlink(missing_ok=True)  # from here on the outputs change


def _propose(run: TreeBuildRun, backend: ChatBackend | None, retry_failed: bool, show_progress: bool) -> None:
    """Every sampled item's answer: from ``proposals.jsonl``, else asked (and appended there)."""
    run.out.mkdir(parents=True, exist_ok=True)
    run.records = load_records(run.out / PROPOSALS_FILE)
    pending = to_ask(run.asks, run.records, retry_failed)
    log.info("tree build: %d items, %d answered before, %d to ask", len(run.asks), len(run.asks) - len(pending),
             len(pending))
    if not pending:
        return
    own = None
    if backend is None:
        from ..llm.factory import make_backend

        backend = own = make_backend(run.cfg.llm)
    try:
        with _progress(show_progress) as bar:
            task = bar.add_task("tree build proposals", total=len(pending), unit="items")
            run.counters = ask(backend, pending, run.cfg.sampling(), run.out / PROPOSALS_FILE, run.records,
                               progress=lambda k: bar.advance(task, k))
    finally:
        if own is not None:
            own.close()


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..progress import AverageRate, StageProgress

    return StageProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), AverageRate(),
                         TimeRemainingColumn(), disable=not enabled)


def _read_answers(run: TreeBuildRun) -> None:
    cfg = run.cfg
    rules = ChainRules(cfg.max_chains, cfg.max_depth, cfg.max_name_chars,
                       frozenset(norm_name(s) for s in [*cfg.strip_leading, cfg.root]))
    for a in run.asks:
        rec = run.records[a.key]
        if rec.get("status") != ANSWERED:
            run.read.append(ReadChains())
            continue
        finish = "length" if rec.get("answer_cut") else rec.get("finish_reason")
        run.read.append(read_chains(rec.get("answer"), finish, rules))


def _check_failed_share(run: TreeBuildRun) -> None:
    n = len(run.asks)
    refused = sum(1 for a in run.asks if run.records[a.key].get("status") != ANSWERED)
    unusable = sum(1 for r in run.read if not r.chains) - refused
    if refused + unusable > run.cfg.max_failed_share * n:
        raise InputError(
            f"{refused + unusable} of {n} items gave no usable skill chain ({refused} refused by the server, "
            f"{unusable} answers with no readable 'A -> B -> C' line), over max_failed_share "
            f"{run.cfg.max_failed_share:g}. Every answer is kept in {run.out / PROPOSALS_FILE}: fix the cause (a bigger "
            "model, --max-tokens) and rerun, or raise --max-failed-share", file=run.out / PROPOSALS_FILE)
    if refused + unusable:
        log.warning("tree build: %d of %d items gave no usable chain (counted in summary.json)", refused + unusable, n)


def _merge(run: TreeBuildRun) -> None:
    from ..llm.embedding import EmbeddingAttributor, EmbeddingConfig

    cfg = run.cfg
    embedder = EmbeddingAttributor(EmbeddingConfig(model=cfg.embedding_model))
    rules = MergeRules(cfg.merge_threshold, cfg.max_children, cfg.overflow, cfg.min_count)
    run.merged = merge_chains([r.chains for r in run.read], cfg.root, embedder.encode, rules)
    if not any(len(p) == 1 for p in run.merged.kept):
        raise InputError(f"no top-level skill has min_count {cfg.min_count} items: nothing is left (lower "
                         "--min-count, or ask more --items)", file=run.out / PROPOSALS_FILE)
    names = {p: p[-1] for p in run.merged.kept}
    run.tree = SkillTree.from_dict(nested_tree(cfg.root, run.merged.kept, run.merged.items, names),
                                   source=f"tree build of {run.corpus_path}", on_duplicate="error")


def _write(run: TreeBuildRun) -> None:
    assert run.tree is not None and run.merged is not None
    run.tree.save(run.out / TREE_FILE)
    SkillTree.load(run.out / TREE_FILE, on_duplicate="error")  # what tree validate reads: must load
    write_json(run.out / COUNTS_FILE, build_counts(run.tree, run.merged, run.cfg))
    write_jsonl(run.out / ITEMS_FILE, item_rows(run.ids, run.read, run.merged))
    run.summary = build_summary(run.ids, run.asks, run.records, run.read, run.merged, run.tree, run.counters, run.cfg,
                                time.time() - run.started)
    write_json(run.out / SUMMARY_FILE, run.summary)
    public = run.cfg.public_dict()
    write_manifest(run.out, config=_fingerprint(run.cfg), inputs=run.inputs,
                   client={k: v for k, v in public["llm"].items() if k in CLIENT_ONLY_FIELDS},
                   counts={k: run.summary[k] for k in ("items", "items_with_chains", "calls_this_run")},
                   wall_time_s=run.summary["wall_time_s"])
