"""``skilldistill evaluate``: avg@n accuracy of a model on math benchmarks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..benchmarks import BENCHMARKS, PAPER_BENCHMARKS
from ..evaluate.config import EvaluateConfig
from ..evaluate.stage import run_evaluate
from ..generate.config import GenerationConfig
from ..keyvalue import parse_key_values
from ..llm.base import BackendConfig
from ..orchestration.summary_tables import fit_tables, key_column
from .app import app, console, engine_kwargs, user_errors
from .options import config_option


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model path or id (a trained final/ folder, an HF id, a served name)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <benchmark>/samples.parquet, results.json."),
    benchmarks: str = config_option(EvaluateConfig, "benchmarks", "--benchmarks", "-b", default=",".join(PAPER_BENCHMARKS),
                                    help=f"Comma-separated: {', '.join(BENCHMARKS)}."),
    data_dir: Path | None = config_option(EvaluateConfig, "data_dir", "--data-dir"),
    file: list[str] = config_option(EvaluateConfig, "files", "--file", default=[],
                                    help="NAME=PATH: a benchmark's file (also for custom names)."),
    skills: list[str] = config_option(EvaluateConfig, "skills", "--skills", default=[],
                                      help="NAME=PATH: annotated benchmark Parquet for per-skill accuracy."),
    n: list[str] = config_option(EvaluateConfig, "n_samples", "--n", default=[], help="NAME=N: samples per problem (default: "
                                 + ", ".join(f"{b} {spec.n_samples}" for b, spec in BENCHMARKS.items()) + "; custom files 1)."),
    limit: int | None = config_option(EvaluateConfig, "limit", "--limit"),
    backend: str = config_option(BackendConfig, "kind", "--backend", help="transformers | vllm | openai."),
    base_url: list[str] = config_option(BackendConfig, "base_urls", "--base-url", default=[],
                                        help="OpenAI-compatible server(s), for --backend openai."),
    temperature: float = config_option(GenerationConfig, "temperature", "--temperature", help="Sampling temperature (paper: 0.6)."),
    top_p: float = config_option(GenerationConfig, "top_p", "--top-p", help="Nucleus sampling (paper: 0.95)."),
    max_new_tokens: int = config_option(GenerationConfig, "max_new_tokens", "--max-new-tokens", default=16384,
                                        help="Token cap per sample (paper: 16,384)."),
    seed: int = config_option(GenerationConfig, "seed", "--seed"),
    instruction: str | None = config_option(GenerationConfig, "instruction", "--instruction", default=None,
                                            help="Instruction appended to each problem (default: the paper's)."),
    enable_thinking: bool | None = config_option(GenerationConfig, "enable_thinking", "--thinking/--no-thinking"),
    tensor_parallel_size: int = config_option(BackendConfig, "tensor_parallel_size", "--tp",
                                              help="vLLM tensor parallel size."),
    data_parallel_size: int = config_option(BackendConfig, "data_parallel_size", "--dp", min=1,
                                            help="vLLM engines, each on its own GPUs."),
    max_model_len: int | None = config_option(BackendConfig, "max_model_len", "--max-model-len", help="vLLM context length."),
    dtype: str = config_option(BackendConfig, "dtype", "--dtype", help="auto | bfloat16 | float16 | float32."),
    enforce_eager: bool = config_option(BackendConfig, "enforce_eager", "--enforce-eager"),
    kv_cache_gb: float | None = config_option(BackendConfig, "kv_cache_memory_gb", "--kv-cache-gb"),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="KEY=VALUE for vllm.LLM (vllm) or from_pretrained (transformers). Repeatable."),
    device: str = config_option(BackendConfig, "device", "--device", help="transformers: auto | cpu | cuda | cuda:N."),
    batch_size: int = config_option(BackendConfig, "batch_size", "--batch-size", help="transformers backend batch size."),
    max_retries: int = config_option(BackendConfig, "max_retries", "--max-retries", min=0,
                                     help="openai: retries of a request after a timeout, 429 or 5xx."),
    timeout: float = config_option(BackendConfig, "request_timeout_s", "--timeout",
                                   help="openai: seconds a whole request may take (body included), then it is retried."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the samples already in --out (their log is keyed by "
                               "the model's path: after retraining into the same folder, resuming would grade the old "
                               "model's samples)."),
) -> None:
    """Generate n samples per problem, grade with math-verify, report avg@n and per-skill accuracy."""
    backend_cfg = BackendConfig(kind=backend, model=model, tensor_parallel_size=tensor_parallel_size,  # type: ignore[arg-type]
                                data_parallel_size=data_parallel_size, max_model_len=max_model_len, dtype=dtype,
                                enforce_eager=enforce_eager, kv_cache_memory_gb=kv_cache_gb, device=device,
                                model_kwargs=engine_kwargs(engine_arg),
                                batch_size=batch_size, max_retries=max_retries, request_timeout_s=timeout,
                                **({"base_urls": base_url} if base_url else {}))
    gen = GenerationConfig(backend=backend_cfg, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                           seed=seed, enable_thinking=enable_thinking, **({"instruction": instruction} if instruction is not None else {}))
    cfg = EvaluateConfig(
        benchmarks=[b.strip() for b in benchmarks.split(",") if b.strip()],
        data_dir=str(data_dir) if data_dir else None,
        files=parse_key_values(file, option="--file", as_text=True),
        skills=parse_key_values(skills, option="--skills", as_text=True),
        n_samples={k: int(v) for k, v in parse_key_values(n, option="--n", as_text=True).items()}, limit=limit,
    )
    results = run_evaluate(out, cfg, gen, fresh=fresh)
    columns = [key_column("benchmark"), *[(h, {"justify": "right"}) for h in ("problems", "n", "accuracy", "± std", "truncated")]]
    rows = [[escape(name), str(r["n_problems"]), str(r["n_samples"]), f"{100 * r['accuracy']:.1f}",
             f"{100 * r['std']:.1f}", f"{100 * (r['truncated_share'] or 0):.1f}%"] for name, r in results.items()]
    console.print(*fit_tables("", columns, rows, console.width))  # names stay whole at any width
    console.print(f"wrote {out / 'results.json'}")

