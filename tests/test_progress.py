"""Progress off a terminal: log lines at a fixed interval, with done/total, rate and ETA."""

from __future__ import annotations

import io
import logging
import time

from rich.console import Console

from skilldistill.progress import StageProgress, status_line


def _console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=100)


def test_non_terminal_output_gets_periodic_status_lines(caplog):
    caplog.set_level(logging.INFO, logger="skilldistill.progress")
    with StageProgress(console=_console(False), interval_s=0.05) as bar:
        task = bar.add_task("annotate items", total=200, unit="items")
        for _ in range(4):
            bar.advance(task, 25)
            time.sleep(0.08)
    lines = [r.getMessage() for r in caplog.records if r.name == "skilldistill.progress"]
    assert len(lines) >= 3  # the periodic lines plus the final one
    assert any(line.startswith("annotate items: ") and "/200 (" in line and "items/s" in line and "ETA" in line
               for line in lines[:-1])
    assert lines[-1].startswith("annotate items: 100/200 (50%)")


def test_a_silent_stage_still_logs(caplog):
    # no update at all for a while (one long batch): the timer thread still reports
    caplog.set_level(logging.INFO, logger="skilldistill.progress")
    with StageProgress(console=_console(False), interval_s=0.05) as bar:
        bar.add_task("generate profile", total=10, unit="samples")
        time.sleep(0.2)
    assert sum("generate profile: 0/10" in r.getMessage() for r in caplog.records) >= 2


def test_terminal_output_draws_a_bar_and_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="skilldistill.progress")
    console = _console(True)
    with StageProgress(console=console, interval_s=0.05) as bar:
        task = bar.add_task("x", total=3)
        bar.advance(task, 3)
        time.sleep(0.12)
    assert not [r for r in caplog.records if r.name == "skilldistill.progress"]
    assert "3/3" in console.file.getvalue() or "━" in console.file.getvalue()


def test_lines_can_be_asked_for_on_a_terminal(caplog, monkeypatch):
    monkeypatch.setenv("SKILLDISTILL_PROGRESS", "lines")
    caplog.set_level(logging.INFO, logger="skilldistill.progress")
    with StageProgress(console=_console(True), interval_s=10) as bar:
        bar.advance(bar.add_task("train a/seed0", total=4, unit="steps"), 4)
    assert any(r.getMessage().startswith("train a/seed0: 4/4 (100%)") for r in caplog.records)


def test_disabled_progress_is_silent(caplog):
    caplog.set_level(logging.INFO, logger="skilldistill.progress")
    with StageProgress(console=_console(False), interval_s=0.01, disable=True) as bar:
        bar.advance(bar.add_task("x", total=2), 2)
        time.sleep(0.05)
    assert not caplog.records


def test_rate_is_the_average_since_start_not_a_burst():
    # 5,000 decisions arriving at once after 400 s read 12.5/s, not "40,010/s"
    bar = StageProgress(console=_console(False), interval_s=10)
    task_id = bar.add_task("annotate items", total=5000, unit="items")
    task = bar.tasks[0]
    task.start_time = 100.0
    bar.update(task_id, completed=5000)
    line = status_line(task, now=500.0)
    assert "5,000/5,000 (100%)" in line and "12.5 items/s" in line and "elapsed 6m40s" in line
