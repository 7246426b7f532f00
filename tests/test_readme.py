"""The README's quick start is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command_verbatim():
    demo, tests = quick_start()
    assert demo.endswith("skilldistill demo") and tests.endswith("&& scripts/test")
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert ci[-1] == tests


def test_the_test_script_runs_both_suites_and_fails_when_either_fails(tmp_path):
    """`scripts/test` in a copy of the repository whose `python -m pytest` and real-engine
    script are stand-ins: both run, side by side, and either failing fails the whole."""
    import os
    import shutil
    import subprocess

    for name in ("test", "test-real-engines"):
        assert os.access(REPO / "scripts" / name, os.X_OK)
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "test", tmp_path / "scripts" / "test")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def stand_in(path, rc_var: str, says: str) -> None:
        path.write_text(f'#!/usr/bin/env bash\necho "{says} $*"\nexit ${{{rc_var}:-0}}\n')
        path.chmod(0o755)

    stand_in(bin_dir / "python", "MAIN_RC", "main suite:")
    stand_in(tmp_path / "scripts" / "test-real-engines", "ENGINES_RC", "real engines:")

    def run(*args: str, **rcs: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SKILLDISTILL_TEST_MIN_GIB": "0",
               **rcs}
        return subprocess.run([str(tmp_path / "scripts" / "test"), *args], capture_output=True, text=True, env=env,
                              timeout=60)

    ok = run()
    assert ok.returncode == 0, ok.stderr
    assert "main suite: -m pytest -q" in ok.stdout and "real engines:" in ok.stderr  # its log, printed at the end
    assert run(MAIN_RC="1").returncode != 0
    failed = run(ENGINES_RC="3")
    assert failed.returncode != 0 and "real-engine tests exit 3" in failed.stderr
    short = run(SKILLDISTILL_TEST_MIN_GIB="100000")  # too little memory for both at once
    assert short.returncode == 0 and "one after the other" in short.stderr and "real engines:" in short.stdout
    serial = run("--serial", ENGINES_RC="3")
    assert serial.returncode != 0 and "main suite: -m pytest -q" in serial.stdout and "real engines:" in serial.stdout


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


@pytest.mark.slow
def test_readme_python_api_block_runs(tmp_path):
    """The README's "Python API" example, as written, from a folder holding the recipes."""
    import subprocess
    import sys

    text = (REPO / "README.md").read_text()
    block = text.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    (tmp_path / "example.py").write_text(block)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "demo-quick" / "report" / "report.html").is_file()
    assert (tmp_path / "runs" / "x" / "format" / "train.jsonl").is_file()

