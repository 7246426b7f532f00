"""``skilldistill select``: choose the SFT budget from an attributed pool."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from ..errors import ConfigError
from ..format import ExampleFormat
from ..select import SelectConfig, run_select
from .app import app, console, user_errors


@app.command("select")
@user_errors
def select_cmd(
    skills: Path = typer.Argument(..., help="Attributed pool: skills.parquet (id, question, response, skills, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (selection.parquet, report.json, distribution.png)."),
    profile: Path | None = typer.Option(None, "--profile", help="skill_profile.json (needed by skill and skill-quota)."),
    item_profile: Path | None = typer.Option(None, "--item-profile", help="Per-item profile.parquet (needed by --correct-portion)."),
    strategy: str = typer.Option("skill", "--strategy", "-s", help="random | skill | skill-quota | forced | difficulty."),
    budget: int = typer.Option(1000, "--budget", "-n", min=1, help="Number of unique items to select."),
    seed: int = typer.Option(0, "--seed", help="Random seed (every strategy is reproducible from it)."),
    temperature: float = typer.Option(1.0, "--temperature", "-T", help="T in w = min((1/acc)^T, w_max^T)."),
    w_max: float = typer.Option(1000.0, "--w-max", help="Weight cap (acc = 0 gets w_max^T)."),
    accuracy: str = typer.Option("smoothed", "--accuracy", help="smoothed | raw: which profile accuracy drives the weights."),
    correct_portion: float | None = typer.Option(None, "--correct-portion", help="Share of the budget from items the student solved (0-1)."),
    correct_portion_scope: str = typer.Option("budget", "--correct-portion-scope", help="budget | leaf (each leaf balanced first, as the authors)."),
    max_depth: int | None = typer.Option(None, "--max-depth", help="Cut chains to this depth before leaves are computed."),
    unprofiled_leaves: str = typer.Option("ancestor", "--unprofiled-leaves", help="A leaf with no graded item: ancestor (its accuracy) | exclude."),
    only_skill: str | None = typer.Option(None, "--only-skill", help="Draw only from this leaf (name or chain 'A->b')."),
    difficulty_field: str = typer.Option("pass_rate_72b_tir", "--difficulty-field", help="difficulty: pass-rate column or meta key."),
    difficulty_range: str = typer.Option("0.25,0.625", "--difficulty-range", help="difficulty: inclusive LOW,HIGH."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Drop items whose formatted example is longer (needs --tokenizer)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Student tokenizer: hub id, folder or .gguf file."),
    gguf_file: str | None = typer.Option(None, "--gguf-file", help="GGUF file name inside the --tokenizer folder."),
    style: str = typer.Option("skill-aware", "--style", help="Example format measured by --max-tokens: plain | skill-aware."),
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="An item id, a .txt of ids, or a benchmark file (by question text). Repeatable."),
    exclude_selection: list[Path] = typer.Option(
        [], "--exclude-selection", help="An earlier selection (selection.parquet or its folder): its items are not "
        "selected again (a closed-loop round by hand). Repeatable."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the manifest matches."),
) -> None:
    """Select items: random, skill-weighted (the paper), skill quotas, forced distribution, or by difficulty."""
    try:
        lo_hi = [float(x) for x in difficulty_range.split(",")]
    except ValueError:
        raise ConfigError(f"--difficulty-range must be LOW,HIGH, got {difficulty_range!r}") from None
    if len(lo_hi) != 2:
        raise ConfigError(f"--difficulty-range must be LOW,HIGH, got {difficulty_range!r}")
    try:
        cfg = SelectConfig(
            strategy=strategy, budget=budget, seed=seed, temperature=temperature, w_max=w_max,  # type: ignore[arg-type]
            accuracy=accuracy, correct_portion=correct_portion, max_tokens=max_tokens,  # type: ignore[arg-type]
            correct_portion_scope=correct_portion_scope, max_depth=max_depth,  # type: ignore[arg-type]
            unprofiled_leaves=unprofiled_leaves, only_skill=only_skill, difficulty_field=difficulty_field,  # type: ignore[arg-type]
            difficulty_range=(lo_hi[0], lo_hi[1]),
            tokenizer=tokenizer, gguf_file=gguf_file, example=ExampleFormat(style=style),  # type: ignore[arg-type]
            exclude=exclude, exclude_selections=[str(p) for p in exclude_selection],
        )
    except ValidationError as e:
        raise ConfigError(_first_error(e)) from None
    res = run_select(skills, out, cfg, profile_json=profile, item_profile=item_profile, force=force)
    r = res.report
    if res.skipped:
        console.print(f"[dim]up to date (manifest matches): {out}[/dim]")
    colour = "green" if r["selected"] >= cfg.budget else "yellow"
    console.print(f"[{colour}]selected {r['selected']} of {cfg.budget}[/{colour}] ({r['stop_reason']})")
    for m in r.get("messages", []):
        console.print(f"[yellow]{m}[/yellow]")
    if r.get("leaf_table"):
        table = Table("leaf", "pool", "acc", "target", "realised", title="top leaves by target share")
        for row in sorted(r["leaf_table"], key=lambda x: -x["target_p"])[:15]:
            acc = "" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
            table.add_row(row["leaf"], str(row["pool_items"]), acc, f"{row['target_p']:.4f}", f"{row['realised_p']:.4f}")
        console.print(table)
        cov = r["coverage"]
        kl = r["kl_target_realised"]
        console.print(
            f"leaves touched {cov['leaves_touched']}/{cov['leaves_with_eligible_items']}, "
            f"KL(target||realised) {'inf' if kl is None else f'{kl:.4f}'} "
            f"(smoothed {r['kl_target_realised_smoothed']})"
        )
    console.print(f"wrote {out / 'selection.parquet'}")


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"invalid option {loc}: {err['msg']}"
