"""The public API: ``skilldistill.__all__`` (one ``run_<stage>`` per stage, the recipe, the
configs), imported lazily, the old names kept as aliases, and every CLI verb's help."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import skilldistill
from skilldistill.cli import app
from skilldistill.stages import STAGES

STAGE_FUNCTIONS = ["run_ingest", "run_annotate", "run_profile", "run_select", "run_format", "run_train",
                   "run_evaluate", "run_report"]


def test_all_lists_a_run_function_per_stage_and_the_recipe():
    assert set(STAGE_FUNCTIONS) | {"load_recipe", "run_recipe"} <= set(skilldistill.__all__)
    for name in skilldistill.__all__:
        assert getattr(skilldistill, name) is not None, name
    with pytest.raises(AttributeError):
        skilldistill.no_such_name  # noqa: B018


def test_old_stage_names_are_aliases():
    from skilldistill.attribution import annotate
    from skilldistill.corpus import ingest
    from skilldistill.report import build_report

    assert annotate is skilldistill.run_annotate
    assert ingest is skilldistill.run_ingest
    assert build_report is skilldistill.run_report


def test_import_skilldistill_loads_no_stage_code():
    code = ("import sys, skilldistill; heavy = [m for m in ('torch', 'transformers', 'pyarrow', 'numpy', "
            "'skilldistill.select.stage', 'skilldistill.orchestration.pipeline') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_recipe_loads_configs_not_stages():
    code = ("import sys; import skilldistill.orchestration.recipe; "
            "print([m for m in ('torch', 'transformers', 'trl', 'skilldistill.select.stage', "
            "'skilldistill.train.stage', 'skilldistill.orchestration.pipeline') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stage_locks_are_one_wrapper():
    """Every stage function that owns an output folder holds its lock through
    ``artifacts.locked_stage`` (the report is written under the run's own lock)."""
    for name in [n for n in STAGE_FUNCTIONS if n != "run_report"]:
        fn = getattr(skilldistill, name)
        assert hasattr(fn, "__wrapped__"), f"{name} is not wrapped by locked_stage"


def test_pipeline_stage_order_is_the_one_tuple():
    from skilldistill.orchestration import pipeline

    assert pipeline.STAGES is STAGES


VERBS = [["--help"], ["ingest", "--help"], ["presets", "--help"], ["tree", "--help"], ["tree", "show", "--help"],
         ["annotate", "--help"], ["profile", "--help"], ["grade", "--help"], ["select", "--help"],
         ["format", "--help"], ["train", "--help"], ["evaluate", "--help"], ["report", "--help"],
         ["run", "--help"], ["plan", "--help"], ["demo", "--help"]]


@pytest.mark.parametrize("args", VERBS, ids=lambda a: " ".join(a))
def test_every_verb_help_works(args):
    r = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def test_python_m_train_help():
    done = subprocess.run([sys.executable, "-m", "skilldistill.train", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "160", "PATH": ""}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout
