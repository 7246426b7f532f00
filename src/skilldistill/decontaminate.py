"""Decontamination: find corpus problems that are copies, or near-copies, of benchmark problems.

Three tests, each as the field runs it, applied in this order (the first that fires names
the match):

- ``exact``: the normalised question (:func:`~skilldistill.textutil.normalize_question`:
  case, whitespace, ``$`` and ``\\(\\)`` folded) equals a benchmark problem's.
- ``ngram``: word n-gram overlap (open-r1 and s1 use 8-grams). A corpus item matches a
  benchmark problem when it holds at least ``ngram_min_overlap`` of that problem's
  distinct n-grams. ``0`` means any shared n-gram, which is open-r1's rule; the default
  0.5 also catches a one-word edit (it breaks at most n of the n-grams) while keeping
  problems that merely share a stock phrase ("Find the number of ordered pairs of
  positive integers ..."). Problems shorter than n words are left to the other tests.
- ``fuzzy``: rapidfuzz's ``fuzz.ratio`` (normalised Indel similarity, 0-100) of the
  normalised texts at least ``fuzzy_threshold`` (OpenThoughts: 95), computed for every
  corpus item against every benchmark problem with ``rapidfuzz.process.cdist`` (C++,
  all cores), in chunks so memory stays bounded.

Benchmarks are given as registered names (``aime24``, ``math500``, ...; read from
``data_dir/<name>/`` or the Hugging Face hub, as ``evaluate`` reads them) or as files and
folders of ``.jsonl``/``.json``/``.parquet`` with a ``problem``/``question`` field.
bench/decontamination.py measures 100K items against the five evaluation benchmarks.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import InputError
from .textutil import normalize_question

Method = Literal["exact", "ngram", "fuzzy"]
METHODS: tuple[Method, ...] = ("exact", "ngram", "fuzzy")
QUESTION_FIELDS = ("problem", "question", "Problem", "Question", "prompt")
# The five evaluation benchmarks of the paper (MATH-500 whole: math_l5 is a subset of it).
PAPER_DECONTAMINATION = ("aime24", "aime25", "amc23", "math500", "olympiadbench")

_WORD = re.compile(r"\w+")
_FUZZY_CHUNK = 4096
_EXAMPLES_PER_METHOD = 5


class DecontaminationConfig(BaseModel):
    """How corpus problems are matched against benchmark problems."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Method] = Field(default_factory=lambda: list(METHODS), min_length=1,
                                  description="Tests to run: exact, ngram, fuzzy (in that order).")
    ngram_n: int = Field(8, ge=2, le=64, description="Words per n-gram (open-r1, s1: 8).")
    ngram_min_overlap: float = Field(
        0.5, ge=0, le=1, description="Share of a benchmark problem's n-grams an item must hold (0: any one, open-r1's rule).")
    fuzzy_threshold: float = Field(95.0, gt=0, le=100, description="rapidfuzz fuzz.ratio needed (OpenThoughts: 95).")
    data_dir: str | None = Field(None, description="Folder with <name>/test.jsonl for benchmarks given by name "
                                 "(else the Hugging Face hub).")


@dataclass
class BenchmarkProblems:
    """Benchmark problems to match against: which benchmark, its id, its text."""

    benchmark: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # benchmark -> file or registry name it came from

    def __len__(self) -> int:
        return len(self.questions)

    def add(self, benchmark: str, pid: str, question: str) -> None:
        self.benchmark.append(benchmark)
        self.ids.append(pid)
        self.questions.append(question)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.benchmark))


