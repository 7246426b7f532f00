"""Bad option values, bad override values, undecodable exclusion files and YAML tags that
would run code: one clear line naming what is wrong (exit 2), no traceback, nothing
written or overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GSM8K = REPO.parent / "shared" / "data" / "corpora" / "gsm8k" / "test.jsonl"


def _cli(*args, cwd=None, timeout=120):
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    return r, r.stdout + r.stderr


def _clear(r, out: str, *needles: str) -> None:
    assert r.returncode == 2, out[-2000:]
    assert "Traceback" not in out and "For further information" not in out, out[-2000:]
    for n in needles:
        assert n in out, (n, out[-2000:])


@pytest.mark.parametrize("args, needles", [
    (["--limit", "0"], ["limit"]),
    (["--on-error", "bogus"], ["on_error", "'auto', 'skip' or 'fail'"]),
])
def test_ingest_option_values_are_named(tmp_path, args, needles):
    r, out = _cli("ingest", str(GSM8K), "--preset", "gsm8k", "--out", str(tmp_path / "c"), *args)
    _clear(r, out, *needles)
    assert not (tmp_path / "c").exists()


def test_a_url_that_is_no_url_is_one_line_naming_the_option(tmp_path):
    r, out = _cli("ingest", str(GSM8K), "--preset", "gsm8k", "--out", str(tmp_path / "c"), "--limit", "5")
    assert r.returncode == 0, out[-2000:]
    r, out = _cli("annotate", str(tmp_path / "c"), "--tree", "demo", "--out", str(tmp_path / "a"), "--backend", "openai",
                  "--model", "m", "--base-url", "notaurl")
    _clear(r, out, "base_urls", "not an http(s) URL", "notaurl")
    assert len([line for line in out.splitlines() if line.strip()]) <= 3  # one message, not a pydantic dump


def test_undecodable_exclusion_files_name_the_file_and_row(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"q1\n\xff\xfe not utf-8\n")
    bench = tmp_path / "bench.jsonl"
    bench.write_bytes(b'{"problem": "What is 2 + 2?"}\n{"problem": "\xff"}\n')
    r, out = _cli("ingest", str(GSM8K), "--preset", "gsm8k", "--out", str(tmp_path / "c"), "--limit", "20",
                  "--exclude", str(bench))
    _clear(r, out, "bench.jsonl", "2")  # a problem left unread would stay in the corpus: refused, not skipped
    assert not (tmp_path / "c" / "corpus.parquet").exists() and not (tmp_path / "c" / "manifest.json").exists()
    pool = tmp_path / "pool.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["q1", "q2"], "question": ["a", "b"], "skills": pa.array([[["A"]], [["A"]]])}), pool)
    r, out = _cli("select", str(pool), "--out", str(tmp_path / "s"), "--strategy", "random", "-n", "1", "--exclude", str(ids))
    _clear(r, out, "ids.txt", "not UTF-8")
    assert not (tmp_path / "s" / "selection.parquet").exists()


@pytest.mark.parametrize("override, needles", [
    ("select.budget=[1", ["select.budget=[1", "not valid YAML"]),
    ("select.budget=abc", ["select.budget", "valid integer", "demo-quick.yaml"]),
    ("arms.7.name=x", ["arms.7.name", "not an index"]),
    ("nosuchsection.key=1", ["nosuchsection", "unknown key"]),
])
def test_bad_override_values_are_named_and_the_run_folder_is_untouched(tmp_path, override, needles):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: an earlier run\n")  # what an earlier run left
    r, out = _cli("run", str(REPO / "recipes" / "demo-quick.yaml"), "--run-dir", str(run), "--set", override)
    _clear(r, out, *needles)
    assert (run / "recipe.yaml").read_text() == "name: an earlier run\n"  # not overwritten by an invalid recipe
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]


def test_yaml_tags_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    tree = tmp_path / "tree.yaml"
    tree.write_text(f"name: Mathematics\nchildren:\n  - name: {payload}\n")
    r, out = _cli("tree", "validate", str(tree))
    _clear(r, out, "tree.yaml")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "recipes" / "demo-quick.yaml").read_text() + f"\nextra: {payload}\n")
    r, out = _cli("run", str(recipe), "--run-dir", str(tmp_path / "run"))
    _clear(r, out, "recipe.yaml")
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["../../escape", "/tmp/skilldistill-abs-escape", "a/b", ".."])
def test_format_name_that_is_a_path_is_refused_on_the_command_line(tmp_path, name):
    """`format --name` becomes LLaMA-Factory's data file name: a path there would write
    outside the output folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sel = tmp_path / "selection.parquet"
    pq.write_table(pa.table({"id": ["a"], "question": ["1+1?"], "response": ["2"], "skills": [[["A", "b"]]]}), sel)
    out = tmp_path / "run" / "format"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r, text = _cli("format", str(sel), "--out", str(out), "--name", name)
    _clear(r, text, "dataset_name")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not Path("/tmp/skilldistill-abs-escape.json").exists()
