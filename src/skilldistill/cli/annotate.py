"""``skilldistill annotate CORPUS ...`` (same as ``annotate run``) and ``annotate stats``.

``annotate`` is a command group whose default command is ``run``: any first argument
that is not a sub-command name is taken as ``run``'s corpus path, so
``skilldistill annotate corpus.parquet --tree skill_mix.json --out runs/x/annotate``
annotates and ``skilldistill annotate stats runs/x/annotate`` prints per-node counts.
(A corpus file literally named ``stats`` needs the explicit ``annotate run stats``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from ..errors import ConfigError
from .app import app, console, engine_kwargs, on_duplicate_option, resolve_tree, user_errors

_HELP_FLAGS = {"--help", "-h"}


class _DefaultRunGroup(TyperGroup):
    """A group that treats ``annotate ARGS`` as ``annotate run ARGS``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in _HELP_FLAGS:
            args = ["run", *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(
    cls=_DefaultRunGroup,
    help="Attribute skill chains to corpus items (top-down over a skill tree). "
    "`skilldistill annotate CORPUS ...` runs; `annotate stats DIR` prints per-node counts.",
    no_args_is_help=True,
)
app.add_typer(annotate_app, name="annotate")


@annotate_app.command("run")
@user_errors
def run(
    corpus: Path = typer.Argument(..., help="Corpus Parquet (or a folder holding corpus.parquet)."),
    tree: str = typer.Option("math", "--tree", "-t", help="Skill tree file or bundled tree name."),
    on_duplicate: str = on_duplicate_option(),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (skills.parquet, calls.jsonl, summary.json)."),
    backend: str = typer.Option("embedding", "--backend", "-b", help="embedding | openai | vllm | transformers | distilled."),
    llm_backend: str | None = typer.Option(None, "--llm-backend", help="distilled: the LLM that labels the sample, openai | vllm | transformers."),
    sample_size: int = typer.Option(2000, "--sample-size", help="distilled: items the LLM labels (stratified)."),
    holdout_fraction: float = typer.Option(0.2, "--holdout-fraction", help="distilled: share of the sample kept out of training to measure agreement."),
    min_examples: int = typer.Option(30, "--min-examples", help="distilled: a node with fewer training decisions is left to the LLM."),
    strata: int = typer.Option(32, "--strata", help="distilled: embedding clusters the sample is drawn from."),
    uncertain_band: str = typer.Option("0.2,0.8", "--uncertain-band", help="distilled: LOW,HIGH; a child probability inside sends the decision to the LLM."),
    model: str | None = typer.Option(None, "--model", "-m", help="Chat model id/path (openai, vllm, transformers)."),
    base_url: list[str] = typer.Option([], "--base-url", help="OpenAI-compatible base URL; repeat for round-robin."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key."),
    concurrency: int = typer.Option(256, "--concurrency", "-c", help="openai: requests in flight."),
    max_retries: int = typer.Option(6, "--max-retries", help="openai: retries on timeouts, 429 and 5xx."),
    timeout: float = typer.Option(600.0, "--timeout", help="openai: seconds per request."),
    http_transport: str = typer.Option("auto", "--http-transport", help="openai: the SDK's transport, auto | aiohttp | httpx."),
    sdk_requests: bool = typer.Option(False, "--sdk-requests", help="openai: every request through the SDK's client.post() (slower; see docs/annotate.md)."),
    temperature: float = typer.Option(0.3, "--temperature", help="Sampling temperature (paper: 0.3)."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Answer budget per decision."),
    chat_template_kwargs: str | None = typer.Option(None, "--chat-template-kwargs", help='JSON, e.g. \'{"enable_thinking": false}\'.'),
    template: Path | None = typer.Option(None, "--template", help="Prompt template file (default: bundled attribution_v1)."),
    max_chars: int = typer.Option(20_000, "--max-chars", help="Cap on teacher-solution characters shown."),
    max_depth: int | None = typer.Option(None, "--max-depth", help="Do not descend below this depth."),
    max_failed_share: float = typer.Option(0.05, "--max-failed-share", min=0.0, max=1.0,
                                           help="Fail when more than this share of items has a refused call or an "
                                           "answer that stayed unreadable (below it: marked in skills_status)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs per model."),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", help="vllm."),
    data_parallel_size: int = typer.Option(1, "--dp", min=1, help="vllm: engines, each on its own GPUs."),
    max_model_len: int | None = typer.Option(None, "--max-model-len", help="vllm: context length."),
    dtype: str = typer.Option("auto", "--dtype", help="vllm / transformers: auto | bfloat16 | float16 | float32."),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vllm: no CUDA graphs / compilation (faster start)."),
    kv_cache_gb: float | None = typer.Option(None, "--kv-cache-gb", help="vllm: KV-cache GiB per engine (CPU build: RAM)."),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="KEY=VALUE for vllm.LLM (vllm) or from_pretrained (transformers). Repeatable."),
    device: str = typer.Option("auto", "--device", help="transformers / embedding: cpu, cuda, ..."),
    batch_size: int = typer.Option(8, "--batch-size", help="transformers: conversations per forward pass."),
    embedding_model: str | None = typer.Option(None, "--embedding-model", help="embedding: sentence-transformers model (default bundled MiniLM)."),
    top_k: int = typer.Option(2, "--top-k", help="embedding: at most this many children per node."),
    margin: float = typer.Option(0.03, "--margin", help="embedding: extra children within this of the best score."),
    embedding_scoring: str = typer.Option("leaves", "--embedding-scoring", help="embedding: 'leaves' (best descendant leaves) or 'text' (the child's own text)."),
    force: bool = typer.Option(False, "--force", help="Rebuild outputs even when the manifest says done (the cache is still used)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again the decisions that failed (a refused prompt) or came back unreadable."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Attribute skill chains to every item of CORPUS; resumable (rerun to continue)."""
    from ..annotate import AnnotateConfig, annotate
    from ..distilled_attribution import DistilledConfig
    from ..llm.base import BackendConfig
    from ..llm.embedding import EmbeddingConfig

    if backend not in {"embedding", "openai", "vllm", "transformers", "distilled"}:
        raise ConfigError(f"--backend must be embedding, openai, vllm, transformers or distilled, not {backend!r}")
    if backend != "embedding" and not model:
        raise ConfigError(f"--backend {backend} needs --model")
    if backend == "distilled":
        if llm_backend not in {"openai", "vllm", "transformers"}:
            raise ConfigError(f"--backend distilled needs --llm-backend openai, vllm or transformers (got {llm_backend!r})")
    elif llm_backend is not None:
        raise ConfigError("--llm-backend goes with --backend distilled")
    try:
        band = tuple(float(x) for x in uncertain_band.split(","))
    except ValueError:
        band = ()
    if len(band) != 2:
        raise ConfigError(f"--uncertain-band must be LOW,HIGH, e.g. 0.2,0.8 (got {uncertain_band!r})")
    try:
        ct_kwargs = json.loads(chat_template_kwargs) if chat_template_kwargs else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"--chat-template-kwargs is not JSON: {e}") from None
    try:  # pydantic errors become one red line
        llm = None
        if backend != "embedding":
            extra: dict = {"base_urls": base_url} if base_url else {}
            llm = BackendConfig(
                kind=llm_backend if backend == "distilled" else backend, model=model, api_key_env=api_key_env, max_concurrency=concurrency,
                max_retries=max_retries, request_timeout_s=timeout, http_transport=http_transport,
                fast_requests=not sdk_requests, tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization, device=device, batch_size=batch_size,
                data_parallel_size=data_parallel_size, max_model_len=max_model_len, dtype=dtype,
                enforce_eager=enforce_eager, kv_cache_memory_gb=kv_cache_gb, model_kwargs=engine_kwargs(engine_arg),
                **extra,
            )
        emb = EmbeddingConfig(model=embedding_model, top_k=top_k, margin=margin, scoring=embedding_scoring,
                              device="cpu" if device == "auto" else device)
        cfg = AnnotateConfig(
            backend=backend, llm=llm, embedding=emb, prompt_template=str(template) if template else None,
            temperature=temperature, max_tokens=max_tokens, chat_template_kwargs=ct_kwargs,
            max_chars=max_chars, max_depth=max_depth, max_failed_share=max_failed_share,
            distilled=DistilledConfig(sample_size=sample_size, holdout_fraction=holdout_fraction, min_examples=min_examples,
                                      strata=strata, uncertain_band=band),
        )
    except ValidationError:
        raise  # user_errors names the field in one line
    except ValueError as e:
        raise ConfigError(str(e)) from None
    result = annotate(corpus, resolve_tree(tree, on_duplicate), out, cfg, force=force, show_progress=progress, retry_failed=retry_failed)
    s = result.summary
    if result.skipped:
        console.print(f"[green]up to date[/green]: {result.skills_path} (use --force to rebuild)")
        return
    table = Table(title="annotate", show_header=False)
    table.add_row("items (with skills)", f"{s['items']} ({s['items_with_skills']})")
    table.add_row("chains / item", f"{s['chains_per_item']}")
    table.add_row("decisions (new / cached)", f"{s['decisions']} ({s['decisions_this_run']} / {s['decisions_cached']})")
    table.add_row("LLM calls this run (per item, all runs)", f"{s['calls_this_run']} ({s['calls_per_item']})")
    if s.get("prompt_tokens_this_run") is not None:
        table.add_row("tokens this run (prompt / completion)", f"{s['prompt_tokens_this_run']} / {s['completion_tokens_this_run']}")
    table.add_row("unparseable / failed / no valid choice / unmatched names",
                  f"{s['failures']['unparseable']} / {s['failures'].get('failed', 0)} / {s['no_valid_choice']} / {s['unmatched_names']}")
    bad = s.get("items_incomplete") or {}
    if any(bad.values()):
        table.add_row("items without a complete attribution (refused / unreadable)",
                      f"{bad.get('failed', 0)} / {bad.get('unparseable', 0)} (skills_status; --retry-failed asks again)")
    table.add_row("wall time", f"{s['wall_time_s']} s ({s['items_per_s']} items/s)")
    console.print(table)
    if s.get("distilled"):
        _print_distilled(s["distilled"])
    console.print(f"wrote {result.skills_path}")


@annotate_app.command("stats")
@user_errors
def stats(
    path: Path = typer.Argument(..., help="annotate output folder or skills.parquet."),
    tree: str | None = typer.Option(None, "--tree", "-t", help="List every node of this tree, zero counts included."),
    on_duplicate: str = on_duplicate_option(),
    depth: int | None = typer.Option(None, "--depth", "-d", help="Only nodes down to this depth."),
    top: int | None = typer.Option(None, "--top", help="Only the N nodes with most items (sorted by items)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows on stdout."),
) -> None:
    """Per-node counts: items and chains passing through each skill node."""
    from ..annotate import annotate_stats

    rows = annotate_stats(path, None if tree is None else resolve_tree(tree, on_duplicate), max_depth=depth)
    if top is not None:
        rows = sorted(rows, key=lambda r: -r["items"])[:top]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"skills per node: {path}")
    for col, kw in (("node", {}), ("depth", {"justify": "right"}), ("items", {"justify": "right"}), ("share", {"justify": "right"}), ("chains", {"justify": "right"})):
        table.add_column(col, **kw)
    for r in rows:
        indent = "  " * (r["depth"] - 1) if top is None else ""
        name = r["node"].rsplit("->", 1)[-1] if top is None else r["node"]
        table.add_row(indent + escape(name), str(r["depth"]), str(r["items"]), f"{100 * r['share']:.1f}%", str(r["chains"]))
    console.print(table)


def _print_distilled(d: dict) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    t = Table(title="distilled attribution", show_header=False)
    smp, cls, dec, calls = d["sample"], d["classifiers"], d["decisions"], d["llm_calls"]
    t.add_row("LLM-labelled sample (train / held out)", f"{smp['items']} ({smp['train']} / {smp['held_out']})")
    t.add_row("nodes with a classifier / left to the LLM", f"{cls['nodes_with_classifier']} / {cls['nodes_llm_only']}")
    t.add_row("decisions on the other items (classifier / LLM)",
              f"{dec['total']} ({dec['classifier']} / {dec['llm']}; fell back {pct(dec['fallback_share'])})")
    for name, a in d["held_out_agreement"].items():
        t.add_row(f"held-out agreement, {name.replace('_', ' ')} (P / R)",
                  f"leaf {pct(a['leaf_precision'])} / {pct(a['leaf_recall'])}, "
                  f"top {pct(a['top_precision'])} / {pct(a['top_recall'])} ({a['items']} items)")
    t.add_row("LLM calls: made / labelling all with the LLM",
              f"{calls['total']} / ~{calls['all_llm_estimate']}")
    t.add_row("LLM calls saved", f"{calls['saved']} ({pct(calls['saved_share'])})")
    console.print(t)
