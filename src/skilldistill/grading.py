"""Grade model answers against gold answers with math-verify, safely and in parallel.

Used by ``skilldistill profile`` and ``skilldistill evaluate``::

    from skilldistill.grading import grade, grade_many, extract_final_answer

    grade("\\frac{1}{2}", "<think>...</think> So the answer is $\\boxed{0.5}$.").correct  # True
    results = grade_many(golds, responses, processes=8, timeout_s=20)

Rules (see docs/grading.md):

- Only the text after the last ``</think>`` is graded; the reasoning is never looked at.
  A response that opens ``<think>`` and never closes it ran out of tokens: it is
  *truncated*, graded incorrect and flagged.
- The answer is the content of the last ``\\boxed{}`` (or ``\\fbox{}``); boxes written
  side by side (``\\boxed{1}, \\boxed{3}``) form one multi-part answer. Without a box, the
  last plain final-answer line counts ("The answer is ...", "Final answer: ...",
  "**Answer:** ...", "#### 42").
- Gold answers may be bare LaTeX, wrapped in ``$``, a GSM8K solution ending in ``#### N``,
  a full solution with a ``\\boxed{}``, or an OlympiadBench ``final_answer`` list (a list
  or its JSON / Python text) whose parts must all be given.
- Comparison is ``math_verify.verify(parse(gold), parse(pred))``, gold first.

math-verify bounds its own work with ``signal.alarm``, which only works in a process's
main thread. :func:`grade_many` therefore grades in worker processes (each runs the
grader in its main thread) and, on top, enforces a hard per-item timeout from the
parent: a worker stuck past ``timeout_s`` (or one that dies) is killed and replaced, its
item is marked with an ``error``, and the run goes on. Workers are fresh
``python -m skilldistill.grading`` processes (:mod:`skilldistill.subproc`), so a plain
script calling :func:`grade_many` needs no ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait as wait_connections
from typing import Any

# One balanced-brace \boxed{} parser for the project (ingestion uses it too).
from .textutil import find_boxed

__all__ = [
    "GradeResult",
    "GradingPool",
    "extract_final_answer",
    "find_boxed",
    "grade",
    "grade_many",
    "normalize_gold",
]

logger = logging.getLogger(__name__)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
DEFAULT_TIMEOUT_S = 20.0
# math-verify's own (SIGALRM) budget per parse / comparison, in whole seconds.
DEFAULT_MATH_VERIFY_TIMEOUT_S = 5


@dataclass(frozen=True)
class GradeResult:
    """The verdict on one response.

    ``correct``: the extracted answer equals the gold answer. ``truncated``: the response
    opened ``<think>`` and never closed it (always incorrect). ``pred``: the extracted
    answer text, ``None`` when the response holds no final answer. ``error``: why the
    grader could not judge (no gold answer, unparseable gold, timeout, crash), else ``None``.
    """

    correct: bool
    truncated: bool
    pred: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------
# Text allowed between boxes that belong to one answer: "$\boxed{1}$, $\boxed{2}$ and ..."
_BOX_JOINER_RE = re.compile(
    r"^(?:\s|\$|,|;|&|\\\\|\\quad|\\qquad|\\[,;: ]|\\text\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b)*$",
    re.IGNORECASE,
)
# The answer runs to the end of its sentence: a period followed by a space or line end
# (so "3.14" stays whole), or the end of the line.
_ANS = r"(?P<ans>[^\n]*?)[ \t]*(?:\.(?=[ \t]|$)|$)"
_FINAL_LINE_RES = [
    # "#### 42" (GSM8K style)
    re.compile(r"^[ \t]*####[ \t]*" + _ANS, re.MULTILINE),
    # "Final answer: 42", "**Final Answer:** 42", "The final answer is 42"
    re.compile(r"(?i:final\s+answer)(?:\s*\**\s*(?:is|:|=))+\s*\**[ \t]*" + _ANS, re.MULTILINE),
    # "The answer is 42", "the answer is: 42"
    re.compile(r"(?i:\banswer\s+is)\s*:?\s*\**[ \t]*" + _ANS, re.MULTILINE),
    # "Answer: 42", "**Answer:** 42" at the start of a line
    re.compile(r"^[ \t>*#]*(?i:answer)\s*\**\s*:\s*\**[ \t]*" + _ANS, re.MULTILINE),
    # A "**Final Answer**" heading with the answer on the next non-empty line
    re.compile(r"^[ \t#*]*(?i:final\s+answer)[ \t*:]*\n\s*" + _ANS, re.MULTILINE),
]


_HSPACE_RUN = re.compile(r"[^\S\n]+")
_VSPACE_RUN = re.compile(r"\s*\n\s*")


def _collapse_whitespace(text: str) -> str:
    """Runs of spaces/tabs -> one space, runs of blank lines (with their spaces) -> one newline."""
    return _VSPACE_RUN.sub("\n", _HSPACE_RUN.sub(" ", text))


def _clean_answer(ans: str) -> str | None:
    ans = ans.strip()
    # Trailing sentence punctuation and markdown emphasis are not part of the answer.
    for _ in range(3):
        ans = re.sub(r"(?:\*\*|__)$", "", ans).strip()
        ans = re.sub(r"^(?:\*\*|__)", "", ans).strip()
        ans = re.sub(r"(?<!\\)[.;,]$", "", ans).strip()
    ans = _strip_math_delimiters(ans)
    return ans or None


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            inner = s[len(left) : len(s) - len(right)]
            if left == "$" and "$" in inner.replace("\\$", ""):
                continue  # "$a$ and $b$": not one math span
            return inner.strip()
    return s


def extract_final_answer(text: str | None) -> tuple[str | None, bool]:
    """The final answer in a model response: ``(answer_text or None, truncated)``.

    Looks only after the last ``</think>``. ``truncated`` is True when ``<think>`` was
    opened and never closed; the answer is then ``None``.
    """
    if not text:
        return None, False
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        text = text[close + len(THINK_CLOSE) :]
    elif THINK_OPEN in text:
        return None, True

    boxes = find_boxed(text)
    if boxes:
        parts = [boxes[-1]]
        # Boxes written side by side are one answer ("\boxed{2}, \boxed{5}").
        for prev in reversed(boxes[:-1]):
            gap = text[prev[1] : parts[0][0]]
            if not _BOX_JOINER_RE.match(gap):
                break
            parts.insert(0, prev)
        contents = [p[2].strip() for p in parts if p[2].strip()]
        if contents:
            return ", ".join(contents), False

    # The line patterns run on text whose whitespace runs are one character long: on long
    # runs of spaces their optional-whitespace parts backtrack quadratically (100,000
    # spaces after "Final answer" took minutes); collapsing them is linear.
    text = _collapse_whitespace(text)
    best: tuple[int, str] | None = None
    for pattern in _FINAL_LINE_RES:
        for m in pattern.finditer(text):
            ans = _clean_answer(m.group("ans"))
            if ans and (best is None or m.start("ans") >= best[0]):
                best = (m.start("ans"), ans)
    return (best[1] if best else None), False


# --------------------------------------------------------------------------------------
# Gold answers
# --------------------------------------------------------------------------------------
_NUMBER_WITH_COMMAS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def _as_list(gold: Any) -> list[str]:
    # NaN is how pandas writes a missing value, and inf no answer: neither is the text "nan"
    if gold is None or (isinstance(gold, float) and not math.isfinite(gold)):
        return []
    if isinstance(gold, list | tuple):
        return [part for g in gold for part in _as_list(g)]
    if hasattr(gold, "tolist"):  # numpy arrays from pandas / pyarrow
        return _as_list(gold.tolist())
    s = str(gold).strip()
    if s.startswith("[") and s.endswith("]"):
        # OlympiadBench's final_answer stored as text: JSON first, then a Python literal
        # (literal_eval only builds constants, it never runs code).
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(s)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            # Only lists of strings: "[-3, 2]" is an interval, not a list of answers.
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return [str(v) for v in value if str(v).strip()]
    return [s] if s else []


def normalize_gold(gold: Any) -> str | None:
    """The gold answer as one LaTeX string (``None`` when there is none).

    Accepts bare answers, ``$``-wrapped answers, GSM8K ``... #### 1,234`` solutions, full
    solutions ending in ``\\boxed{}``, and OlympiadBench answer lists (list or its text);
    the parts of a multi-part answer are joined with ", " so all of them must match.
    """
    parts: list[str] = []
    for raw in _as_list(gold):
        s = raw.strip()
        if "####" in s:
            s = s.rsplit("####", 1)[1].strip()
            if _NUMBER_WITH_COMMAS_RE.match(s):
                s = s.replace(",", "")
        elif "\\boxed" in s or "\\fbox" in s:
            extracted, _ = extract_final_answer(s)
            s = extracted or s
        # "$" only delimits math in answer strings ("$69$,$84$"); an escaped "\$" is money.
        s = _UNESCAPED_DOLLAR_RE.sub("", _strip_math_delimiters(s)).strip()
        if s:
            parts.append(s)
    return ", ".join(parts) if parts else None


# --------------------------------------------------------------------------------------
# Grading one item
# --------------------------------------------------------------------------------------
def _mv_timeout(requested: int | None) -> int | None:
    # signal.alarm only works in the main thread: elsewhere run without math-verify's
    # own timeout (grade_many's worker processes add a hard one from the parent).
    if requested and threading.current_thread() is threading.main_thread():
        return int(requested)
    return None


_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")


@functools.lru_cache(maxsize=8192)
def _parse(latex: str, timeout: int | None) -> tuple:
    """math-verify's parse of one answer, cached: golds repeat across samples and many
    predicted answers ("2", "\\frac{1}{2}") repeat across items."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # Both sides are wrapped the same way, so a gold and a prediction written alike
    # always parse alike; the text fallback keeps word answers ("Monday") comparable.
    boxed = "\\boxed{" + _UNESCAPED_DOLLAR_RE.sub(" ", latex).strip() + "}"
    try:
        # raise_on_error: a timeout must reach the caller as an error (math-verify returns []
        # for it, which read as "wrong", and was cached); other parse errors stay "nothing parsed"
        return tuple(
            parse(
                boxed,
                extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
                parsing_timeout=timeout,
                raise_on_error=True,
            )
        )
    except Exception:
        return ()


