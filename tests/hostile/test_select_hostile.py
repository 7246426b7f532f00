"""Selection trusts its profile no more: a profile made on another tree, accuracies outside
[0, 1], counts that are no counts, repeated ids in the pool or the item profile, and numeric
settings out of range are refused with one line naming the file and field (exit 2), and an
earlier selection in ``--out`` stays byte-identical."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from skilldistill.cli import app
from skilldistill.select.config import SelectConfig

SKILLS = pa.list_(pa.list_(pa.string()))
LEAVES = [["Algebra", "equations"], ["Algebra", "inequalities"], ["Geometry", "triangles"], ["Geometry", "circles"]]
ARTIFACTS = ("selection.parquet", "report.json", "manifest.json", "leaf_distribution.csv")


def _pool(path: Path, ids: list | None = None, n: int = 200) -> Path:
    ids = ids if ids is not None else [f"q{i}" for i in range(n)]
    pq.write_table(pa.table({
        "id": ids, "question": [f"What is {i} + 1?" for i in range(n)], "response": ["<think>a</think> 1"] * n,
        "answer": ["1"] * n, "source": ["s"] * n, "skills": pa.array([[LEAVES[i % 4]] for i in range(n)], SKILLS),
    }), path)
    return path


def _node(path: list[str], acc, *, leaf: bool = True, **kw) -> dict:
    d = {"path": path, "chain": "->".join(path), "depth": len(path), "is_leaf": leaf, "graded": 10, "correct": 5,
         "accuracy": acc, "smoothed_accuracy": acc, "ci_low": 0.0, "ci_high": 1.0}
    return d | kw


def _good_nodes() -> list[dict]:
    return ([_node(["Algebra"], 0.4, leaf=False), _node(["Geometry"], 0.4, leaf=False)]
            + [_node(leaf, a) for leaf, a in zip(LEAVES, [0.5, 0.25, 0.1, 0.8], strict=True)])


def _profile(path: Path, nodes: list[dict], **top) -> Path:
    path.write_text(json.dumps({"nodes": nodes, **top}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A pool, a good profile, and a selection made from them (the artifacts a refused run must leave alone)."""
    base = tmp_path_factory.mktemp("select_hostile")
    _pool(base / "skills.parquet")
    _profile(base / "good.json", _good_nodes())
    res = CliRunner().invoke(app, ["select", str(base / "skills.parquet"), "--out", str(base / "sel"),
                                   "--profile", str(base / "good.json"), "--budget", "40"])
    assert res.exit_code == 0, res.output
    return base


def _refused(tmp_path: Path, earlier: Path, args: list[str], *needles: str) -> str:
    """Run ``select`` into a copy of the earlier selection: exit 2, one error line naming the needles,
    the earlier artifacts byte-identical."""
    out = tmp_path / "sel"
    shutil.copytree(earlier / "sel", out)
    before = {f: (out / f).read_bytes() for f in ARTIFACTS}
    res = CliRunner().invoke(app, ["select", *args, "--out", str(out)])
    text = res.output
    assert res.exit_code == 2, text[-3000:]
    assert "Traceback" not in text and not isinstance(res.exception, Exception), text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-3000:]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    assert {f: (out / f).read_bytes() for f in ARTIFACTS} == before
    return errors[0]


def _ok(tmp_path: Path, args: list[str]) -> dict:
    out = tmp_path / "ok"
    res = CliRunner().invoke(app, ["select", *args, "--out", str(out)])
    assert res.exit_code == 0, res.output[-3000:]
    return json.loads((out / "report.json").read_text())


# -- the skill profile -------------------------------------------------------------------
def test_a_profile_of_another_tree_is_refused_not_turned_into_uniform(tmp_path, earlier):
    other = _profile(tmp_path / "other.json", [_node(["Calculus"], 0.4, leaf=False),
                                               _node(["Calculus", "limits"], 0.2), _node(["Calculus", "series"], 0.9)])
    line = _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(other)],
                    "other.json", "0 of 4 leaves", "min_profile_overlap")
    assert "another skill tree" in line


