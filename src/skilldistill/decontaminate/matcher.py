"""Matching corpus questions against benchmark problems: exact, then n-gram, then fuzzy."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..textutil import normalize_question
from .config import DecontaminationConfig, Method
from .problems import BenchmarkProblems

_WORD = re.compile(r"\w+")
_FUZZY_CHUNK = 4096


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
