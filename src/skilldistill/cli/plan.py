"""``skilldistill plan RECIPE.yaml``: what a run would do and cost, before it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ..orchestration.plan import plan_json, plan_recipe
from ..orchestration.recipe import load_recipe
from ..orchestration.summary_tables import fit_tables, key_column
from ..stages import STAGES
from .app import app, console, user_errors
from .run import SET_HELP


def _n(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    if digits:
        return f"{v:,.{digits}f}"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:,.1f}{unit}"
    return f"{v:,.0f}"


@app.command("plan")
@user_errors
def plan_cmd(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", "-o", help="Run folder (default: the recipe's run_dir, else runs/<name>)."),
    from_stage: str | None = typer.Option(None, "--from", help=f"Plan a rerun from this stage on: {', '.join(STAGES)}."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    gen_tps: float | None = typer.Option(None, "--gen-tokens-per-s", help="Generated tokens/s per GPU (default: the recipe's plan section)."),
    train_tps: float | None = typer.Option(None, "--train-tokens-per-s", help="Training tokens/s per GPU (default: the recipe's plan section)."),
    sample_items: int | None = typer.Option(None, "--sample-items", min=1, help="Corpus items annotated to measure LLM calls per item."),
    no_sample: bool = typer.Option(False, "--no-sample", help="Run nothing at all: LLM calls from the tree's shape."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Status (done / to run / stale and why) and estimated cost of every stage of a recipe; runs nothing but a small attribution sample."""
    r = load_recipe(recipe, set_)
    settings = r.plan.model_copy(update={k: v for k, v in {"generation_tokens_per_s": gen_tps,
                                                          "training_tokens_per_s": train_tps,
                                                          "attribution_sample": sample_items}.items() if v is not None})
    plan = plan_recipe(r, run_dir=run_dir, force_from=from_stage, settings=settings, sample=not no_sample)
    if as_json:
        typer.echo(plan_json(plan))
        return
    heads = ("items", "LLM calls", "prompt tok", "generated tok", "training tok", "GPU-h")
    columns = [key_column("stage"), ("status", {"no_wrap": True}), *[(h, {"justify": "right"}) for h in heads]]
    rows = []
    for s in plan.stages:
        style = {"done": "green", "to run": "cyan", "stale": "yellow"}[s.status]
        rows.append([escape(s.key), f"[{style}]{s.status}[/{style}]", _n(s.items), _n(s.llm_calls),
                     _n(s.prompt_tokens), _n(s.generated_tokens), _n(s.training_tokens), _n(s.gpu_hours, 2)])
    t = plan.totals
    rows.append(["[bold]total[/bold]", "", "", _n(t["llm_calls"]), _n(t["prompt_tokens"]), _n(t["generated_tokens"]),
                 _n(t["training_tokens"]), _n(t["gpu_hours"], 2)])
    # at any width (80 columns when piped) every row keeps its stage: the other columns split off
    console.print(*fit_tables(escape(f"skilldistill plan: {plan.recipe} -> {plan.run_dir}"), columns, rows, console.width))
    why: dict[str, list[str]] = {}
    for s in plan.stages:
        if s.status == "stale":
            why.setdefault(s.reason, []).append(s.key)
    for reason, keys in why.items():
        shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        console.print(f"[yellow]stale[/yellow] ({escape(reason)}): {escape(shown)}", highlight=False)
    counts = {k: sum(1 for s in plan.stages if s.status == k) for k in ("done", "to run", "stale")}
    console.print(f"{counts['done']} done, {counts['to run']} to run, {counts['stale']} stale"
                  + (f"; GPU-hours still to spend: {t['gpu_hours_to_run']:,.2f}" if t.get("gpu_hours_to_run") is not None else ""))
    _print_profiling_both_ways(plan)
    notes = sorted({n for s in plan.stages for n in s.notes if s.kind in ("annotate", "demo")
                    or (s.kind == "profile" and n.startswith("adaptive"))})
    for line in [*notes, *plan.assumptions]:
        console.print(f"[dim]· {escape(line)}[/dim]", highlight=False)


def _print_profiling_both_ways(plan: Any) -> None:
    """Profiling's GPU-hours as planned and the other way (full pool or adaptive), and the run's total both ways."""
    t = plan.totals
    if t.get("profile_gpu_hours") is None:
        return
    adaptive = any("adaptive profiling:" in n for s in plan.stages for n in s.notes)
    planned, other = ("adaptive", "the full pool") if adaptive else ("the full pool", "adaptive (profile.adaptive)")
    ratio = t["gpu_hours_other_way"] / t["gpu_hours"] if t["gpu_hours"] else float("nan")
    console.print(f"profiling: {t['profile_gpu_hours']:,.2f} GPU-h on {planned}, {t['profile_gpu_hours_other_way']:,.2f} "
                  f"with {other}; the run: {t['gpu_hours']:,.2f} GPU-h as planned, {t['gpu_hours_other_way']:,.2f} with "
                  f"{other} ({ratio:.2f}x)", highlight=False)
