"""The report on a hand-made run folder: intervals, verdict, weak leaves, figures, settings."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from skilldistill.evaluate import SAMPLES_SCHEMA
from skilldistill.report.analysis import stage_times
from skilldistill.report.comparison import verdict
from skilldistill.report.render import strip_backend_defaults
from skilldistill.report.stage import run_report
from skilldistill.stats import paired_bootstrap

LEAVES = [["A", "a1"], ["A", "a2"], ["B", "b1"], ["B", "b2"]]


def _write_eval(folder: Path, bench: str, correct: list[list[int]]) -> None:
    """samples.parquet (problem i under leaf i % 4) and results.json for one evaluation."""
    rows = []
    for i, samples in enumerate(correct):
        for s, c in enumerate(samples):
            rows.append({"id": f"p{i:03d}", "sample": s, "question": f"q{i}", "answer": "1", "response": "",
                         "pred": "1" if c else "0", "correct": bool(c), "truncated": False, "finish_reason": "stop",
                         "completion_tokens": 5, "seed": 0, "skills": [LEAVES[i % 4]]})
    (folder / bench).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA), folder / bench / "samples.parquet")
    per_problem = [sum(c) / len(c) for c in correct]
    per_skill = {}
    for j, leaf in enumerate(LEAVES):
        vals = [per_problem[i] for i in range(len(correct)) if i % 4 == j]
        per_skill["->".join(leaf)] = {"path": leaf, "depth": 2, "n": len(vals), "accuracy": sum(vals) / len(vals)}
        top = leaf[0]
        top_vals = [per_problem[i] for i in range(len(correct)) if LEAVES[i % 4][0] == top]
        per_skill[top] = {"path": [top], "depth": 1, "n": len(top_vals), "accuracy": sum(top_vals) / len(top_vals)}
    res = {"benchmark": bench, "accuracy": sum(per_problem) / len(per_problem), "n_samples": len(correct[0]),
           "per_skill": per_skill}
    (folder / "results.json").write_text(json.dumps({"summary": {}, "benchmarks": {bench: res}}))


def _pattern(n: int, solved: set[int]) -> list[list[int]]:
    return [[1 if i in solved else 0] for i in range(n)]


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    n = 40
    base = set(range(0, 40, 2))  # 20 of 40
    arms = {
        "random-plain": [base | {1}, base | {3}, base],
        "skill-skillaware": [base | {1, 3, 5, 7, 9, 11}, base | {1, 3, 5, 7, 9, 13}, base | {1, 3, 5, 7, 11, 13}],
    }
    _write_eval(run / "evaluate" / "base", "demo_eval", _pattern(n, base))
    for arm, seeds in arms.items():
        for k, solved in enumerate(seeds):
            _write_eval(run / "evaluate" / arm / f"seed{k}", "demo_eval", _pattern(n, solved))
            sel = run / "select" / arm / f"seed{k}"
            sel.mkdir(parents=True)
            shares = [10, 10, 10, 10] if arm == "random-plain" else [25, 5, 5, 5]
            (sel / "report.json").write_text(json.dumps({"selected": 40, "leaf_table": [
                {"leaf": "->".join(leaf), "selected_under_leaf": c} for leaf, c in zip(LEAVES, shares, strict=True)]}))
            tr = run / "train" / arm / f"seed{k}"
            tr.mkdir(parents=True)
            (tr / "trainer_state.json").write_text(json.dumps({"log_history": [
                {"step": s, "loss": 2.0 / s + (0.1 if arm == "skill-skillaware" else 0)} for s in range(1, 6)]}))
    (run / "demo" / "student").mkdir(parents=True)
    (run / "demo" / "student" / "base_training.json").write_text(json.dumps({"weak_leaves": ["A->a2", "B->b2"]}))
    recipe = {"name": "t", "select": {"strategy": "skill"}, "format": {"style": "skill-aware"},
              "student": {"kind": "transformers", "model": "m", "base_urls": ["http://x/v1"], "max_concurrency": 4,
                          "tensor_parallel_size": 1, "device": "cpu", "batch_size": 8},
              "arms": [{"name": "random-plain", "select": {"strategy": "random"}, "format": {"style": "plain"}},
                       {"name": "skill-skillaware", "select": {"strategy": "skill"}, "format": {"style": "skill-aware"}}]}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    state = {"stages": {"train/skill-skillaware/seed0": {"wall_time_s": 20.0}, "corpus": {"wall_time_s": 1.0},
                        "evaluate/base": {"wall_time_s": 2.0}, "profile": {"wall_time_s": 11.5},
                        "select/random-plain/seed1": {"wall_time_s": 0.5}, "select/random-plain/seed0": {"wall_time_s": 0.4},
                        "demo": {"wall_time_s": 75.0}, "annotate": {"wall_time_s": 23.0}}}
    (run / "pipeline_state.json").write_text(json.dumps(state))
    return run


def test_deltas_carry_paired_bootstrap_intervals_and_a_verdict(run_dir):
    summary = run_report(run_dir, baseline="random-plain")
    cell = summary["benchmarks"]["arms"]["skill-skillaware"]["demo_eval"]
    # skill-skillaware solves 26 of 40 on every seed, random-plain 21, 21, 20
    assert cell["delta"] == pytest.approx(26 / 40 - (21 + 21 + 20) / 120)
    ci = cell["ci"]
    assert ci["seeds_paired"] and ci["n_seeds"] == 3 and ci["n_problems"] == 40
    assert ci["low"] < ci["delta"] < ci["high"]
    # the same interval as the stats module computes on the same matrices
    ref = paired_bootstrap({"demo_eval": [[int(i in s) for i in range(40)] for s in [
        set(range(0, 40, 2)) | {1, 3, 5, 7, 9, 11}, set(range(0, 40, 2)) | {1, 3, 5, 7, 9, 13},
        set(range(0, 40, 2)) | {1, 3, 5, 7, 11, 13}]]},
        {"demo_eval": [[int(i in s) for i in range(40)] for s in [
            set(range(0, 40, 2)) | {1}, set(range(0, 40, 2)) | {3}, set(range(0, 40, 2))]]})
    assert (ci["low"], ci["high"]) == (ref.low, ref.high)
    v = summary["verdict"]
    assert v["method"] == "skill-skillaware" and v["baseline"] == "random-plain"
    assert v["text"].startswith("skill-skillaware beats random-plain by +13.3 pp [")
    assert "3 seeds)" in v["text"] and "one seed per arm" not in v["text"]
    md = (run_dir / "report" / "report.md").read_text()
    assert md.splitlines()[2].startswith("**Verdict:** skill-skillaware beats random-plain")
    # one benchmark: no "average" column
    header = next(line for line in md.splitlines() if line.startswith("| arm |"))
    assert "average" not in header and "demo_eval" in header
    assert "(+13.3 [" in md


def test_a_single_seed_verdict_says_its_interval_leaves_out_seed_variation():
    ci = {"delta": 0.039, "low": -0.008, "high": 0.094, "n_problems": 128, "n_seeds": 1}
    bench = {"baseline": "random-plain", "benchmarks": ["demo_eval"],
             "arms": {"skill-skillaware": {"average": {"ci": ci}}}}
    text = verdict(bench, "skill-skillaware")["text"]
    assert text.startswith("skill-skillaware does not differ significantly from random-plain: +3.9 pp [-0.8, +9.4] "
                           "on demo_eval (95% paired-bootstrap interval over 128 problems)")
    assert text.endswith("; one seed per arm, so the interval leaves out seed-to-seed variation: "
                         "run more seeds to include it")


def _arm_runs(name: str, per_seed: list[dict[str, dict[str, int]]], chains=None):
    """ArmRuns from ``[seed] -> benchmark -> problem id -> correct (0/1)``, one sample each."""
    from skilldistill.report.run_folder import ArmRuns

    arm = ArmRuns(name)
    for k, benches in enumerate(per_seed):
        seed = f"seed{k}"
        arm.seeds.append(seed)
        arm.problems[seed] = {b: {pid: (float(c), 1, (chains or {}).get((b, pid), [])) for pid, c in probs.items()}
                              for b, probs in benches.items()}
        arm.results[seed] = {"benchmarks": {b: {"accuracy": sum(p.values()) / len(p)} for b, p in benches.items()}}
    return arm


def test_weak_problems_are_matched_within_their_benchmark():
    from skilldistill.report.analysis import problems_under
    from skilldistill.report.comparison import compare

    # problem "1" of `annot` is under the weak leaf and does not change; an unrelated problem
    # "1" of amc23 goes 0 -> 1: it must not count as a weak-leaf gain
    chains = {("annot", "1"): [["A", "weak"]], ("annot", "2"): [["A", "other"]]}
    base = _arm_runs("base", [{"annot": {"1": 0, "2": 1}, "amc23": {"1": 0, "3": 1}}], chains)
    arm = _arm_runs("x", [{"annot": {"1": 0, "2": 1}, "amc23": {"1": 1, "3": 1}}], chains)
    ids = problems_under(base, {"A->weak"})
    assert ids == {("annot", "1")}
    ci = compare(arm, base, ["amc23", "annot"], only=ids)
    assert set(ci) == {"annot", "average"} and ci["average"]["delta"] == 0.0


def test_the_delta_and_verdict_cover_what_the_interval_compared():
    from skilldistill.report.comparison import benchmark_table

    # the baseline ran b1 only, the method b1 and b2: the interval (and so the delta and the
    # verdict's scope) can only be about b1
    rp = _arm_runs("random-plain", [{"b1": {str(i): int(i < 5) for i in range(10)}}])
    m = _arm_runs("m", [{"b1": {str(i): int(i < 9) for i in range(10)}, "b2": {str(i): 0 for i in range(10)}}])
    table = benchmark_table({"random-plain": rp, "m": m}, "random-plain")
    cell = table["arms"]["m"]["average"]
    assert cell["delta"] == pytest.approx(0.4) and cell["ci"]["low"] <= cell["delta"] <= cell["ci"]["high"]
    assert cell["ci"]["benchmarks"] == ["b1"]
    v = verdict(table, "m")
    assert " on b1 (" in v["text"] and "2-benchmark" not in v["text"]


def test_the_seed_caveat_names_the_arm_with_one_seed():
    from skilldistill.report.comparison import benchmark_table

    probs = [{"b": {str(i): int(i < 6 + k) for i in range(40)}} for k in range(3)]
    rp = _arm_runs("random-plain", probs)
    one = _arm_runs("m", [{"b": {str(i): int(i < 12) for i in range(40)}}])
    text = verdict(benchmark_table({"random-plain": rp, "m": one}, "random-plain"), "m")["text"]
    assert "1 seed(s) of m and 3 of random-plain" in text
    assert text.endswith("; one seed of m, so the interval leaves out its seed-to-seed variation: "
                         "run more seeds to include it")


def test_per_skill_accuracy_pools_benchmarks_by_problems_within_a_seed():
    from skilldistill.report.analysis import per_skill_table
    from skilldistill.report.run_folder import ArmRuns

    arm = ArmRuns("m", seeds=["seed0"])
    arm.results["seed0"] = {"benchmarks": {
        "b1": {"per_skill": {"A": {"n": 1, "accuracy": 1.0}}},
        "b2": {"per_skill": {"A": {"n": 99, "accuracy": 0.0}}}}}
    cell = per_skill_table({"m": arm})["A"]["m"]
    assert cell["mean"] == pytest.approx(0.01) and cell["n_seeds"] == 1 and cell["std"] == 0.0


def test_a_correlation_of_constant_emphasis_is_undefined_not_nan():
    from skilldistill.report.analysis import emphasis_vs_gain
    from skilldistill.report.render import md_emphasis

    leaves = ["A->a1", "A->a2", "B->b1", "B->b2"]
    dists = {"s": {leaf: 0.25 for leaf in leaves}, "r": {leaf: 0.25 for leaf in leaves}}  # emphasis 1 everywhere
    skills = {leaf: {"s": {"mean": 0.1 * i}, "r": {"mean": 0.0}} for i, leaf in enumerate(leaves)}
    recipe = {"arms": [{"name": "s", "select": {"strategy": "skill"}}, {"name": "r", "select": {"strategy": "random"}}]}
    emph = emphasis_vs_gain({}, skills, dists, recipe)
    corr = emph["pairs"]["s"]["correlation"]
    assert corr["r"] is None and corr["low"] is None and corr["high"] is None
    json.dumps(emph, allow_nan=False)  # summary.json stays valid JSON
    assert "| s | r | 4 | undefined | (constant emphasis or gain) |" in "\n".join(md_emphasis(emph))


def test_weak_leaves_come_from_the_world_when_it_knows_them(run_dir):
    summary = run_report(run_dir, baseline="random-plain")
    weak = summary["weak_skill_gains"]
    assert weak["weak_leaves"] == ["A->a2", "B->b2"]
    assert "world's 2 weak leaves" in weak["definition"]
    g = weak["by_arm"]["skill-skillaware"]
    # the extra solves {1,3,5,7,9,11,13} sit under leaves 1 and 3 (A->a2, B->b2): all weak-leaf gains
    assert g["weak"] > 0 and g["strong"] == 0
    assert g["weak_ci"]["n_problems"] == 20 and g["weak_ci"]["low"] > 0
    assert g["strong_ci"]["delta"] == 0


def test_emphasis_against_gain_pairs_skill_arm_with_random_arm(run_dir):
    summary = run_report(run_dir, baseline="random-plain")
    # formats differ here, so no same-format random partner: the pair is not formed
    assert summary["emphasis"]["pairs"] == {}
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["arms"][0]["format"]["style"] = "skill-aware"
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    summary = run_report(run_dir, baseline="random-plain")
    pair = summary["emphasis"]["pairs"]["skill-skillaware"]
    assert pair["against"] == "random-plain"
    by_leaf = {p["leaf"]: p for p in pair["points"]}
    assert by_leaf["A->a1"]["emphasis"] == pytest.approx(2.5)
    assert by_leaf["A->a2"]["emphasis"] == pytest.approx(0.5)
    assert "correlation" in pair and -1 <= pair["correlation"]["r"] <= 1
    assert (run_dir / "report" / "emphasis.png").exists()


def test_samples_needed_section(run_dir):
    summary = run_report(run_dir, baseline="random-plain", target_se=0.05)
    base = summary["n_needed"]["benchmarks"]["demo_eval"]["base"]
    # one sample per problem at an unknown temperature: the variance cannot be estimated
    assert base["samples_needed"] is None and base["sampling_se"] is None
    rp = summary["n_needed"]["benchmarks"]["demo_eval"]["random-plain"]
    assert rp["n_problems"] == 40 and rp["n_samples"] == 1
    md = (run_dir / "report" / "report.md").read_text()
    assert "| demo_eval | base | 40 | 1 | – | – |" in md and "one sample per problem" in md
    # greedy decoding (as the demo evaluates): no sampling variance, one sample is enough
    for res_file in (run_dir / "evaluate").rglob("results.json"):
        doc = json.loads(res_file.read_text())
        doc["benchmarks"]["demo_eval"]["decoding"] = {"temperature": 0.0}
        res_file.write_text(json.dumps(doc))
    greedy = run_report(run_dir, baseline="random-plain", target_se=0.05)["n_needed"]["benchmarks"]["demo_eval"]
    assert greedy["base"]["samples_needed"] == 1 and greedy["base"]["sampling_se"] == 0.0
    assert greedy["random-plain"]["note"] == "greedy decoding: no sampling variance"


def test_files_are_world_readable_and_settings_are_collapsed_and_stripped(run_dir):
    run_report(run_dir, baseline="random-plain")
    for name in ("report.md", "report.html", "summary.json", "per_skill.png", "loss.png", "selection.png"):
        mode = stat.S_IMODE((run_dir / "report" / name).stat().st_mode)
        assert mode & 0o044 == 0o044, (name, oct(mode))
    html = (run_dir / "report" / "report.html").read_text()
    assert "<details><summary>Recipe as run" in html
    settings = html[html.index("<details><summary>Recipe as run"):]
    assert "max_concurrency" not in settings and "tensor_parallel_size" not in settings
    assert "batch_size: 8" in settings  # the transformers backend's own field stays
    assert "<strong>Verdict:</strong>" in html


def test_stage_times_follow_pipeline_order():
    state = {"stages": {"train/b/seed0": {"wall_time_s": 3}, "corpus": {"wall_time_s": 1},
                        "evaluate/base": {"wall_time_s": 2}, "select/a/seed10": {"wall_time_s": 1},
                        "select/a/seed2": {"wall_time_s": 1}, "evaluate/a/seed0": {"wall_time_s": 1}}}
    assert [t["stage"] for t in stage_times(state)] == [
        "corpus", "select/a/seed2", "select/a/seed10", "train/b/seed0", "evaluate/base", "evaluate/a/seed0"]


def test_strip_backend_defaults_keeps_the_used_kind_only():
    d = {"student": {"kind": "openai", "model": "m", "base_urls": ["u"], "device": "cpu", "tensor_parallel_size": 2},
         "other": {"kind": "x", "device": "cpu"}}
    out = strip_backend_defaults(d)
    assert out["student"] == {"kind": "openai", "model": "m", "base_urls": ["u"]}
    assert out["other"] == d["other"]


def test_loss_plot_has_one_colour_per_arm(run_dir):
    import matplotlib

    matplotlib.use("Agg")
    from skilldistill.report.plots import arm_colors, plot_loss
    from skilldistill.report.run_folder import collect_run

    arms, _ = collect_run(run_dir)
    colours = arm_colors(["random-plain", "skill-skillaware"])
    assert colours["random-plain"] != colours["skill-skillaware"]
    assert plot_loss(arms, run_dir / "loss.png", styles={"random-plain": "plain", "skill-skillaware": "skill-aware"})


def test_report_cli_prints_the_verdict_and_samples_needed(run_dir):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    res = CliRunner().invoke(app, ["report", str(run_dir), "--baseline", "random-plain", "--n-needed", "2"])
    assert res.exit_code == 0, res.output
    assert "Verdict:" in res.output and "skill-skillaware beats random-plain" in res.output
    assert "samples per problem for a sampling SE of 2 pp" in res.output
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["n_needed"]["target_se"] == 0.02


def test_the_package_imports_its_stage_code_only_when_asked():
    import subprocess
    import sys

    code = ("import sys, skilldistill.report, skilldistill.report.config; "
            "loaded = sorted(m for m in sys.modules if m.startswith('skilldistill.report.')); "
            "assert loaded == ['skilldistill.report.config'], loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
    from skilldistill.report import build_report

    assert build_report is run_report  # the name before the stages were named run_<stage>