def test_a_partial_profile_is_decided_by_the_threshold_and_reported(tmp_path, earlier):
    quarter = _profile(tmp_path / "quarter.json", [_node(LEAVES[0], 0.5)])
    pool = str(earlier / "skills.parquet")
    _refused(tmp_path, earlier, [pool, "--profile", str(quarter)], "quarter.json", "1 of 4 leaves", "0.5")
    report = _ok(tmp_path, [pool, "--profile", str(quarter), "--min-profile-overlap", "0.25", "--budget", "20"])
    assert report["leaves"]["profile_overlap"] == {"leaves": 4, "matched": 1, "fraction": 0.25, "min": 0.25}
    half = _profile(tmp_path / "half.json", [_node(["Algebra"], 0.3, leaf=False)])  # an ancestor matches too
    report = _ok(tmp_path, [pool, "--profile", str(half), "--budget", "20", "--force"])
    assert report["leaves"]["profile_overlap"]["matched"] == 2 and report["leaves"]["profile_overlap"]["fraction"] == 0.5
    report = _ok(tmp_path, [pool, "--profile", str(earlier / "good.json"), "--budget", "20", "--force"])
    assert report["leaves"]["profile_overlap"]["fraction"] == 1.0


@pytest.mark.parametrize("field, value", [
    ("smoothed_accuracy", -0.5), ("smoothed_accuracy", 1.5), ("accuracy", 2.0), ("smoothed_accuracy", True),
    ("smoothed_accuracy", math.inf), ("graded", "abc"), ("graded", -3), ("correct", 12), ("correct", 1.5),
])
def test_profile_values_out_of_range_are_refused_with_the_field(tmp_path, earlier, field, value):
    nodes = _good_nodes()
    nodes[2][field] = value  # nodes[2] is the leaf Algebra->equations
    bad = _profile(tmp_path / "bad.json", nodes)
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(bad)], "bad.json", f"nodes[2].{field}")


def test_a_bad_overall_entry_is_refused(tmp_path, earlier):
    bad = _profile(tmp_path / "bad.json", [_node(leaf, None) for leaf in LEAVES], overall={"accuracy": 7, "smoothed_accuracy": 7})
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(bad)], "bad.json", "overall.")


def test_a_path_given_twice_is_refused(tmp_path, earlier):
    bad = _profile(tmp_path / "bad.json", _good_nodes() + [_node(LEAVES[0], 0.01)])
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(bad)], "bad.json", "nodes[6].path",
             "Algebra->equations", "nodes[2]")


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "'nodes'"), ("{nope", "not valid JSON"), (b"\xff\xfe{}", "not UTF-8"), (None, "not found"),
    ('{"nodes": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"), ("dir", "not a file"),
])
def test_a_profile_that_is_no_profile_is_one_line(tmp_path, earlier, content, needle):
    p = tmp_path / "prof.json"
    if content == "dir":
        p.mkdir()
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(p)], "prof.json", needle)


# -- the item profile and the pool ----------------------------------------------------------
def test_an_item_profile_of_another_pool_is_refused(tmp_path, earlier):
    ip = tmp_path / "ip.parquet"
    pq.write_table(pa.table({"id": [f"x{i}" for i in range(50)], "solved": [True] * 50}), ip)
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(earlier / "good.json"),
                                 "--item-profile", str(ip), "--correct-portion", "0.5"], "ip.parquet", "'id'", "no id")


def test_repeated_ids_in_the_item_profile_are_refused(tmp_path, earlier):
    ip = tmp_path / "ip.parquet"
    pq.write_table(pa.table({"id": [f"q{i % 100}" for i in range(200)], "solved": [i < 100 for i in range(200)]}), ip)
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(earlier / "good.json"),
                                 "--item-profile", str(ip), "--correct-portion", "0.5"],
             "ip.parquet", "line 101", "'id'", "'q0'")


