"""``skilldistill format``: selected items -> SFT chat examples (TRL, datasets, LLaMA-Factory)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from ..errors import ConfigError
from ..format import DEFAULT_INSTRUCTION, FormatConfig, run_format
from .app import app, console, user_errors


@app.command("format")
@user_errors
def format_cmd(
    selection: Path = typer.Argument(..., help="selection.parquet (or any Parquet with id, question, response, skills)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (train.jsonl, hf/, llamafactory/, report.json)."),
    style: str = typer.Option("skill-aware", "--style", help="plain | skill-aware (skill plan before <think>)."),
    depth: str = typer.Option("full", "--depth", help="Chain shown in the plan: full | top | leaf."),
    separator: str = typer.Option("->", "--separator", help="Joins the levels of a chain."),
    plan_position: str = typer.Option("before_think", "--plan-position", help="before_think (paper) | inside_think."),
    min_shown_depth: int = typer.Option(0, "--min-shown-depth", help="Plan window start: chain[min:max]."),
    max_shown_depth: int | None = typer.Option(None, "--max-shown-depth", help="Plan window end, exclusive (the authors: 5)."),
    short_chains: str = typer.Option("keep", "--short-chains", help="A chain shorter than --max-shown-depth: keep | drop (the authors)."),
    short_names: Path | None = typer.Option(None, "--short-names", help="JSON map name -> short name, e.g. capability_to_distinction.json."),
    prompt_template: str | None = typer.Option(None, "--prompt-template", help="User turn with {question} and {instruction} (the authors: '{instruction}\\n\\nQuestion: {question}')."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="Optional system turn."),
    instruction: str = typer.Option(DEFAULT_INSTRUCTION, "--instruction", help="Appended to the problem ('' for none)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Student tokenizer (hub id, folder or .gguf file) for token counts."),
    gguf_file: str | None = typer.Option(None, "--gguf-file", help="GGUF file name inside the --tokenizer folder."),
    max_length: int | None = typer.Option(None, "--max-length", help="Token limit per example (chat template applied)."),
    keep_overlong: bool = typer.Option(False, "--keep-overlong", help="Keep examples over --max-length (default: drop and report)."),
    export: list[str] = typer.Option([], "--export", help="jsonl | hf | llamafactory (repeatable; default all)."),
    name: str = typer.Option("skilldistill", "--name", help="Dataset name in LLaMA-Factory's dataset_info.json."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the manifest matches."),
) -> None:
    """Write chat examples for SFT, plain or skill-aware."""
    try:
        cfg = FormatConfig(
            style=style, depth=depth, separator=separator, plan_position=plan_position,  # type: ignore[arg-type]
            min_shown_depth=min_shown_depth, max_shown_depth=max_shown_depth, short_chains=short_chains,  # type: ignore[arg-type]
            short_names=str(short_names) if short_names else None,
            # a shell passes "\n" as two characters: they mean a line break here
            **({"prompt_template": prompt_template.replace("\\n", "\n")} if prompt_template else {}),
            system_prompt=system_prompt, instruction=instruction or None, tokenizer=tokenizer, gguf_file=gguf_file,
            max_length=max_length, overlong="keep" if keep_overlong else "drop",
            exports=export or ["jsonl", "hf", "llamafactory"], dataset_name=name,  # type: ignore[arg-type]
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"invalid option {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    res = run_format(selection, out, cfg, force=force)
    if res.skipped:
        console.print(f"[dim]up to date (manifest matches): {out}[/dim]")
    c = res.report["counts"]
    console.print(f"[green]wrote {c['written']} of {c['input']} examples[/green] ({cfg.style}) to {out}")
    if c["dropped_overlong"]:
        console.print(f"[yellow]dropped {c['dropped_overlong']} over-long example(s) (> {cfg.max_length} tokens)[/yellow]")
    if c.get("plan_emptied_by_window"):
        console.print(f"[yellow]{c['plan_emptied_by_window']} item(s) lost every chain to the window "
                      f"(shorter than --max-shown-depth {cfg.max_shown_depth}): written without a plan[/yellow]")
    sn = res.report.get("short_names")
    if sn:
        console.print(f"short names: {sn['shortened']} of {sn['names_shown']} names shown were in the map")
    if c["skill_aware_without_skills"]:
        console.print(f"[yellow]{c['skill_aware_without_skills']} item(s) had no skills: written without a plan[/yellow]")
    tok = res.report.get("tokens")
    if tok:
        console.print(f"tokens per example: min {tok['min']}, median {tok['p50']}, p95 {tok['p95']}, max {tok['max']}")
