"""The report trusts its run folder no more.

An arm whose evaluation is missing, whose results.json is not JSON or holds no accuracy,
whose samples file is truncated, empty or without samples, or whose selection report or
trainer state is damaged is marked incomplete: one ``warning:`` line names the arm and the
file, the arm is left out of every table, figure and interval, and the verdict says so
(exit 0). A damaged file of the run as a whole (recipe.yaml, pipeline_state.json, the skill
profile, the world's weak leaves, the annotate summary) or a run folder that is not there
is refused with one ``error:`` line naming the file (exit 2), and the earlier report stays
byte-identical. Runs on the hand-made run folder of tests/test_report.py (no training).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from skilldistill.cli import app
from skilldistill.evaluate import SAMPLES_SCHEMA

_spec = importlib.util.spec_from_file_location("_report_fixture", Path(__file__).resolve().parents[1] / "test_report.py")
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)
# base, random-plain and skill-skillaware (3 seeds each), evaluated on demo_eval, with selections,
# loss curves, a recipe and a state file
run_dir = _fixture.run_dir

ARM = "skill-skillaware"  # the verdict's arm
SEED = f"evaluate/{ARM}/seed1"
REPORT_FILES = ("report.md", "report.html", "summary.json", "per_skill.png", "selection.png", "loss.png")


def _invoke(run: Path) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["report", str(run), "--baseline", "random-plain"])
    assert not isinstance(res.exception, Exception), res.output[-3000:]
    assert "Traceback" not in res.output, res.output[-3000:]
    return res.exit_code, res.output


def _results(run: Path, seed_dir: str = SEED) -> Path:
    return run / seed_dir / "results.json"


def _edit_results(run: Path, edit) -> None:
    path = _results(run)
    data = json.loads(path.read_text())
    edit(data["benchmarks"]["demo_eval"])
    path.write_text(json.dumps(data))


def _samples(run: Path, seed_dir: str = SEED) -> Path:
    return run / seed_dir / "demo_eval" / "samples.parquet"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


INCOMPLETE = {
    "results truncated": (lambda r: _truncate(_results(r)), ARM, f"{SEED}/results.json", "not JSON"),
    "results empty": (lambda r: _results(r).write_text(""), ARM, f"{SEED}/results.json", "empty"),
    "results not text": (lambda r: _results(r).write_bytes(b"\xff\xfe{"), ARM, f"{SEED}/results.json", "UTF-8"),
    "results a list": (lambda r: _results(r).write_text("[]"), ARM, f"{SEED}/results.json", "not a JSON object"),
    "results without a benchmark": (lambda r: _results(r).write_text('{"summary": {}}'), ARM,
                                    f"{SEED}/results.json", "no benchmark"),
    "accuracy missing": (lambda r: _edit_results(r, lambda b: b.pop("accuracy")), ARM, f"{SEED}/results.json",
                         "'benchmarks.demo_eval.accuracy'"),
    "accuracy not a number": (lambda r: _edit_results(r, lambda b: b.update(accuracy="high")), ARM,
                              f"{SEED}/results.json", "'benchmarks.demo_eval.accuracy'"),
    "accuracy above 1": (lambda r: _edit_results(r, lambda b: b.update(accuracy=1.5)), ARM,
                         f"{SEED}/results.json", "'benchmarks.demo_eval.accuracy'"),
    "samples truncated": (lambda r: _truncate(_samples(r)), ARM, f"{SEED}/demo_eval/samples.parquet", "Parquet"),
    "samples empty file": (lambda r: _samples(r).write_bytes(b""), ARM, f"{SEED}/demo_eval/samples.parquet", "Parquet"),
    "samples missing": (lambda r: _samples(r).unlink(), ARM, f"{SEED}/demo_eval/samples.parquet", "missing"),
    "samples without rows": (lambda r: pq.write_table(pa.Table.from_pylist([], schema=SAMPLES_SCHEMA), _samples(r)),
                             ARM, f"{SEED}/demo_eval/samples.parquet", "no samples"),
    "samples without correct": (lambda r: pq.write_table(pa.table({"id": ["p000"]}), _samples(r)), ARM,
                                f"{SEED}/demo_eval/samples.parquet", "'correct'"),
    "samples correct as text": (lambda r: pq.write_table(pa.table({"id": ["p000", "p001"], "correct": ["no", "no"]}),
                                                         _samples(r)), ARM, f"{SEED}/demo_eval/samples.parquet",
                                "'correct'"),
    "evaluation folder missing": (lambda r: shutil.rmtree(r / "evaluate" / ARM), ARM, f"evaluate/{ARM}", "missing"),
    "one seed's evaluation missing": (lambda r: shutil.rmtree(r / "evaluate" / ARM / "seed2"), ARM,
                                      f"evaluate/{ARM}/seed2/results.json", "missing"),
    "base results truncated": (lambda r: _truncate(_results(r, "evaluate/base")), "base",
                               "evaluate/base/results.json", "not JSON"),
    "selection report truncated": (lambda r: _truncate(r / "select" / ARM / "seed0" / "report.json"), ARM,
                                   f"select/{ARM}/seed0/report.json", "not JSON"),
    "selection row without a leaf": (lambda r: (r / "select" / ARM / "seed0" / "report.json").write_text(
        '{"selected": 40, "leaf_table": [{"selected_under_leaf": 3}]}'), ARM, f"select/{ARM}/seed0/report.json",
        "'leaf_table.0.leaf'"),
    "trainer state truncated": (lambda r: _truncate(r / "train" / ARM / "seed0" / "trainer_state.json"), ARM,
                                f"train/{ARM}/seed0/trainer_state.json", "not JSON"),
    "a loss no number": (lambda r: (r / "train" / ARM / "seed0" / "trainer_state.json").write_text(
        '{"log_history": [{"step": 1, "loss": "low"}]}'), ARM, f"train/{ARM}/seed0/trainer_state.json",
        "'log_history.0.loss'"),
    "a round's selection truncated": (lambda r: (r / "rounds" / ARM / "seed0" / "round1" / "select").mkdir(parents=True)
                                      or (r / "rounds" / ARM / "seed0" / "round1" / "select" / "report.json")
                                      .write_text('{"selected": 4'), ARM,
                                      f"rounds/{ARM}/seed0/round1/select/report.json", "not JSON"),
}


@pytest.mark.parametrize("case", list(INCOMPLETE))
def test_an_incomplete_arm_is_named_left_out_and_the_verdict_says_so(run_dir, case):
    damage, arm, file, needle = INCOMPLETE[case]
    damage(run_dir)
    code, text = _invoke(run_dir)
    assert code == 0, text[-3000:]
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, text[-3000:]
    assert f"{arm} is incomplete" in warnings[0] and str(run_dir / file) in warnings[0] and needle in warnings[0], warnings
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert any(str(run_dir / file) in reason and needle in reason for reason in summary["incomplete"][arm])
    # left out of every table, figure input and interval
    assert arm not in summary["benchmarks"]["arms"]
    assert all(arm not in per for per in summary["per_skill"].values())
    assert arm not in summary["selection"]
    assert all(arm not in per for per in summary["n_needed"]["benchmarks"].values())
    assert arm not in (summary["weak_skill_gains"].get("by_arm") or {})
    assert arm not in summary["emphasis"]["pairs"]
    # the verdict says so: no verdict when it is about the arm, a note when another arm is left out
    verdict = summary["verdict"]["text"]
    if arm == ARM:
        assert verdict.startswith(f"no verdict: {ARM} is incomplete"), verdict
    else:
        assert verdict.startswith(f"{ARM} beats random-plain") and f"left out as incomplete: {arm}" in verdict, verdict
    md = (run_dir / "report" / "report.md").read_text()
    assert f"**Verdict:** {verdict}" in md and "## Incomplete arms" in md
    table = md.split("## Accuracy by benchmark", 1)[1].split("\n\n## ", 1)[0]
    assert f"| {arm} |" not in table


def test_an_arm_of_the_recipe_never_evaluated_gets_no_silent_verdict(run_dir):
    # the recipe's last arm (the verdict's) was never run: the verdict was silently about another arm
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["arms"].append({"name": "skill-plain", "select": {"strategy": "skill"}, "format": {"style": "plain"}})
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code, text = _invoke(run_dir)
    assert code == 0
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["verdict"]["text"].startswith("no verdict: skill-plain is incomplete"), summary["verdict"]
    assert str(run_dir / "evaluate" / "skill-plain") in summary["incomplete"]["skill-plain"][0]


def test_recipe_seeds_without_an_evaluation_make_the_arm_incomplete(run_dir):
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe | {"seeds": [0, 1, 2, 3]}))
    code, text = _invoke(run_dir)
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert code == 0 and set(summary["incomplete"]) == {"random-plain", ARM}
    assert str(run_dir / "evaluate" / ARM / "seed3" / "results.json") in summary["incomplete"][ARM][0]
    assert "base" in summary["benchmarks"]["arms"]


def test_a_figure_with_nothing_left_to_draw_is_not_left_over_from_an_earlier_report(run_dir):
    assert _invoke(run_dir)[0] == 0
    assert (run_dir / "report" / "selection.png").exists()
    shutil.rmtree(run_dir / "select")  # a run folder without selections: nothing to draw
    assert _invoke(run_dir)[0] == 0
    assert not (run_dir / "report" / "selection.png").exists()
    assert not (run_dir / "report" / "emphasis.png").exists()


def _write(rel: str, text: str):
    def damage(run: Path) -> None:
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(text)
    return damage


REFUSED = {
    "state truncated": (_write("pipeline_state.json", '{"stages": {"corp'), "pipeline_state.json", "not JSON"),
    "state wall time no number": (_write("pipeline_state.json", '{"stages": {"corpus": {"wall_time_s": "slow"}}}'),
                                  "pipeline_state.json", "'stages.corpus.wall_time_s'"),
    "recipe not YAML": (_write("recipe.yaml", "name: [unclosed\n  arms: {"), "recipe.yaml", "not YAML"),
    "recipe not a mapping": (_write("recipe.yaml", "- a\n- b\n"), "recipe.yaml", "not a mapping"),
    "recipe arms no list": (_write("recipe.yaml", "name: t\narms: random-plain\n"), "recipe.yaml", "'arms'"),
    "profile truncated": (_write("profile/skill_profile.json", '{"nodes": [{"ch'), "profile/skill_profile.json",
                          "not JSON"),
    "profile nodes no list": (_write("profile/skill_profile.json", '{"nodes": 3}'), "profile/skill_profile.json",
                              "'nodes'"),
    "annotate summary truncated": (_write("annotate/summary.json", '{"n'), "annotate/summary.json", "not JSON"),
    "weak leaves truncated": (_write("demo/student/base_training.json", '{"weak'), "demo/student/base_training.json",
                              "not JSON"),
    "weak leaves no list": (_write("demo/student/base_training.json", '{"weak_leaves": 5}'),
                            "demo/student/base_training.json", "'weak_leaves'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_damaged_file_of_the_run_is_refused_and_the_earlier_report_kept(run_dir, case):
    assert _invoke(run_dir)[0] == 0
    before = {f: (run_dir / "report" / f).read_bytes() for f in REPORT_FILES}
    damage, file, needle = REFUSED[case]
    damage(run_dir)
    code, text = _invoke(run_dir)
    assert code == 2, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(run_dir / file) in errors[0] and needle in errors[0], text[-3000:]
    assert {f: (run_dir / "report" / f).read_bytes() for f in REPORT_FILES} == before


def test_a_run_folder_that_is_not_there_is_refused_and_not_created(tmp_path):
    for run in (tmp_path / "typo", tmp_path / "a-file"):
        if run.name == "a-file":
            run.write_text("x")
        code, text = _invoke(run)
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and str(run) in errors[0], text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_an_unreadable_manifest_is_shown_as_such(run_dir):
    (run_dir / "evaluate" / ARM / "seed0" / "manifest.json").write_text('{"counts": {"n')
    (run_dir / "evaluate" / ARM / "seed1" / "manifest.json").write_text("[]")
    code, text = _invoke(run_dir)
    assert code == 0, text[-3000:]
    md = (run_dir / "report" / "report.md").read_text()
    assert f"| evaluate/{ARM}/seed0 | unreadable=not JSON" in md
    assert f"| evaluate/{ARM}/seed1 | unreadable=not a JSON object" in md


def test_the_installed_command_says_it_in_one_line(run_dir):
    _truncate(_results(run_dir))
    env = {**os.environ, "COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "report", str(run_dir), "--baseline", "random-plain"],
                       capture_output=True, text=True, timeout=120, env=env)
    text = r.stdout + r.stderr
    assert r.returncode == 0 and "Traceback" not in text, text[-3000:]
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(_results(run_dir)) in warnings[0], text
    (run_dir / "pipeline_state.json").write_text("{")
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "report", str(run_dir)],
                       capture_output=True, text=True, timeout=120, env=env)
    text = r.stdout + r.stderr
    lines = [line for line in text.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), text


def test_an_interrupted_training_is_read_from_its_latest_checkpoint(run_dir):
    from skilldistill.report.run_folder import collect_run

    train = run_dir / "train" / ARM / "seed0"
    (train / "trainer_state.json").unlink()
    for step in (2, 3):  # checkpoint-2 sorted first as text: the curve stopped a step early
        (train / f"checkpoint-{step}").mkdir()
        (train / f"checkpoint-{step}" / "trainer_state.json").write_text(
            json.dumps({"log_history": [{"step": s, "loss": 1.0 / s} for s in range(1, step + 1)]}))
    arms, context = collect_run(run_dir)
    assert [s for s, _ in arms[ARM].loss["seed0"]] == [1, 2, 3] and context["incomplete"] == {}
