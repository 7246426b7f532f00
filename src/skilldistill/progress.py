"""Progress that a log shows too: a rich bar on a terminal, log lines everywhere else.

Every long loop of the package draws its bar with :class:`StageProgress`, a drop-in
``rich.progress.Progress``. On a terminal it is the usual live bar. When the output is
not a terminal (CI, ``nohup``, SLURM, a pipe) a live bar shows nothing until it ends, so
instead a background thread logs one line per unfinished task at least every
``interval_s`` seconds (default 30; ``SKILLDISTILL_PROGRESS_INTERVAL`` overrides it;
``SKILLDISTILL_PROGRESS=lines`` asks for lines on a terminal too)::

    annotate items: 1,200/5,000 (24%) · 40.1 items/s · elapsed 30s · ETA 1m35s

The rate is the task's average since it started (done / elapsed), not rich's short-window
estimate, so a burst of finished work does not show as a huge rate. Lines go to the
``skilldistill.progress`` logger (the CLI prints INFO lines on stderr).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task
from rich.text import Text

log = logging.getLogger("skilldistill.progress")

DEFAULT_INTERVAL_S = 30.0

# Third-party loggers the CLI keeps at WARNING: at INFO the openai SDK's HTTP client (httpx2
# in openai >= 3, httpx before) logs one line per request, which at 100K items is millions
# of lines and several times the client's CPU per call.
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "aiohttp", "openai", "urllib3", "filelock", "datasets",
                 "sentence_transformers", "vllm", "accelerate")


@contextmanager
def library_bars_off() -> Iterator[None]:
    """Silence datasets' and transformers' tqdm bars ("Tokenizing train dataset", "Loading
    weights") for the block: our own bar or log line covers that work, and a tqdm bar in a
    log is one unreadable line of carriage returns. Restores what was on before."""
    import datasets
    from transformers.utils import logging as hf_logging

    ds_on, hf_on = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if ds_on:
            datasets.enable_progress_bars()
        if hf_on:
            hf_logging.enable_progress_bar()


def log_interval() -> float:
    raw = os.environ.get("SKILLDISTILL_PROGRESS_INTERVAL")
    try:
        return max(0.05, float(raw)) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _label(task: Task) -> str:
    text = Text.from_markup(str(task.description)).plain  # descriptions may carry rich markup
    return " ".join(text.split())


def status_line(task: Task, now: float | None = None) -> str:
    """``description: done/total (pct) · rate unit/s · elapsed · ETA`` for one task."""
    now = time.monotonic() if now is None else now
    unit = task.fields.get("unit", "")
    elapsed = (now - task.start_time) if task.start_time is not None else 0.0
    done = task.completed
    parts = [f"{_label(task)}: {done:,.0f}"]
    if task.total:
        parts[0] += f"/{task.total:,.0f} ({100 * done / task.total:.0f}%)"
    rate = done / elapsed if elapsed > 0 else 0.0
    pieces = parts + [f"{rate:,.1f} {unit + '/s' if unit else '/s'}".replace(" /s", "/s"), f"elapsed {_duration(elapsed)}"]
    if task.total and rate > 0 and done < task.total:
        pieces.append(f"ETA {_duration((task.total - done) / rate)}")
    extra = task.fields.get("status")
    if extra:
        pieces.append(str(extra))
    return " · ".join(pieces)


class AverageRate(ProgressColumn):
    """Done / elapsed since the task started, with the task's ``unit`` field."""

    def render(self, task: Task) -> Text:
        if not task.start_time or not task.completed:
            return Text("")
        elapsed = max((task.finished_time or task.elapsed or 0.0), 1e-9)
        unit = task.fields.get("unit", "")
        return Text(f"{task.completed / elapsed:,.1f} {unit}/s".replace(" /s", "/s"), style="cyan")


class StageProgress(Progress):
    """``rich.progress.Progress`` that also logs a status line every ``interval_s`` seconds
    when its console is not a terminal (see the module docstring)."""

    def __init__(self, *columns: Any, interval_s: float | None = None, console: Console | None = None,
                 **kwargs: Any) -> None:
        console = console or Console(stderr=True)
        super().__init__(*columns, console=console, **kwargs)
        self.interval_s = log_interval() if interval_s is None else interval_s
        # Log lines instead of a live bar off a terminal, or when asked to (SKILLDISTILL_PROGRESS=lines:
        # parallel arm workers, whose live bars would overwrite each other).
        lines = os.environ.get("SKILLDISTILL_PROGRESS", "").lower() == "lines"
        self._logging = not self.disable and (lines or not console.is_terminal)
        if self._logging:
            # A live bar on a non-terminal prints only when it stops; the log lines replace it.
            self.disable = True
            self.live.transient = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def logs_lines(self) -> bool:
        return self._logging

    def start(self) -> None:
        super().start()
        if self._logging and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._log_loop, name="skilldistill-progress", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            self.log_now(final=True)
        super().stop()

    def log_now(self, final: bool = False) -> None:
        """Log one line per task (unfinished ones, or every task when ``final``)."""
        if not self._logging:
            return
        with self._lock:
            tasks = [t for t in self.tasks if t.visible and (final or not t.finished)]
            lines = [status_line(t) for t in tasks if t.started]
        for line in lines:
            log.info("%s", line)

    def _log_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.log_now()


__all__ = ["NOISY_LOGGERS", "AverageRate", "StageProgress", "log_interval", "status_line"]
