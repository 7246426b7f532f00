"""The README's quick start is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _quick_start() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command_verbatim():
    demo, tests = _quick_start()
    assert demo.endswith("skilldistill demo") and "pytest" in tests
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert ci[-1] == tests
    assert re.search(r"python -m pytest -q && scripts/test-real-engines$", tests)  # both suites


def test_scripts_the_readme_runs_exist_and_are_executable():
    import os

    script = REPO / "scripts" / "test-real-engines"
    assert script.exists() and os.access(script, os.X_OK)