_INTEGER_RE = re.compile(r"^[+-]?\d+$")


def _quick_verdict(gold_text: str, pred: str) -> bool | None:
    """A verdict without sympy where one is certain: identical text, or two integers."""
    g, p = gold_text.strip(), pred.strip()
    if g == p:
        return True
    if _INTEGER_RE.match(g) and _INTEGER_RE.match(p):
        return int(g) == int(p)
    return None


def grade(gold: Any, response: str | None, *, math_verify_timeout_s: int | None = DEFAULT_MATH_VERIFY_TIMEOUT_S) -> GradeResult:
    """Grade one response against one gold answer, in this process.

    No hard timeout here (math-verify's own one applies in the main thread only): use
    :func:`grade_many` for untrusted bulk input.
    """
    pred, truncated = extract_final_answer(response)
    gold_text = normalize_gold(gold)
    if gold_text is None:
        return GradeResult(False, truncated, pred, "no gold answer")
    if truncated or pred is None:
        return GradeResult(False, truncated, pred, None)
    quick = _quick_verdict(gold_text, pred)
    if quick is not None:
        return GradeResult(quick, False, pred, None)
    from math_verify import verify
    from math_verify.errors import TimeoutException

    timeout = _mv_timeout(math_verify_timeout_s)
    try:
        gold_parsed = _parse(gold_text, timeout)
        if not gold_parsed:
            return GradeResult(False, False, pred, f"cannot parse gold answer {gold_text[:200]!r}")
        pred_parsed = _parse(pred, timeout)
        if not pred_parsed:
            return GradeResult(False, False, pred, None)
        try:
            correct = bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=timeout, raise_on_error=True))
        except Exception:  # a comparison sympy cannot make: not equal, as math-verify itself says
            correct = False
    except TimeoutException:
        # counted as a grading error (math-verify alone reports a plain "wrong" for it)
        return GradeResult(False, False, pred, f"math-verify timed out after {timeout}s")
    return GradeResult(correct, False, pred, None)


