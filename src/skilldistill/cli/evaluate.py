"""``skilldistill evaluate``: avg@n accuracy of a model on math benchmarks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..evaluate import BENCHMARKS, PAPER_BENCHMARKS, EvaluateConfig, run_evaluate
from ..generate import GenerationConfig
from ..llm.base import BackendConfig
from .app import app, console, engine_kwargs, user_errors


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model path or id (a trained final/ folder, an HF id, a served name)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <benchmark>/samples.parquet, results.json."),
    benchmarks: str = typer.Option(",".join(PAPER_BENCHMARKS), "--benchmarks", "-b", help=f"Comma-separated: {', '.join(BENCHMARKS)}."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Local benchmarks in <dir>/<name>/test.jsonl (offline)."),
    file: list[str] = typer.Option([], "--file", help="NAME=PATH: a benchmark's file (also for custom names)."),
    skills: list[str] = typer.Option([], "--skills", help="NAME=PATH: annotated benchmark Parquet for per-skill accuracy."),
    n: list[str] = typer.Option([], "--n", help="NAME=N: samples per problem (default: "
                                + ", ".join(f"{b} {spec.n_samples}" for b, spec in BENCHMARKS.items()) + "; custom files 1)."),
    limit: int | None = typer.Option(None, help="At most this many problems per benchmark."),
    backend: str = typer.Option("transformers", "--backend", help="transformers | vllm | openai."),
    base_url: list[str] = typer.Option([], "--base-url", help="OpenAI-compatible server(s), for --backend openai."),
    temperature: float = typer.Option(0.6, help="Sampling temperature (paper: 0.6)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling (paper: 0.95)."),
    max_new_tokens: int = typer.Option(16384, help="Token cap per sample (paper: 16,384)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    instruction: str | None = typer.Option(None, help="Instruction appended to each problem (default: the paper's)."),
    enable_thinking: bool | None = typer.Option(None, "--thinking/--no-thinking", help="Qwen3 thinking switch."),
    tensor_parallel_size: int = typer.Option(1, "--tp", help="vLLM tensor parallel size."),
    data_parallel_size: int = typer.Option(1, "--dp", min=1, help="vLLM engines, each on its own GPUs."),
    max_model_len: int | None = typer.Option(None, "--max-model-len", help="vLLM context length."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | bfloat16 | float16 | float32."),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vLLM: no CUDA graphs / compilation (faster start)."),
    kv_cache_gb: float | None = typer.Option(None, "--kv-cache-gb", help="vLLM: KV-cache GiB per engine (CPU build: RAM)."),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="KEY=VALUE for vllm.LLM (vllm) or from_pretrained (transformers). Repeatable."),
    device: str = typer.Option("auto", "--device", help="transformers: auto | cpu | cuda | cuda:N."),
    batch_size: int = typer.Option(8, help="transformers backend batch size."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the samples already in --out (their log is keyed by "
                               "the model's path: after retraining into the same folder, resuming would grade the old "
                               "model's samples)."),
) -> None:
    """Generate n samples per problem, grade with math-verify, report avg@n and per-skill accuracy."""
    backend_cfg = BackendConfig(kind=backend, model=model, tensor_parallel_size=tensor_parallel_size,  # type: ignore[arg-type]
                                data_parallel_size=data_parallel_size, max_model_len=max_model_len, dtype=dtype,
                                enforce_eager=enforce_eager, kv_cache_memory_gb=kv_cache_gb, device=device,
                                model_kwargs=engine_kwargs(engine_arg),
                                batch_size=batch_size, **({"base_urls": base_url} if base_url else {}))
    gen = GenerationConfig(backend=backend_cfg, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                           seed=seed, enable_thinking=enable_thinking, **({"instruction": instruction} if instruction is not None else {}))
    cfg = EvaluateConfig(
        benchmarks=[b.strip() for b in benchmarks.split(",") if b.strip()],
        data_dir=str(data_dir) if data_dir else None,
        files=_pairs(file, "--file"), skills=_pairs(skills, "--skills"),
        n_samples={k: int(v) for k, v in _pairs(n, "--n").items()}, limit=limit,
    )
    results = run_evaluate(out, cfg, gen, fresh=fresh)
    table = Table("benchmark", "problems", "n", "accuracy", "± std", "truncated")
    for name, r in results.items():
        table.add_row(name, str(r["n_problems"]), str(r["n_samples"]), f"{100 * r['accuracy']:.1f}",
                      f"{100 * r['std']:.1f}", f"{100 * (r['truncated_share'] or 0):.1f}%")
    console.print(table)
    console.print(f"wrote {out / 'results.json'}")


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            raise typer.BadParameter(f"{flag} takes NAME=VALUE, got {v!r}")
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out
