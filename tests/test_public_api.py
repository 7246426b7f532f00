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


def test_stage_locks_are_one_wrapper(tmp_path):
    """Every stage function that owns an output folder holds its lock through
    ``artifacts.locked_stage`` (the report is written under the run's own lock): called on a
    folder another holder has locked, each is refused before it reads a single input."""
    import inspect

    from skilldistill.artifacts import FolderLock
    from skilldistill.errors import SkilldistillError

    out = tmp_path / "out"
    with FolderLock(out, what="another run"):
        for name in [n for n in STAGE_FUNCTIONS if n != "run_report"]:
            fn = getattr(skilldistill, name)
            assert hasattr(fn, "__wrapped__"), f"{name} is not wrapped by locked_stage"
            params = inspect.signature(fn).parameters
            out_arg = next(p for p in ("out_dir", "out", "output_dir") if p in params)
            # every other required argument is None: a function that read its inputs before
            # locking would fail on them (TypeError, AttributeError), not with the lock's refusal
            kwargs = {p.name: None for p in params.values()
                      if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD}
            with pytest.raises(SkilldistillError, match="another run") as e:
                fn(**{**kwargs, out_arg: out})
            assert "another run" in str(e.value), (name, str(e.value))


def test_pipeline_stage_order_is_the_one_tuple():
    from skilldistill.orchestration import pipeline

    assert pipeline.STAGES is STAGES


VERBS = [["--help"], ["ingest", "--help"], ["presets", "--help"], ["tree", "--help"], ["tree", "show", "--help"], ["tree", "build", "--help"],
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
