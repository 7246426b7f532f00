"""The run state trusts its file no more: a ``pipeline_state.json`` that is truncated, empty,
not text, not an object, or holds stages that are no records makes ``plan`` and ``run`` refuse
with one line naming the file and what to do (exit 2), before the run folder is touched:
every file in it stays byte-identical and nothing is added."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skilldistill.cli import app
from skilldistill.errors import InputError
from skilldistill.orchestration.stage_state import STATE_FILE, read_state, record_stage

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "recipes" / "demo-quick.yaml"

BAD_STATES = {
    "truncated": (b'{"stages": {"corpus": {"fingerp', "not JSON"),
    "empty": (b"", "empty"),
    "not text": (b"\xff\xfe\x00{", "not UTF-8"),
    "a list": (b"[]", "not a JSON object"),
    "null": (b"null", "not a JSON object"),
    "stages a list": (b'{"stages": [1, 2]}', "'stages'"),
    "a stage no record": (b'{"stages": {"corpus": 5}}', "'stages.corpus'"),
    "a wall time no number": (b'{"stages": {"corpus": {"fingerprint": "f", "wall_time_s": "slow"}}}',
                              "'stages.corpus.wall_time_s'"),
}


def _folder(root: Path, content: bytes | None) -> Path:
    """A run folder with a state file (None: a folder in its place) and one earlier artifact."""
    run = root / "run"
    (run / "corpus").mkdir(parents=True)
    (run / "corpus" / "manifest.json").write_text('{"stage": "corpus"}')
    if content is None:
        (run / STATE_FILE).mkdir()
    else:
        (run / STATE_FILE).write_bytes(content)
    return run


def _snapshot(run: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(run)): (p.read_bytes() if p.is_file() else None) for p in sorted(run.rglob("*"))}


def _refused(run: Path, command: str, needle: str) -> str:
    before = _snapshot(run)
    t0 = time.time()
    res = CliRunner().invoke(app, [command, str(QUICK), "--run-dir", str(run)])
    text = res.output
    assert time.time() - t0 < 60, "refusing took too long"
    assert res.exit_code == 2 and not isinstance(res.exception, Exception), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-3000:]
    assert str(run / STATE_FILE) in errors[0] and needle in errors[0], errors[0]
    assert "delete it" in errors[0], errors[0]  # what to do
    assert _snapshot(run) == before  # nothing written, nothing added (no lock, no recipe.yaml)
    return errors[0]


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_damaged_state_file_is_one_line_and_touches_nothing(tmp_path, case, command):
    content, needle = BAD_STATES[case]
    _refused(_folder(tmp_path, content), command, needle)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_folder_in_place_of_the_state_file_is_one_line(tmp_path, command):
    _refused(_folder(tmp_path, None), command, "cannot be read")


def test_arm_workers_recording_into_a_damaged_state_file_stop_with_the_file(tmp_path):
    run = _folder(tmp_path, b'{"stages": {"co')
    before = _snapshot(run)
    with pytest.raises(InputError, match="pipeline_state.json.*not JSON"):
        record_stage(run, "select/a/seed0", {"running": "f", "clean": False})
    with pytest.raises(InputError):
        read_state(run)
    # the lock file may be created; the state file itself is left as it was
    assert {k: v for k, v in _snapshot(run).items() if not k.startswith(".")} == before


def test_a_good_state_file_still_reads(tmp_path):
    run = _folder(tmp_path, b'{"stages": {"corpus": {"fingerprint": "f", "wall_time_s": 1.5}, '
                            b'"demo": {"running": "g", "clean": true}}, "other": 1}')
    assert read_state(run)["stages"]["corpus"]["wall_time_s"] == 1.5
    assert read_state(tmp_path / "none") == {}


def test_the_installed_command_says_it_in_one_line(tmp_path):
    run = _folder(tmp_path, b'{"stages": {"corp')
    before = _snapshot(run)
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "run", str(QUICK), "--run-dir", str(run)],
                       capture_output=True, text=True, timeout=120, env=env)
    text = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and STATE_FILE in lines[0], text
    assert _snapshot(run) == before
