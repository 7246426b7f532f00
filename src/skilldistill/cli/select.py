"""``skilldistill select``: choose the SFT budget from an attributed pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from ..errors import ConfigError
from ..format.config import ExampleFormat
from ..select.config import SelectConfig
from ..select.stage import run_select
from .app import app, console, user_errors
from .options import config_option, field_default


@app.command("select")
@user_errors
def select_cmd(
    skills: Path = typer.Argument(..., help="Attributed pool: skills.parquet (id, question, response, skills, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (selection.parquet, report.json, distribution.png)."),
    profile: Path | None = typer.Option(None, "--profile", help="skill_profile.json (needed by skill and skill-quota)."),
    item_profile: Path | None = typer.Option(None, "--item-profile", help="Per-item profile.parquet (needed by --correct-portion)."),
    strategy: str = config_option(SelectConfig, "strategy", "--strategy", "-s"),
    budget: int = config_option(SelectConfig, "budget", "--budget", "-n", min=1),
    seed: int = config_option(SelectConfig, "seed", "--seed"),
    temperature: float = config_option(SelectConfig, "temperature", "--temperature", "-T"),
    w_max: float = config_option(SelectConfig, "w_max", "--w-max"),
    accuracy: str = config_option(SelectConfig, "accuracy", "--accuracy"),
    min_profile_overlap: float = config_option(SelectConfig, "min_profile_overlap", "--min-profile-overlap"),
    correct_portion: float | None = config_option(SelectConfig, "correct_portion", "--correct-portion"),
    correct_portion_scope: str = config_option(SelectConfig, "correct_portion_scope", "--correct-portion-scope"),
    max_depth: int | None = config_option(SelectConfig, "max_depth", "--max-depth"),
    unprofiled_leaves: str = config_option(SelectConfig, "unprofiled_leaves", "--unprofiled-leaves"),
    only_skill: str | None = config_option(SelectConfig, "only_skill", "--only-skill"),
    difficulty_field: str = config_option(SelectConfig, "difficulty_field", "--difficulty-field"),
    difficulty_range: str = config_option(
        SelectConfig, "difficulty_range", "--difficulty-range", help="difficulty: inclusive pass-rate range LOW,HIGH.",
        default=",".join(str(x) for x in field_default(SelectConfig, "difficulty_range"))),
    length_unit: str = config_option(SelectConfig, "length_unit", "--length-unit"),
    diversity_stratify: str = config_option(SelectConfig, "diversity_stratify", "--diversity-stratify"),
    loss_model: str | None = config_option(SelectConfig, "loss_model", "--loss-model"),
    loss_gguf_file: str | None = config_option(SelectConfig, "loss_gguf_file", "--loss-gguf-file"),
    loss_device: str = config_option(SelectConfig, "loss_device", "--loss-device"),
    loss_batch_size: int = config_option(SelectConfig, "loss_batch_size", "--loss-batch-size"),
    loss_max_length: int | None = config_option(SelectConfig, "loss_max_length", "--loss-max-length"),
    loss_band: str | None = config_option(
        SelectConfig, "loss_band", "--loss-band", default=None,
        help="loss: draw uniformly among the items whose loss lies between these quantiles of the pool's losses, "
        "LOW,HIGH (e.g. 0.5,0.9); default: the highest losses first."),
    less_model: str | None = config_option(SelectConfig, "less_model", "--less-model"),
    less_gguf_file: str | None = config_option(SelectConfig, "less_gguf_file", "--less-gguf-file"),
    less_device: str = config_option(SelectConfig, "less_device", "--less-device"),
    less_batch_size: int = config_option(SelectConfig, "less_batch_size", "--less-batch-size"),
    less_max_length: int | None = config_option(SelectConfig, "less_max_length", "--less-max-length"),
    less_params: str = config_option(SelectConfig, "less_params", "--less-params"),
    less_lora_rank: int = config_option(SelectConfig, "less_lora_rank", "--less-lora-rank"),
    less_layers: int = config_option(SelectConfig, "less_layers", "--less-layers"),
    less_dim: int = config_option(SelectConfig, "less_dim", "--less-dim"),
    less_seed: int = config_option(SelectConfig, "less_seed", "--less-seed"),
    less_target: str = config_option(SelectConfig, "less_target", "--less-target"),
    less_target_file: str | None = config_option(SelectConfig, "less_target_file", "--less-target-file"),
    less_weak_share: float = config_option(SelectConfig, "less_weak_share", "--less-weak-share"),
    less_weak_accuracy: float | None = config_option(SelectConfig, "less_weak_accuracy", "--less-weak-accuracy"),
    max_tokens: int | None = config_option(SelectConfig, "max_tokens", "--max-tokens"),
    tokenizer: str | None = config_option(SelectConfig, "tokenizer", "--tokenizer"),
    gguf_file: str | None = config_option(SelectConfig, "gguf_file", "--gguf-file"),
    style: str = config_option(ExampleFormat, "style", "--style",
                               help="Example format measured by --max-tokens and scored by --strategy loss "
                               "and less: plain | skill-aware."),
    exclude: list[str] = config_option(SelectConfig, "exclude", "--exclude", "-x"),
    exclude_selection: list[Path] = config_option(SelectConfig, "exclude_selections", "--exclude-selection"),
    force: bool = typer.Option(False, "--force", help="Recompute even if the manifest matches."),
) -> None:
    """Select items: random, skill-weighted (the paper), skill quotas, forced distribution, by difficulty, or a
    field baseline (all: the whole eligible pool; length: longest responses; diversity: k-center on embeddings;
    loss: the student's highest losses on the teacher's responses; less: the items whose gradients are most like a
    target set's, LESS)."""
    lo_hi = _pair("--difficulty-range", difficulty_range)
    band = _pair("--loss-band", loss_band) if loss_band is not None else None
    try:
        cfg = SelectConfig(
            strategy=strategy, budget=budget, seed=seed, temperature=temperature, w_max=w_max,  # type: ignore[arg-type]
            accuracy=accuracy, correct_portion=correct_portion, max_tokens=max_tokens,  # type: ignore[arg-type]
            min_profile_overlap=min_profile_overlap,
            correct_portion_scope=correct_portion_scope, max_depth=max_depth,  # type: ignore[arg-type]
            unprofiled_leaves=unprofiled_leaves, only_skill=only_skill, difficulty_field=difficulty_field,  # type: ignore[arg-type]
            difficulty_range=(lo_hi[0], lo_hi[1]), length_unit=length_unit, diversity_stratify=diversity_stratify,  # type: ignore[arg-type]
            loss_model=loss_model, loss_gguf_file=loss_gguf_file, loss_device=loss_device,  # type: ignore[arg-type]
            loss_batch_size=loss_batch_size, loss_max_length=loss_max_length, loss_band=band,
            **{k: v for k, v in locals().items() if k.startswith("less_")},
            tokenizer=tokenizer, gguf_file=gguf_file, example=ExampleFormat(style=style),  # type: ignore[arg-type]
            exclude=exclude, exclude_selections=[str(p) for p in exclude_selection],
        )
    except ValidationError as e:
        raise ConfigError(_first_error(e)) from None
    res = run_select(skills, out, cfg, profile_json=profile, item_profile=item_profile, force=force)
    _print_result(res, cfg, out)


def _print_result(res: Any, cfg: SelectConfig, out: Path) -> None:
    r = res.report
    if res.skipped:
        console.print(f"[dim]up to date (manifest matches): {out}[/dim]")
    colour = "green" if r["shortfall"] <= 0 else "yellow"
    of = "" if r.get("budget_ignored") else f" of {cfg.budget}"
    console.print(f"[{colour}]selected {r['selected']}{of}[/{colour}] ({r['stop_reason']})")
    for m in r.get("messages", []):
        console.print(f"[yellow]{m}[/yellow]")
    _print_strategy_detail(r.get("strategy_detail"))
    if r.get("leaf_table"):
        _print_leaves(r)
    console.print(f"wrote {out / 'selection.parquet'}")


def _print_leaves(r: dict) -> None:
    """The leaves with the largest target share, target vs realised, and the coverage and KL."""
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


def _pair(option: str, raw: str) -> tuple[float, float]:
    """``LOW,HIGH`` as two numbers (their range is the config's to check)."""
    try:
        lo_hi = [float(x) for x in raw.split(",")]
    except ValueError:
        raise ConfigError(f"{option} must be LOW,HIGH, got {raw!r}") from None
    if len(lo_hi) != 2:
        raise ConfigError(f"{option} must be LOW,HIGH, got {raw!r}")
    return lo_hi[0], lo_hi[1]


def _print_strategy_detail(detail: dict | None) -> None:
    """A line or a table of what a baseline strategy did (the report's ``strategy_detail``)."""
    if not detail:
        return
    if "unit" in detail and detail.get("selected_lengths"):
        sel, pool = detail["selected_lengths"], detail["pool_lengths"]
        console.print(f"response length ({detail['unit']}): selected {sel['min']}-{sel['max']} "
                      f"(median {sel['median']:g}), pool {pool['min']}-{pool['max']} (median {pool['median']:g})")
    if detail.get("pool_losses") and detail.get("selected_losses"):
        sel, pool = detail["selected_losses"], detail["pool_losses"]
        rate = f", {detail['items_per_s']:g} items/s" if detail.get("items_per_s") else ""
        console.print(f"student loss ({detail['model']}; {detail['computed']} scored, {detail['from_cache']} from "
                      f"the cache{rate}): selected {sel['min']:.4f}-{sel['max']:.4f} (median {sel['median']:.4f}), "
                      f"pool {pool['min']:.4f}-{pool['max']:.4f} (median {pool['median']:.4f})")
    if detail.get("pool_scores") and detail.get("selected_scores"):
        sel, pool, target = detail["selected_scores"], detail["pool_scores"], detail["target"]
        rate = f", {detail['items_per_s']:g} items/s" if detail.get("items_per_s") else ""
        console.print(f"gradient features ({detail['model']}, {detail['params']}, dim {detail['dim']}; "
                      f"{detail['computed']} computed, {detail['from_cache']} from the cache{rate}); target "
                      f"{target['kind']}: {target['items']} items; cosine to the target: selected "
                      f"{sel['min']:.4f}-{sel['max']:.4f} (median {sel['median']:.4f}), pool {pool['min']:.4f}-"
                      f"{pool['max']:.4f} (median {pool['median']:.4f})")
    if detail.get("strata"):
        table = Table("stratum", "eligible", "budget", "selected", "radius", title=f"k-center ({detail['stratify']})")
        for s in detail["strata"]:
            table.add_row(s["stratum"], str(s["eligible"]), str(s["budget"]), str(s["selected"]),
                          "" if s["covering_radius"] is None else f"{s['covering_radius']:.3f}")
        console.print(table)


def _first_error(e: ValidationError) -> str:
    """One line: the field (none for a check across fields, whose message names them) and what is wrong."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"invalid option {loc}: {msg}" if loc else f"invalid options: {msg}"