def load_benchmark_problems(entries: Sequence[str | Path], *, data_dir: str | Path | None = None) -> BenchmarkProblems:
    """Problems of each entry: a registered benchmark name, or a file/folder of rows."""
    from .corpus import _to_text, iter_local_rows, list_local_files
    from .evaluate import BENCHMARKS, load_benchmark

    out = BenchmarkProblems()
    for entry in entries:
        s = str(entry)
        p = Path(s).expanduser()
        if not p.exists() and s in BENCHMARKS:
            for item in load_benchmark(s, data_dir=data_dir):
                out.add(s, item.id, item.question)
            out.sources[s] = f"{data_dir}/{BENCHMARKS[s].local_name or s}" if data_dir else BENCHMARKS[s].hf_id
            continue
        if not p.exists():
            raise InputError(f"exclusion file not found (nor a benchmark name: {', '.join(BENCHMARKS)})", file=p)
        # benchmarks/math500/test.jsonl -> math500; a lone file -> its stem
        name = p.parent.name if p.is_file() and p.stem in ("test", "train", "validation") else p.stem
        out.sources[name] = str(p)
        for f in list_local_files(p):
            for row in iter_local_rows(f):
                if row.data is None:  # a problem left unread would stay in the corpus: read it whole or stop
                    raise InputError(f"unreadable row in an exclusion file ({row.error or 'not an object'})",
                                     file=f, row=row.line)
                # per row: a file mixing "problem" and "question" rows must not skip either kind
                qfield = next((k for k in QUESTION_FIELDS if _to_text(row.data.get(k))), None)
                if qfield is None:
                    raise InputError(f"no question (looked for {', '.join(QUESTION_FIELDS)})", file=f, row=row.line)
                q = _to_text(row.data.get(qfield))
                if q and q.strip():
                    pid = _to_text(row.data.get("id") or row.data.get("unique_id")) or f"{f.name}:{row.line}"
                    out.add(name, pid, q)
    return out


@dataclass
class Match:
    """A corpus item found in a benchmark."""

    method: Method
    problem: int  # index into BenchmarkProblems
    score: float  # exact: 1; ngram: share of the problem's n-grams held; fuzzy: fuzz.ratio


