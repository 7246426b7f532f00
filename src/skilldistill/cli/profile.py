"""``skilldistill profile`` (per-skill student profile) and ``skilldistill grade``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from ..errors import ConfigError, InputError
from ..generate.config import DEFAULT_INSTRUCTION, GenerationConfig
from ..grading import DEFAULT_TIMEOUT_S
from ..llm.base import BackendConfig
from ..profile.config import AdaptiveConfig, ProfileConfig
from .app import app, console, engine_kwargs, on_duplicate_option, resolve_tree, user_errors
from .options import config_option, field_help


@app.command("profile")
@user_errors
def profile_cmd(
    skills: Path = typer.Argument(..., help="Attributed pool: skills.parquet (id, question, answer, skills)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (profile.parquet, skill_profile.json, skill_profile.png, ...)."),
    model: str = typer.Option(..., "--model", "-m", help="Student: hub id, local folder, or served model name."),
    backend: str = config_option(BackendConfig, "kind", "--backend", "-b", help="vllm | transformers | openai."),
    tree: str | None = typer.Option(None, "--tree", "-t", help="Skill tree file or bundled name (default: the chains in the data)."),
    on_duplicate: str = on_duplicate_option(),
    sample: int | None = config_option(ProfileConfig, "sample", "--sample", min=1),
    sample_seed: int = config_option(ProfileConfig, "sample_seed", "--sample-seed"),
    n: int = config_option(GenerationConfig, "n", "--n", "-n", min=1),
    max_new_tokens: int = config_option(GenerationConfig, "max_new_tokens", "--max-new-tokens", min=1),
    temperature: float = config_option(GenerationConfig, "temperature", "--temperature"),
    top_p: float = config_option(GenerationConfig, "top_p", "--top-p"),
    seed: int = config_option(GenerationConfig, "seed", "--seed"),
    thinking: bool | None = config_option(GenerationConfig, "enable_thinking", "--thinking/--no-thinking"),
    # None: the config's instruction (a given '' means none)
    instruction: str | None = config_option(GenerationConfig, "instruction", "--instruction", default=None,
                                            help="Replaces the default step-by-step / \\boxed{} instruction."),
    system_prompt: str | None = config_option(GenerationConfig, "system_prompt", "--system-prompt"),
    prior_strength: float = config_option(ProfileConfig, "prior_strength", "--prior-strength", min=0),
    gguf_file: str | None = config_option(BackendConfig, "gguf_file", "--gguf-file",
                                          help="transformers: GGUF file inside the --model folder."),
    device: str = config_option(BackendConfig, "device", "--device", help="transformers: auto | cpu | cuda | cuda:N."),
    batch_size: int = config_option(BackendConfig, "batch_size", "--batch-size", min=1,
                                    help="transformers: conversations per generate call."),
    tensor_parallel_size: int = config_option(BackendConfig, "tensor_parallel_size", "--tp", min=1,
                                              help="vllm: tensor-parallel GPUs per engine."),
    data_parallel_size: int = config_option(BackendConfig, "data_parallel_size", "--dp", min=1,
                                            help="vllm: engines (each on its own GPUs)."),
    max_model_len: int | None = config_option(BackendConfig, "max_model_len", "--max-model-len", help="vllm: context length."),
    dtype: str = config_option(BackendConfig, "dtype", "--dtype", help="auto | bfloat16 | float16 | float32."),
    enforce_eager: bool = config_option(BackendConfig, "enforce_eager", "--enforce-eager"),
    kv_cache_gb: float | None = config_option(BackendConfig, "kv_cache_memory_gb", "--kv-cache-gb"),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="KEY=VALUE for vllm.LLM (vllm) or from_pretrained (transformers). Repeatable."),
    # []: the config's default server (set only when given)
    base_url: list[str] = config_option(BackendConfig, "base_urls", "--base-url", default=[],
                                        help="openai: server URL (repeatable)."),
    max_retries: int = config_option(BackendConfig, "max_retries", "--max-retries", min=0,
                                     help="openai: retries of a request after a timeout, 429 or 5xx."),
    timeout: float = config_option(BackendConfig, "request_timeout_s", "--timeout",
                                   help="openai: seconds a whole request may take (body included), then it is retried."),
    grading_processes: int | None = config_option(ProfileConfig, "grading_processes", "--grading-processes"),
    adaptive: bool = typer.Option(False, "--adaptive", help="Profile in rounds until the selection distribution is "
                                  "stable (the options below; docs/profile.md), instead of every item."),
    tv_bound: float = config_option(AdaptiveConfig, "tv_bound", "--tv-bound", help="adaptive: " + field_help(AdaptiveConfig, "tv_bound")),
    confidence: float = config_option(AdaptiveConfig, "confidence", "--confidence"),
    initial_per_leaf: int = config_option(AdaptiveConfig, "initial_per_leaf", "--initial-per-leaf"),
    round_items: int | None = config_option(AdaptiveConfig, "round_items", "--round-items"),
    max_rounds: int = config_option(AdaptiveConfig, "max_rounds", "--max-rounds"),
    select_temperature: float = config_option(AdaptiveConfig, "temperature", "--select-temperature"),
    select_w_max: float = config_option(AdaptiveConfig, "w_max", "--select-w-max"),
    select_accuracy: str = config_option(AdaptiveConfig, "accuracy", "--select-accuracy"),
    force: bool = typer.Option(False, "--force", help="Recompute even if the manifest matches."),
) -> None:
    """Sample the student on the pool, grade, and write per-item and per-skill accuracy."""
    from ..profile.stage import run_profile

    backend_kwargs: dict = {"kind": backend, "model": model, "gguf_file": gguf_file, "device": device, "batch_size": batch_size,
                            "tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size,
                            "max_model_len": max_model_len, "dtype": dtype, "enforce_eager": enforce_eager,
                            "kv_cache_memory_gb": kv_cache_gb, "model_kwargs": engine_kwargs(engine_arg),
                            "max_retries": max_retries, "request_timeout_s": timeout}
    if base_url:
        backend_kwargs["base_urls"] = base_url
    generation = {"n": n, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                  "enable_thinking": thinking, "instruction": DEFAULT_INSTRUCTION if instruction is None else instruction,
                  "system_prompt": system_prompt}
    adaptive_cfg = {"tv_bound": tv_bound, "confidence": confidence, "initial_per_leaf": initial_per_leaf,
                    "round_items": round_items, "max_rounds": max_rounds, "temperature": select_temperature,
                    "w_max": select_w_max, "accuracy": select_accuracy} if adaptive else None
    cfg = _profile_config(backend_kwargs, generation, prior_strength=prior_strength, sample=sample,
                          sample_seed=sample_seed, grading_processes=grading_processes, adaptive=adaptive_cfg)
    res = run_profile(skills, out, cfg, tree=None if tree is None else resolve_tree(tree, on_duplicate), force=force)
    if res.skipped:
        console.print(f"[dim]up to date (manifest matches): {out}[/dim]")
    _print_profile_summary(res, out)


def _profile_config(backend_kwargs: dict[str, Any], generation: dict[str, Any], **profile: Any) -> ProfileConfig:
    """The stage config from the options; a value the config refuses is one ConfigError naming the option."""
    try:
        return ProfileConfig(
            generation=GenerationConfig(backend=BackendConfig(**backend_kwargs), **generation), **profile,
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"invalid option {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None


def _print_profile_summary(res: Any, out: Path) -> None:
    """The sample's spread over leaves, the overall accuracy, and the ten weakest leaves."""
    c = res.counts
    adaptive = (res.skill_profile.get("sample") or {}).get("adaptive")
    if adaptive:
        console.print(f"adaptive profiling: {c.get('items_profiled')} items in {adaptive['rounds']} round(s), "
                      f"stopped: {adaptive['stop_reason']} (TV quantile {adaptive['tv_quantile']:.4f}, bound "
                      f"{adaptive['tv_bound']:g} at {adaptive['confidence']:g}; see {out / 'adaptive.json'})",
                      highlight=False)
    if res.per_leaf_sampled and not adaptive:
        per = sorted(res.per_leaf_sampled.values())
        console.print(
            f"stratified sample: {c.get('items_profiled')} items over {len(per)} leaves "
            f"(items per leaf: min {per[0]}, median {per[len(per) // 2]}, max {per[-1]}; see {out / 'sample.json'})"
        )
        table = Table("leaf", "items used", title="items per leaf (sample)")
        for leaf, k in sorted(res.per_leaf_sampled.items(), key=lambda kv: kv[1])[:10]:
            table.add_row(leaf, str(k))
        console.print(table)
    if c.get("items_without_gold"):
        console.print(f"[yellow]skipped {c['items_without_gold']} items without a gold answer[/yellow]")
    acc = res.overall_accuracy
    console.print(
        f"[green]profiled {c.get('items_profiled')} items[/green] ({c.get('samples')} samples): "
        f"accuracy {acc:.3f}, truncated {c.get('truncated')}, grading errors {c.get('grading_errors')}"
        if acc is not None else f"profiled {c.get('items_profiled')} items"
    )
    leaves = [nd for nd in res.skill_profile["nodes"] if nd["is_leaf"] and nd["graded"]]
    if leaves:
        table = Table("weakest leaves", "graded", "raw", "smoothed", "95% interval")
        for nd in sorted(leaves, key=lambda nd: nd["smoothed_accuracy"])[:10]:
            table.add_row(nd["chain"], str(nd["graded"]), f"{nd['accuracy']:.3f}", f"{nd['smoothed_accuracy']:.3f}",
                          f"[{nd['ci_low']:.3f}, {nd['ci_high']:.3f}]")
        console.print(table)
    console.print(f"wrote {out / 'skill_profile.json'}, {out / 'profile.parquet'}")