def _grade_safe(gold: Any, response: str | None, mv_timeout: int | None) -> GradeResult:
    try:
        return grade(gold, response, math_verify_timeout_s=mv_timeout)
    except Exception as e:  # the grader must never take a run down
        pred, truncated = _safe_extract(response)
        return GradeResult(False, truncated, pred, f"{type(e).__name__}: {str(e)[:200]}")


def _safe_extract(response: str | None) -> tuple[str | None, bool]:
    try:
        return extract_final_answer(response)
    except Exception:
        return None, False


# --------------------------------------------------------------------------------------
# Process pool with a hard per-item timeout
# --------------------------------------------------------------------------------------
def _worker_main(conn: Any, mv_timeout: int | None) -> None:
    """Worker loop: receive chunks of (index, gold, response), send back one result each.

    Runs in the worker process's main thread, so math-verify's SIGALRM timeouts work.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, gold, response in chunk:
            r = _grade_safe(gold, response, mv_timeout)
            conn.send((index, r.correct, r.truncated, r.pred, r.error))


def worker_process_main() -> None:
    """``python -m skilldistill.grading MV_TIMEOUT``: one grading worker (see GradingPool)."""
    import sys

    from .subproc import child_channel

    conn = child_channel()
    arg = sys.argv[1] if len(sys.argv) > 1 else "none"
    _worker_main(conn, None if arg == "none" else int(arg))


@dataclass
class _Worker:
    process: Any  # a skilldistill.subproc.Worker
    inflight: deque  # indices sent and not yet answered, in order
    last_progress: float = 0.0

    @property
    def conn(self) -> Any:
        return self.process.connection


class GradingPool:
    """Worker processes that grade with a hard per-item timeout; reusable across calls.

    ``processes``: number of workers (default: all cores). ``timeout_s``: a worker that
    spends longer on one item is killed and replaced; the item gets
    ``error="timeout after Ns"``. A worker that dies gets its item ``error="worker died
    ..."``. Workers are fresh ``python -m skilldistill.grading`` processes
    (:mod:`skilldistill.subproc`), so a pool works from a plain script with no
    ``if __name__ == "__main__":`` guard. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        processes: int | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        math_verify_timeout_s: int | None = DEFAULT_MATH_VERIFY_TIMEOUT_S,
    ) -> None:
        self.processes = max(1, processes or os.cpu_count() or 1)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive (got {timeout_s}): a zero limit grades nothing")
        self.timeout_s = float(timeout_s)
        # Inside workers math-verify's alarm must fire before the parent's hard limit.
        mv = math_verify_timeout_s
        if mv is not None and mv >= self.timeout_s:
            mv = max(1, int(self.timeout_s / 2))
        self.math_verify_timeout_s = mv
        self._workers: list[_Worker] = []
        self.n_killed = 0

    # -- worker lifecycle -----------------------------------------------------------
    def _start_worker(self) -> _Worker:
        from .subproc import Worker

        mv = "none" if self.math_verify_timeout_s is None else str(self.math_verify_timeout_s)
        proc = Worker.start("skilldistill.grading", mv, name="skilldistill-grader")
        return _Worker(proc, deque(), time.monotonic())

    def _ensure_workers(self, wanted: int) -> None:
        while len(self._workers) < wanted:
            self._workers.append(self._start_worker())

    def _replace(self, w: _Worker) -> _Worker:
        w.process.kill()
        fresh = self._start_worker()
        self._workers[self._workers.index(w)] = fresh
        return fresh

    def close(self) -> None:
        for w in self._workers:
            w.process.close(timeout=2)
        self._workers = []

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work -------------------------------------------------------------------------
    def map(
        self,
        golds: Sequence[Any],
        responses: Sequence[str | None],
        *,
        progress: Callable[[int], None] | None = None,
        chunk_size: int | None = None,
    ) -> list[GradeResult]:
        """Grade ``responses[i]`` against ``golds[i]``; results in input order."""
        if len(golds) != len(responses):
            raise ValueError(f"{len(golds)} gold answers but {len(responses)} responses")
        n = len(golds)
        if n == 0:
            return []
        n_workers = min(self.processes, n)
        self._ensure_workers(n_workers)
        # Small chunks keep workers evenly loaded; per-item replies keep the timeout per item.
        size = chunk_size or max(1, min(32, math.ceil(n / (n_workers * 8))))
        run = _MapRun(self, golds, responses, progress, workers=self._workers[:n_workers],
                      todo=deque(list(range(i, min(i + size, n))) for i in range(0, n, size)), results=[None] * n)
        while run.done < n:
            run.hand_out_chunks()
            busy = [w for w in run.workers if w.inflight]
            if not busy:
                if run.todo:
                    continue  # a send failed and its worker was replaced: hand the work out again
                break
            run.collect_replies(busy)
            run.kill_stuck_workers()
        missing = sum(r is None for r in run.results)
        if missing:  # never a verdict for an answer that was not graded
            raise RuntimeError(f"grading stopped with {missing} of {n} answers ungraded")
        return list(run.results)  # type: ignore[arg-type]


