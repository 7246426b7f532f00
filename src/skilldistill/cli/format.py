"""``skilldistill format``: selected items -> SFT chat examples (TRL, datasets, LLaMA-Factory)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.markup import escape

from ..errors import ConfigError
from ..format.config import FormatConfig
from .app import app, console, user_errors
from .options import config_option


@app.command("format")
@user_errors
def format_cmd(
    selection: Path = typer.Argument(..., help="selection.parquet (or any Parquet with id, question, response, skills)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (train.jsonl, hf/, llamafactory/, report.json)."),
    style: str = config_option(FormatConfig, "style", "--style"),
    depth: str = config_option(FormatConfig, "depth", "--depth"),
    separator: str = config_option(FormatConfig, "separator", "--separator"),
    plan_position: str = config_option(FormatConfig, "plan_position", "--plan-position"),
    min_shown_depth: int = config_option(FormatConfig, "min_shown_depth", "--min-shown-depth"),
    max_shown_depth: int | None = config_option(FormatConfig, "max_shown_depth", "--max-shown-depth"),
    short_chains: str = config_option(FormatConfig, "short_chains", "--short-chains"),
    short_names: Path | None = config_option(FormatConfig, "short_names", "--short-names"),
    # None: the config's template
    prompt_template: str | None = config_option(
        FormatConfig, "prompt_template", "--prompt-template", default=None,
        help="User turn with {question} and {instruction} (the authors: '{instruction}\\n\\nQuestion: {question}')."),
    system_prompt: str | None = config_option(FormatConfig, "system_prompt", "--system-prompt"),
    instruction: str = config_option(FormatConfig, "instruction", "--instruction",
                                     help="Appended to the problem ('' for none)."),
    tokenizer: str | None = config_option(FormatConfig, "tokenizer", "--tokenizer"),
    gguf_file: str | None = config_option(FormatConfig, "gguf_file", "--gguf-file"),
    max_length: int | None = config_option(FormatConfig, "max_length", "--max-length"),
    keep_overlong: bool = typer.Option(False, "--keep-overlong", help="Keep examples over --max-length (default: drop and report)."),
    # []: every export
    export: list[str] = config_option(FormatConfig, "exports", "--export", default=[],
                                      help="jsonl | hf | llamafactory (repeatable; default all)."),
    name: str = config_option(FormatConfig, "dataset_name", "--name"),
    force: bool = typer.Option(False, "--force", help="Recompute even if the manifest matches."),
) -> None:
    """Write chat examples for SFT, plain or skill-aware."""
    from ..format.stage import run_format, window_text

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
        console.print(f"[dim]up to date (manifest matches): {escape(str(out))}[/dim]")
    c = res.report["counts"]
    console.print(f"[green]wrote {c['written']} of {c['input']} examples[/green] ({cfg.style}) to {escape(str(out))}")
    if c["dropped_overlong"]:
        console.print(f"[yellow]dropped {c['dropped_overlong']} over-long example(s) (> {cfg.max_length} tokens)[/yellow]")
    if c.get("kept_overlong"):
        console.print(f"[yellow]kept {c['kept_overlong']} over-long example(s) (> {cfg.max_length} tokens, "
                      "--keep-overlong)[/yellow]")
    if c.get("plan_emptied_by_window"):
        console.print(f"[yellow]{c['plan_emptied_by_window']} item(s) lost every chain to the depth window "
                      f"({window_text(cfg)}): written without a plan[/yellow]", highlight=False)
    short_names_report = res.report.get("short_names")
    if short_names_report:
        console.print(f"short names: {short_names_report['shortened']} of {short_names_report['names_shown']} "
                      "names shown were in the map")
    if c["skill_aware_without_skills"]:  # apart from those the window emptied
        console.print(f"[yellow]{c['skill_aware_without_skills']} item(s) had no skills: written without a plan[/yellow]")
    tokens = res.report.get("tokens")
    if tokens:
        console.print(f"tokens per example: min {tokens['min']}, median {tokens['p50']}, p95 {tokens['p95']}, "
                      f"max {tokens['max']}")
