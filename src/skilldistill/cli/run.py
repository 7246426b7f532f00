"""``skilldistill run RECIPE.yaml``: the whole pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..orchestration.pipeline import run_recipe
from ..orchestration.recipe import Recipe, load_recipe
from ..stages import STAGES
from .app import app, console, user_errors

SET_HELP = "Override a recipe field: KEY.PATH=VALUE (YAML value; list items by index, e.g. arms.0.select.budget=64). Repeatable."


@app.command("run")
@user_errors
def run_cmd(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", "-o", help="Run folder (default: the recipe's run_dir, else runs/<name>)."),
    from_stage: str | None = typer.Option(None, "--from", help=f"Rerun from this stage on: {', '.join(STAGES)}."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1, help="Arm runs at once, each in a worker process (default: the recipe's jobs)."),
) -> None:
    """Run every stage of a recipe, skipping the ones already done with the same inputs."""
    r = load_recipe(recipe, set_)
    run_and_summarise(r, run_dir, from_stage, jobs)


def run_and_summarise(r: Recipe, run_dir: Path | None, from_stage: str | None, jobs: int | None = None) -> None:
    """Run a recipe (``jobs``: the recipe's ``jobs`` overridden) and print its summary and report path."""
    if jobs is not None:
        r = r.model_copy(update={"jobs": jobs})
    t0 = time.time()
    pipe = run_recipe(r, run_dir=run_dir, force_from=from_stage, console=console)
    pipe.print_summary()
    console.print(f"[bold]done in {time.time() - t0:.0f}s[/bold] ({len(pipe.ran)} stages ran); "
                  f"report: {(pipe.run_dir / 'report' / 'report.html').resolve()}")