@pytest.mark.parametrize("table, needles", [
    ({"id": [None, "q1"], "solved": [True, False]}, ["line 1", "'id'", "null id"]),
    ({"id": [f"q{i}" for i in range(50)], "solved": pa.array([None] * 50, pa.bool_())}, ["'solved'", "no verdict"]),
    (None, ["not a readable Parquet"]),
])
def test_an_item_profile_without_verdicts_is_refused(tmp_path, earlier, table, needles):
    ip = tmp_path / "ip.parquet"
    if table is None:
        ip.write_text('{"nodes": []}')
    else:
        pq.write_table(pa.table(table), ip)
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(earlier / "good.json"),
                                 "--item-profile", str(ip)], "ip.parquet", *needles)


def test_integer_ids_are_matched_as_text(tmp_path, earlier):
    pool = _pool(tmp_path / "textpool.parquet", ids=[str(i) for i in range(200)])
    ip = tmp_path / "ip.parquet"  # the student's results keyed by integers
    pq.write_table(pa.table({"id": list(range(200)), "solved": [i % 2 == 0 for i in range(200)]}), ip)
    report = _ok(tmp_path, [str(pool), "--profile", str(earlier / "good.json"), "--item-profile", str(ip),
                            "--correct-portion", "0.5", "--budget", "20"])
    assert report["pool"]["solved"] == 100 and report["correct_portion"]["selected_solved"] == 10


def test_repeated_ids_in_the_pool_are_refused(tmp_path, earlier):
    pool = _pool(tmp_path / "dup.parquet", ids=[f"q{i % 100}" for i in range(200)])
    _refused(tmp_path, earlier, [str(pool), "--profile", str(earlier / "good.json")],
             "dup.parquet", "line 101", "'id'", "'q0'")


# -- numeric settings ----------------------------------------------------------------------
@pytest.mark.parametrize("args, field", [
    (["--w-max", "inf"], "w_max"), (["--w-max", "1e301"], "w_max ** temperature"),
    (["--temperature", "1000"], "temperature"), (["--temperature", "inf"], "temperature"),
    (["--w-max", "1e60", "--temperature", "10"], "w_max ** temperature"),
    (["--seed", "-1"], "seed"), (["--seed", str(2**63)], "seed"),
    (["--budget", str(10**20)], "budget"), (["--max-tokens", str(10**20), "--tokenizer", "x"], "max_tokens"),
    (["--max-depth", "65"], "max_depth"),
    (["--min-profile-overlap", "1.5"], "min_profile_overlap"), (["--min-profile-overlap", "nan"], "min_profile_overlap"),
])
def test_numeric_settings_out_of_range_are_refused_where_declared(tmp_path, earlier, args, field):
    _refused(tmp_path, earlier, [str(earlier / "skills.parquet"), "--profile", str(earlier / "good.json"), *args], field)


def test_the_config_checks_its_own_ranges():
    for bad in ({"w_max": math.inf}, {"temperature": math.nan}, {"seed": -1}, {"difficulty_range": (math.nan, 0.5)},
                {"difficulty_range": (0.7, 0.2)}, {"w_max": 1e100, "temperature": 4}, {"min_profile_overlap": -0.1}):
        with pytest.raises(ValidationError):
            SelectConfig(**bad)
    assert SelectConfig().min_profile_overlap == 0.5


def test_the_installed_command_says_it_in_one_line(tmp_path, earlier):
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    for args in (["--seed", "-1"], ["--temperature", "1000"]):
        r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "select", str(earlier / "skills.parquet"),
                            "--profile", str(earlier / "good.json"), "--out", str(tmp_path / "o"), *args],
                           capture_output=True, text=True, timeout=120, env=env)
        text = r.stdout + r.stderr
        assert r.returncode == 2 and "Traceback" not in text, text[-3000:]
        assert [line for line in text.splitlines() if line.strip()] == [line for line in text.splitlines()
                                                                        if line.startswith("error:")], text
