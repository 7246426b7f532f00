"""The CLI surface of the foundation verbs (ingest, tree), through typer's runner."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from skilldistill import __version__
from skilldistill.cli import app

runner = CliRunner()


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"skilldistill {__version__}"
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for verb in ("ingest", "tree"):
        assert verb in r.output


def test_tree_stats_on_skill_mix(skill_mix_path):
    r = runner.invoke(app, ["tree", "stats", str(skill_mix_path), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["nodes"], s["leaves"], s["depth"]) == (126, 118, 2)


def test_tree_validate_reports_path(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "M", "children": [{"name": "A", "children": [{"name": "x"}, {"name": "X"}]}]}))
    r = runner.invoke(app, ["tree", "validate", str(bad), "--on-duplicate", "error"])
    assert r.exit_code == 2
    assert "at A" in r.output and "duplicate sibling name" in r.output
    r = runner.invoke(app, ["tree", "validate", str(bad)])  # merge, the default
    assert r.exit_code == 0 and "1 duplicate siblings merged" in r.output
    r = runner.invoke(app, ["tree", "validate", str(bad), "--on-duplicate", "drop"])
    assert r.exit_code == 2 and "--on-duplicate must be merge, rename or error" in r.output


def test_tree_show(skill_mix_path):
    r = runner.invoke(app, ["tree", "show", str(skill_mix_path), "--max-depth", "1"])
    assert r.exit_code == 0
    assert "Pre-Algebra" in r.output and "average calculations" not in r.output


def test_ingest_cli(tmp_path, shared_data):
    out = tmp_path / "c"
    r = runner.invoke(app, ["ingest", str(shared_data / "corpora" / "gsm8k" / "test.jsonl"), "--out", str(out), "--limit", "100"])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "corpus.parquet")
    assert len(df) == 100 and df["answer"].str.fullmatch(r"-?[\d.]+").all()


def test_ingest_cli_bad_input_is_one_clear_line(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text('{"q": "1+1"}\n')
    r = runner.invoke(app, ["ingest", str(src), "--out", str(tmp_path / "o"), "--preset", "limo"])
    assert r.exit_code == 2
    assert "x.jsonl" in r.output and "line 1" in r.output and "missing column" in r.output
    assert not (tmp_path / "o" / "corpus.parquet").exists()
