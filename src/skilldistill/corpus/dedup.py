"""Dropping copies: a question the corpus already holds, and corpus problems that are
(near-)copies of benchmark problems (``--exclude``)."""

from __future__ import annotations

import time
from typing import Any

from ..decontaminate.config import DecontaminationConfig
from ..decontaminate.matcher import Decontaminator, Match
from ..decontaminate.problems import BenchmarkProblems
from ..decontaminate.report import contamination_report
from ..textutil import normalize_question, question_id


class RepeatFilter:
    """Admits records one by one: drops a question seen before (``drop_repeats``) and
    makes every admitted record's id unique."""

    def __init__(self, *, drop_repeats: bool) -> None:
        self.drop_repeats = drop_repeats
        self.seen_questions: set[str] = set()
        self.seen_ids: set[str] = set()
        self.id_collisions = 0  # ids rehashed because another record had them

    def admit(self, rec: dict[str, str]) -> bool:
        """False for a repeated question; else True, with ``rec["id"]`` made unique in place."""
        key = normalize_question(rec["question"])
        if self.drop_repeats and key in self.seen_questions:
            return False
        self.seen_questions.add(key)
        if rec["id"] in self.seen_ids:
            self.id_collisions += 1
            rec["id"] = question_id(rec["question"])
            k = 2
            while rec["id"] in self.seen_ids:  # the same question twice (--no-dedup): -2, -3, ...
                rec["id"] = f"{question_id(rec['question'])}-{k}"
                k += 1
        self.seen_ids.add(rec["id"])
        return True


def drop_benchmark_copies(
    records: list[dict[str, str]], wheres: list[str], problems: BenchmarkProblems, config: DecontaminationConfig,
    *, progress: bool,
) -> tuple[list[dict[str, str]], list[tuple[str, str]], dict[str, Any]]:
    """The records that match no benchmark problem, the (reason, where) of each dropped one,
    and the report for decontamination.json."""
    ids = [r["id"] for r in records]
    questions = [r["question"] for r in records]
    t0 = time.time()
    matches = _find_with_progress(Decontaminator(problems, config), questions, progress=progress)
    report = contamination_report(problems, matches, ids, questions, config, wall_s=time.time() - t0)
    kept: list[dict[str, str]] = []
    dropped: list[tuple[str, str]] = []
    for rec, where, m in zip(records, wheres, matches, strict=True):
        if m is None:
            kept.append(rec)
        else:
            dropped.append((f"in an excluded benchmark ({m.method})", where))
    return kept, dropped, report


def _find_with_progress(index: Decontaminator, questions: list[str], *, progress: bool) -> list[Match | None]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..progress import StageProgress

    with StageProgress(TextColumn("[bold]decontaminate"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
                       TimeElapsedColumn(), transient=True, disable=not progress) as prog:
        task = prog.add_task("decontaminate", total=len(questions))
        return index.find(questions, lambda k: prog.advance(task, k))
