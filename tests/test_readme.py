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


def _commands() -> list[list[str]]:
    """Every shell command in the README's bash blocks, as tokens (continuations joined)."""
    import shlex

    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split(" #", 1)[0].strip()
            if cmd:
                out.append(shlex.split(cmd))
    return out


PATH_FLAGS = {"--tree", "-t", "--exclude", "-x", "--config_file", "--data-dir", "--benchmarks-dir", "--short-names"}


def test_readme_paths_exist_from_the_clone_root():
    """Inputs named in README commands exist from a fresh clone's root (shared/ beside it,
    as in CI); outputs go under runs/, names are bundled trees or registered benchmarks."""
    from skilldistill.evaluate import BENCHMARKS
    from skilldistill.tree import available_bundled_trees

    names = set(BENCHMARKS) | set(available_bundled_trees())
    checked = 0
    for tokens in _commands():
        for i, tok in enumerate(tokens):
            flag_value = i > 0 and tokens[i - 1] in PATH_FLAGS
            looks_local = tok.startswith(("../", "recipes/", "scripts/", "bench/", "docs/"))
            if not (flag_value or looks_local) or tok.startswith("runs/"):
                continue
            checked += 1
            assert (REPO / tok).exists() or (flag_value and tok in names), f"README: {' '.join(tokens)}: {tok} not found"
    assert checked >= 10
