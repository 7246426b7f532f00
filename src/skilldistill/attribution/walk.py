"""The top-down walk: at a node, the decider is asked which of the node's children an item
needs; every chosen child is expanded in turn until leaves (or ``max_depth``).

The walk goes one tree level at a time for *all* pending items together, so each level is
one ``decide`` batch: vLLM gets one big ``generate`` call, the OpenAI backend keeps hundreds
of requests in flight, the embedding backend encodes a level at once. Every decision is
appended to ``calls.jsonl`` the moment it arrives; one already final there is not asked again.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import AppendLog
from ..tree import Chain, SkillTree, chain_str
from .cache import FINAL, PENDING_REPAIR, RETRYABLE, Decisions, add_token_counts, load_decisions
from .config import AnnotateConfig
from .deciders import Decider, Question
from .decision_keys import DecisionKeys


@dataclass
class RunCounters:
    """What this run asked: the keys it decided, its requests and tokens, per-level counts."""

    new_keys: set[str] = field(default_factory=set)
    calls: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    per_level: list[dict[str, int]] = field(default_factory=list)

    def add(self, other: RunCounters) -> None:
        """Count ``other``'s work in too (its per-level rows are the caller's to label)."""
        self.new_keys |= other.new_keys
        self.calls += other.calls
        self.prompt_tokens = add_token_counts(self.prompt_tokens, other.prompt_tokens)
        self.completion_tokens = add_token_counts(self.completion_tokens, other.completion_tokens)


@dataclass
class Level:
    """One tree level of the walk: what each pending item asks there."""

    asks: list[tuple[int, Chain, str]]  # (item, node path, decision key) of every question of the level
    questions: dict[str, Question]  # key -> the question still to decide (not final in the cache)
    key_items: dict[str, list[int]]  # key -> the items asking it (items with the same text share it)
    outstanding: collections.Counter[int] = field(default_factory=collections.Counter)  # item -> its undecided questions
    more: set[int] = field(default_factory=set)  # items with a chosen child to expand on the next level


def make_progress(enabled: bool) -> Any:
    """The stage's progress bars (a log line every 30 s off a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..progress import AverageRate, StageProgress

    return StageProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        AverageRate(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def walk_tree(
    ids: list[str],
    texts: list[str],
    text_hashes: list[str],
    keys: DecisionKeys,
    tree: SkillTree,
    cfg: AnnotateConfig,
    decider: Decider,
    calls_path: Path,
    show_progress: bool,
    retry_failed: bool = False,
    starts: list[list[Chain]] | None = None,
) -> tuple[Decisions, RunCounters]:
    """Walk every item down ``tree`` with ``decider``, level by level; every decision is read
    from and appended to ``calls_path``. ``starts``: per item, the nodes its walk starts at
    (default: the root; an anchored walk starts below its labelled nodes, ``anchor.py``).
    Returns (every decision by key, this run's counts)."""
    walk = TreeWalk(ids, texts, text_hashes, keys, tree, cfg, decider, load_decisions(calls_path), retry_failed)
    walk.run(calls_path, show_progress, starts)
    return walk.cache, walk.counters


class TreeWalk:
    """The state the walk carries from level to level: the items, the decisions so far and
    this run's counts; ``run`` reads top to bottom as the steps of one level."""

    def __init__(self, ids: list[str], texts: list[str], text_hashes: list[str], keys: DecisionKeys, tree: SkillTree,
                 cfg: AnnotateConfig, decider: Decider, cache: Decisions,
                 retry_failed: bool) -> None:
        self.ids, self.texts, self.text_hashes, self.keys = ids, texts, text_hashes, keys
        self.tree, self.cfg, self.decider, self.cache = tree, cfg, decider, cache
        self.retry_failed = retry_failed
        self.counters = RunCounters()
        self.progress: Any = None
        self.items_task: Any = None
        self.log_file: AppendLog | None = None

    def run(self, calls_path: Path, show_progress: bool, starts: list[list[Chain]] | None = None) -> None:
        frontier: dict[int, list[Chain]] = ({i: [()] for i in range(len(self.texts))} if starts is None
                                            else {i: paths for i, paths in enumerate(starts) if paths})
        self.progress = make_progress(show_progress)
        self.log_file = AppendLog(calls_path).open()
        try:
            with self.progress:
                self.items_task = self.progress.add_task("annotate items", total=len(self.texts), unit="items")
                self.progress.advance(self.items_task, len(self.texts) - len(frontier))  # nothing to ask
                depth = 0
                while frontier:
                    level = self.questions_of(frontier)
                    self.count_items_done_from_cache(level)
                    self.decide(level, depth)
                    frontier = self.next_frontier(level)
                    depth += 1
        finally:
            self.log_file.close()

    def questions_of(self, frontier: dict[int, list[Chain]]) -> Level:
        """All questions of this level, for every pending item at once."""
        level = Level([], {}, collections.defaultdict(list))
        for i, paths in frontier.items():
            for path in paths:
                node = self.tree.node(path)
                if node.is_leaf or (self.cfg.max_depth is not None and len(path) >= self.cfg.max_depth):
                    continue
                key = self.keys(path, self.text_hashes[i])
                level.asks.append((i, path, key))
                level.key_items[key].append(i)
                cached = self.cache.get(key)
                ask = (cached is None or cached.get("status") not in FINAL
                       or (self.retry_failed and cached.get("status") in RETRYABLE))
                if key not in level.questions and ask:
                    pending = cached if cached is not None and cached.get("status") == PENDING_REPAIR else None
                    before = int((cached or {}).get("calls") or 0)
                    level.questions[key] = Question(key, self.texts[i], path, list(node.children), pending, before)
        return level

    def count_items_done_from_cache(self, level: Level) -> None:
        """Items finish when their last question of the walk is decided: those whose
        questions here were all answered before (cache) and lead nowhere deeper are done now;
        the rest finish in ``record`` as their decisions arrive."""
        level.outstanding = collections.Counter(i for i, _, key in level.asks if key in level.questions)
        for i, path, key in level.asks:
            if key not in level.questions and _has_inner_child(self.tree, self.cfg, path, self.cache[key]):
                level.more.add(i)
        asked_items = {i for i, _, _ in level.asks}
        self.progress.advance(self.items_task,
                              sum(1 for i in asked_items if level.outstanding[i] == 0 and i not in level.more))

    def decide(self, level: Level, depth: int) -> None:
        """One ``decide`` batch for the level's open questions, each decision recorded as it arrives."""
        level_task = self.progress.add_task(f"annotate depth {depth}", total=len(level.questions), unit="decisions")

        def on_decision(q: Question, rec: dict[str, Any]) -> None:
            self.record(level, q, rec)

        def on_progress(k: int) -> None:
            self.progress.advance(level_task, k)

        if level.questions:
            self.decider.decide(list(level.questions.values()), on_decision, on_progress)
        self.progress.remove_task(level_task)
        # one row per tree depth asked (an anchored walk's round holds several: its items start deeper)
        asked = collections.Counter(len(path) for _, path, _ in level.asks)
        new = collections.Counter(len(q.path) for q in level.questions.values())
        rows = {row["depth"]: row for row in self.counters.per_level}
        for d in sorted(asked):
            if d in rows:
                rows[d]["questions"] += asked[d]
                rows[d]["new"] += new[d]
            else:
                self.counters.per_level.append({"depth": d, "questions": asked[d], "new": new[d]})
        self.counters.per_level.sort(key=lambda row: row["depth"])

    def record(self, level: Level, q: Question, rec: dict[str, Any]) -> None:
        """A decision arrived: append it to the cache file, count it, advance finished items."""
        rec = {"key": q.key, "node": chain_str(q.path), "item": self.ids[level.key_items[q.key][0]], **rec}
        assert self.log_file is not None
        self.log_file.append(rec)
        self.cache[q.key] = rec
        if rec["status"] not in FINAL:
            return
        counters = self.counters
        counters.new_keys.add(q.key)
        counters.calls += rec.get("calls", 0) - q.calls_before  # the requests of this run only
        counters.prompt_tokens = add_token_counts(counters.prompt_tokens, rec.get("prompt_tokens"))
        counters.completion_tokens = add_token_counts(counters.completion_tokens, rec.get("completion_tokens"))
        has_more = _has_inner_child(self.tree, self.cfg, q.path, rec)
        done = 0
        for i in level.key_items[q.key]:
            level.outstanding[i] -= 1
            if has_more:
                level.more.add(i)
            if level.outstanding[i] == 0 and i not in level.more:
                done += 1
        if done:
            self.progress.advance(self.items_task, done)

    def next_frontier(self, level: Level) -> dict[int, list[Chain]]:
        """Per item, the chosen children to ask about on the next level."""
        nxt: dict[int, list[Chain]] = collections.defaultdict(list)
        for i, path, key in level.asks:
            rec = self.cache.get(key)
            if rec is None or rec.get("status") not in FINAL:
                raise RuntimeError(f"no decision for node {chain_str(path) or 'the root'} of item {self.ids[i]!r}")
            for child in rec.get("chosen", []):
                nxt[i].append(path + (child,))
        return dict(nxt)


def _has_inner_child(tree: SkillTree, cfg: AnnotateConfig, path: Chain, rec: dict[str, Any]) -> bool:
    for child in rec.get("chosen", []):
        child_path = path + (child,)
        if child_path in tree and not tree.node(child_path).is_leaf and (cfg.max_depth is None or len(child_path) < cfg.max_depth):
            return True
    return False