@app.command("grade")
@user_errors
def grade_cmd(
    path: Path = typer.Argument(..., help="JSONL or Parquet with a gold answer and a response per row."),
    gold_field: str = typer.Option("answer", "--gold-field", help="Column with the gold answer."),
    response_field: str = typer.Option("response", "--response-field", help="Column with the model response."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the rows plus pred/correct/truncated/error (.parquet or .jsonl)."),
    processes: int | None = typer.Option(None, "--processes", "-p", help="Grading workers (default: all cores)."),
    timeout_s: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", min=0.1, help="Hard limit per answer in seconds."),
) -> None:
    """Grade responses against gold answers (math-verify, last \\boxed{} after </think>)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..artifacts import write_jsonl, write_parquet
    from ..grading import grade_many
    from ..progress import StageProgress

    rows, golds, responses = _grade_inputs(path, gold_field, response_field)
    with StageProgress(TextColumn("[bold]grade[/bold]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("grade", total=len(rows))
        results = grade_many(golds, responses, processes=processes, timeout_s=timeout_s,
                             progress=lambda k: bar.advance(task, k))
    # A row without a gold answer is not a wrong answer: it is counted apart, outside the accuracy.
    graded = [r for g, r in zip(golds, results, strict=True) if g is not None]
    n, no_gold = len(graded), len(results) - len(graded)
    correct = sum(r.correct for r in graded)
    console.print(f"graded {n}: correct {correct} ({correct / n:.3f})" if n else "nothing to grade")
    if n:
        console.print(f"truncated {sum(r.truncated for r in graded)}, no answer {sum(r.pred is None for r in graded)}, "
                      f"errors {sum(r.error is not None for r in graded)}")
    if no_gold:
        console.print(f"[yellow]{no_gold} rows without a gold answer (left out of the accuracy)[/yellow]")
    typer.echo(json.dumps({"n": n, "correct": correct, "accuracy": correct / n if n else None,
                           **({"no_gold": no_gold} if no_gold else {})}))
    if out is not None:
        merged = [{**row, **res.as_dict()} for row, res in zip(rows, results, strict=True)]
        if out.suffix == ".parquet":
            import pyarrow as pa

            # Parquet strings must be valid UTF-8: a lone surrogate (it parses from a JSON
            # "\ud800" escape) becomes U+FFFD there, rather than losing every verdict.
            write_parquet(out, pa.Table.from_pylist([_valid_utf8(r) for r in merged]))
        else:
            write_jsonl(out, merged)
        console.print(f"wrote {out}")


def _valid_utf8(obj):
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8") if any("\ud800" <= c <= "\udfff" for c in obj) else obj
    if isinstance(obj, dict):
        return {k: _valid_utf8(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_valid_utf8(v) for v in obj]
    return obj


def _grade_inputs(path: Path, gold_field: str, response_field: str) -> tuple[list[dict], list[Any], list[str | None]]:
    """(rows, gold answers, responses) of a grade input. A gold answer that is missing (absent,
    null, NaN, blank) is None: counted apart. One that is no answer (a bool, a mapping, inf) or a
    response that is not text is an error naming the row: str() of it would be graded."""
    from ..rows import answer_problem, is_missing, iter_local_rows, text_problem, to_text

    if not path.exists():
        raise InputError("no such file", file=path)
    rows: list[dict] = []
    golds: list[Any] = []
    responses: list[str | None] = []
    for row in iter_local_rows(path):
        if row.data is None:
            raise InputError(row.error or "unreadable row", file=path, row=row.line)
        if not rows:
            for field in (gold_field, response_field):
                if field not in row.data:
                    raise InputError(f"missing column (has: {', '.join(row.data)})", file=path, field=field)
        gold, response = row.data.get(gold_field), row.data.get(response_field)
        for field, why in ((gold_field, answer_problem(gold)), (response_field, text_problem(response, "response"))):
            if why is not None:
                raise InputError(why, file=path, row=row.line, field=field)
        rows.append(row.data)
        golds.append(None if is_missing(gold) or not (to_text(gold) or "").strip() else gold)
        responses.append(None if is_missing(response) else response)
    return rows, golds, responses