@dataclass
class _MapRun:
    """One :meth:`GradingPool.map` call: its queue of chunks, its workers, its results."""

    pool: GradingPool
    golds: Sequence[Any]
    responses: Sequence[str | None]
    progress: Callable[[int], None] | None
    workers: list[_Worker]  # replaced in place when one is killed
    todo: deque[list[int]]  # chunks of indices not yet sent
    results: list[GradeResult | None]
    done: int = 0
    deaths_in_a_row: int = 0

    def send(self, w: _Worker, indices: list[int]) -> None:
        w.process.send([(i, _picklable(self.golds[i]), self.responses[i]) for i in indices])
        w.inflight.extend(indices)
        w.last_progress = time.monotonic()

    def record(self, index: int, result: GradeResult) -> None:
        self.results[index] = result
        self.done += 1
        if self.progress:
            self.progress(1)

    def fail_current(self, w: _Worker, error: str, died: bool = False) -> _Worker:
        """Kill and replace ``w``: its current item gets ``error``, the rest of its chunk goes back to the queue."""
        lost = list(w.inflight)
        w.inflight.clear()
        if died:
            self.deaths_in_a_row += 1
            if self.deaths_in_a_row >= 3:
                # Workers that die before grading anything are broken, not the answers:
                # stop rather than mark every answer wrong.
                self.pool.close()
                raise RuntimeError(f"grading workers keep dying ({error}); nothing was graded wrong for it")
        if lost:
            first, rest = lost[0], lost[1:]
            # No extraction here: it is the step that may have hung, and the parent
            # has no time limit of its own. The item counts wrong, with its reason.
            self.record(first, GradeResult(False, False, None, error))
            if rest:
                self.todo.appendleft(rest)
        self.pool.n_killed += 1
        fresh = self.pool._replace(w)
        self.workers[self.workers.index(w)] = fresh
        return fresh

    def hand_out_chunks(self) -> None:
        """A chunk to every idle worker while chunks are left."""
        from .subproc import WorkerDied

        for w in self.workers:
            if not w.inflight and self.todo:
                chunk = self.todo.popleft()
                try:
                    self.send(w, chunk)
                except WorkerDied as e:
                    # died while idle (between calls, e.g. the OOM killer): its chunk was
                    # never sent, so it goes back to the queue for the replacement
                    self.todo.appendleft(chunk)
                    self.fail_current(w, f"worker died ({e})", died=True)

    def collect_replies(self, busy: list[_Worker]) -> None:
        """Wait until a busy worker answers or the first one runs out of time; take every reply waiting."""
        from .subproc import WorkerDied

        now = time.monotonic()
        wait_for = max(0.0, min(w.last_progress + self.pool.timeout_s for w in busy) - now)
        ready = wait_connections([w.conn for w in busy], timeout=wait_for)
        by_conn = {id(w.conn): w for w in busy}
        for conn in ready:
            w = by_conn[id(conn)]
            # Drain every reply already waiting on this pipe.
            while True:
                try:
                    index, correct, truncated, pred, error = w.process.recv()
                except WorkerDied as e:
                    self.fail_current(w, f"worker died ({e})", died=True)
                    break
                if w.inflight and w.inflight[0] == index:
                    w.inflight.popleft()
                elif index in w.inflight:  # pragma: no cover - replies come in order
                    w.inflight.remove(index)
                self.deaths_in_a_row = 0
                self.record(index, GradeResult(correct, truncated, pred, error))
                w.last_progress = time.monotonic()
                if not w.inflight or not conn.poll():
                    break

    def kill_stuck_workers(self) -> None:
        """Replace every worker that has spent over the time limit on one item."""
        now = time.monotonic()
        for w in list(self.workers):
            if w.inflight and now - w.last_progress > self.pool.timeout_s:
                logger.warning("grading item %d took over %.0fs: worker killed", w.inflight[0], self.pool.timeout_s)
                self.fail_current(w, f"timeout after {self.pool.timeout_s:g}s")