def _ngrams(tokens: list[str], n: int) -> set[int]:
    return {hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


class Decontaminator:
    """An index over benchmark problems; :meth:`find` matches corpus questions against it."""

    def __init__(self, problems: BenchmarkProblems, config: DecontaminationConfig | None = None) -> None:
        self.problems = problems
        self.cfg = config or DecontaminationConfig()
        self.norm = [normalize_question(q) for q in problems.questions]
        self.exact: dict[str, int] = {}
        for j, q in enumerate(self.norm):
            self.exact.setdefault(q, j)
        n = self.cfg.ngram_n
        self.gram_index: dict[int, list[int]] = defaultdict(list)
        self.gram_counts = np.zeros(len(problems), dtype=np.int64)
        for j, q in enumerate(self.norm):
            tokens = _WORD.findall(q)
            if len(tokens) < n:
                continue  # too short for n-grams: exact and fuzzy cover it
            grams = _ngrams(tokens, n)
            self.gram_counts[j] = len(grams)
            for g in grams:
                self.gram_index[g].append(j)

    def find(self, questions: Sequence[str], progress: Callable[[int], None] | None = None) -> list[Match | None]:
        """The first match of each question, or None. ``progress(k)``: k more questions done."""
        methods = set(self.cfg.methods)
        out: list[Match | None] = [None] * len(questions)
        pending: list[int] = []  # no exact or n-gram match: the fuzzy test decides
        norm_q: list[str] = []
        n, min_overlap = self.cfg.ngram_n, self.cfg.ngram_min_overlap
        for i, q in enumerate(questions):
            nq = normalize_question(q)
            norm_q.append(nq)
            if "exact" in methods and nq in self.exact:
                out[i] = Match("exact", self.exact[nq], 1.0)
            elif "ngram" in methods and (m := self._ngram_match(nq, n, min_overlap)) is not None:
                out[i] = m
            elif "fuzzy" in methods and self.norm:
                pending.append(i)
                continue
            if progress is not None:
                progress(1)
        if pending:
            self._fuzzy(pending, norm_q, out, progress)
        return out

    def _ngram_match(self, nq: str, n: int, min_overlap: float) -> Match | None:
        tokens = _WORD.findall(nq)
        if len(tokens) < n:
            return None
        shared: Counter[int] = Counter()
        for g in _ngrams(tokens, n):
            for j in self.gram_index.get(g, ()):
                shared[j] += 1
        if not shared:
            return None
        j, k = max(shared.items(), key=lambda jk: (jk[1] / self.gram_counts[jk[0]], -jk[0]))
        overlap = k / self.gram_counts[j]
        if overlap >= min_overlap and k > 0:
            return Match("ngram", int(j), round(float(overlap), 4))
        return None

    def _fuzzy(self, pending: list[int], norm_q: list[str], out: list[Match | None],
               progress: Callable[[int], None] | None) -> None:
        from rapidfuzz import fuzz, process

        cutoff = self.cfg.fuzzy_threshold
        for start in range(0, len(pending), _FUZZY_CHUNK):
            rows = pending[start : start + _FUZZY_CHUNK]
            scores = process.cdist([norm_q[i] for i in rows], self.norm, scorer=fuzz.ratio, score_cutoff=cutoff,
                                   dtype=np.float32, workers=-1)
            best = scores.argmax(axis=1)
            for r, i in enumerate(rows):
                s = float(scores[r, best[r]])
                if s >= cutoff:
                    out[i] = Match("fuzzy", int(best[r]), round(s, 2))
            if progress is not None:
                progress(len(rows))


def contamination_report(
    problems: BenchmarkProblems, matches: Sequence[Match | None], ids: Sequence[str], questions: Sequence[str],
    config: DecontaminationConfig, *, wall_s: float | None = None,
) -> dict[str, Any]:
    """``decontamination.json``: per benchmark, items matched by each method, with examples."""
    per: dict[str, dict[str, Any]] = {}
    for name, n in problems.counts().items():
        per[name] = {"problems": n, "source": problems.sources.get(name), "items_removed": {m: 0 for m in config.methods},
                     "problems_hit": 0, "examples": {m: [] for m in config.methods}}
    hit: dict[str, set[int]] = defaultdict(set)
    for i, m in enumerate(matches):
        if m is None:
            continue
        name = problems.benchmark[m.problem]
        b = per[name]
        b["items_removed"][m.method] += 1
        hit[name].add(m.problem)
        if len(b["examples"][m.method]) < _EXAMPLES_PER_METHOD:
            b["examples"][m.method].append({
                "corpus_id": ids[i], "benchmark_id": problems.ids[m.problem], "score": m.score,
                "corpus_question": questions[i][:400], "benchmark_question": problems.questions[m.problem][:400],
            })
    for name, b in per.items():
        b["problems_hit"] = len(hit[name])
    removed = Counter(m.method for m in matches if m is not None)
    return {
        "config": config.model_dump(mode="json"),
        "items_checked": len(matches),
        "items_removed": sum(removed.values()),
        "items_removed_by_method": {m: removed.get(m, 0) for m in config.methods},
        "benchmarks": per,
        **({"wall_s": round(wall_s, 3)} if wall_s is not None else {}),
    }


def decontaminate(
    ids: Sequence[str], questions: Sequence[str], entries: Sequence[str | Path], config: DecontaminationConfig | None = None,
    *, progress: Callable[[int], None] | None = None,
) -> tuple[list[Match | None], dict[str, Any], BenchmarkProblems]:
    """Match ``questions`` against the benchmarks ``entries``: (matches, report, problems)."""
    cfg = config or DecontaminationConfig()
    t0 = time.time()
    problems = load_benchmark_problems(entries, data_dir=cfg.data_dir)
    matches = Decontaminator(problems, cfg).find(questions, progress)
    return matches, contamination_report(problems, matches, ids, questions, cfg, wall_s=time.time() - t0), problems