def _picklable(gold: Any) -> Any:
    if hasattr(gold, "tolist"):
        return gold.tolist()
    return gold


def grade_many(
    golds: Sequence[Any],
    responses: Sequence[str | None],
    processes: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    progress: Callable[[int], None] | None = None,
    math_verify_timeout_s: int | None = DEFAULT_MATH_VERIFY_TIMEOUT_S,
) -> list[GradeResult]:
    """Grade many (gold, response) pairs in worker processes; results in input order.

    ``processes``: workers to use (default: all cores); ``0`` grades in this process with
    no hard timeout (for tiny inputs and debugging). ``timeout_s``: hard limit per item;
    a stuck worker is killed and replaced and the item gets an ``error``.
    ``progress(k)`` is called as k more items finish.
    """
    if processes == 0:
        out = []
        for g, r in zip(golds, responses, strict=True):
            out.append(_grade_safe(g, r, math_verify_timeout_s))
            if progress:
                progress(1)
        return out
    pool = _shared_pool(processes, timeout_s, math_verify_timeout_s)
    with _SHARED_LOCK:
        try:
            return pool.map(golds, responses, progress=progress)
        except BaseException:
            pool.close()  # its workers may be mid-item: never hand them to the next call
            raise


# Worker processes take about a second to start (Python, math-verify): one pool per
# setting is kept for the life of the process and shared by every grade_many call.
_SHARED: dict[tuple, GradingPool] = {}
_SHARED_LOCK = threading.Lock()


def _shared_pool(processes: int | None, timeout_s: float, mv: int | None) -> GradingPool:
    import atexit

    key = (processes or os.cpu_count() or 1, float(timeout_s), mv)
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None:
            pool = _SHARED[key] = GradingPool(processes, timeout_s=timeout_s, math_verify_timeout_s=mv)
            if len(_SHARED) == 1:
                atexit.register(close_shared_pools)
        return pool


def close_shared_pools() -> None:
    """Stop the workers grade_many keeps between calls (also done at exit)."""
    with _SHARED_LOCK:
        for pool in _SHARED.values():
            pool.close()
        _SHARED.clear()


if __name__ == "__main__":
    worker_process_main()
