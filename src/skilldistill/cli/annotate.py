"""``skilldistill annotate CORPUS ...`` (same as ``annotate run``) and ``annotate stats``.

``annotate`` is a command group whose default command is ``run``: any first argument
that is not a sub-command name is taken as ``run``'s corpus path, so
``skilldistill annotate corpus.parquet --tree skill_mix.json --out runs/x/annotate``
annotates and ``skilldistill annotate stats runs/x/annotate`` prints per-node counts.
(A corpus file literally named ``stats`` needs the explicit ``annotate run stats``.)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from ..attribution.config import AnchorConfig, AnnotateConfig, DistilledConfig, LabelsConfig
from ..errors import ConfigError
from ..llm.base import BackendConfig
from ..llm.embedding import EmbeddingConfig
from .app import app, console, engine_kwargs, on_duplicate_option, resolve_tree, user_errors
from .options import config_option, field_help

_HELP_FLAGS = {"--help", "-h"}
_BACKENDS = ("embedding", "openai", "vllm", "transformers", "distilled", "labels")
_NO_MODEL = ("embedding", "labels")  # the backends that ask no chat model
_LLM_KINDS = ("openai", "vllm", "transformers")
_ANCHOR_HELP = ("embedding, chat, distilled: a corpus field (column or meta key) whose label takes the walk's top "
                "decisions (MATH's subject: the root's); the backend walks on below it (docs/annotate.md).")


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


def _backend_option(kinds: str, config_cls: type[BaseModel], field: str, *flags: str, help: str | None = None, **kwargs: Any) -> Any:
    """An option that only some backends read: its help (the field's unless given) says which."""
    return config_option(config_cls, field, *flags, help=f"{kinds}: {help or field_help(config_cls, field)}", **kwargs)


@annotate_app.command("run")
@user_errors
def run(
    corpus: Path = typer.Argument(..., help="Corpus Parquet (or a folder holding corpus.parquet)."),
    tree: str = typer.Option("math", "--tree", "-t", help="Skill tree file or bundled tree name."),
    on_duplicate: str = on_duplicate_option(),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (skills.parquet, calls.jsonl, summary.json)."),
    backend: str = config_option(AnnotateConfig, "backend", "--backend", "-b"),
    llm_backend: str | None = typer.Option(None, "--llm-backend", help="distilled: the LLM that labels the sample, openai | vllm | transformers."),
    sample_size: int = _backend_option("distilled", DistilledConfig, "sample_size", "--sample-size"),
    holdout_fraction: float = _backend_option("distilled", DistilledConfig, "holdout_fraction", "--holdout-fraction"),
    min_examples: int = _backend_option("distilled", DistilledConfig, "min_examples", "--min-examples"),
    strata: int = _backend_option("distilled", DistilledConfig, "strata", "--strata"),
    uncertain_band: str = typer.Option("0.2,0.8", "--uncertain-band", help="distilled: LOW,HIGH; a child probability inside sends the decision to the LLM."),
    train_labels: Path | None = _backend_option("distilled", DistilledConfig, "train_labels", "--train-labels"),
    features: str = _backend_option("distilled", DistilledConfig, "features", "--features"),
    label_field: str | None = _backend_option("labels", LabelsConfig, "label_field", "--label-field"),
    label_separator: str = _backend_option("labels", LabelsConfig, "label_separator", "--label-separator"),
    label_map: Path | None = _backend_option("labels", LabelsConfig, "label_map", "--label-map"),
    anchor_field: str | None = typer.Option(None, "--anchor-field", help=_ANCHOR_HELP),
    anchor_map: Path | None = typer.Option(None, "--anchor-map", help="with --anchor-field: a label map as --label-map's."),
    anchor_separator: str = typer.Option("->", "--anchor-separator", help="with --anchor-field: as --label-separator."),
    anchor_required: bool = config_option(AnchorConfig, "required", "--anchor-required"),
    model: str | None = _backend_option("openai, vllm, transformers", BackendConfig, "model", "--model", "-m", default=None),
    base_url: list[str] = _backend_option("openai", BackendConfig, "base_urls", "--base-url", default=[], help="OpenAI-compatible base URL; repeat for round-robin."),
    api_key_env: str = _backend_option("openai", BackendConfig, "api_key_env", "--api-key-env"),
    concurrency: int = _backend_option("openai", BackendConfig, "max_concurrency", "--concurrency", "-c"),
    max_retries: int = _backend_option("openai", BackendConfig, "max_retries", "--max-retries", help="retries on timeouts, 429 and 5xx."),
    timeout: float = _backend_option("openai", BackendConfig, "request_timeout_s", "--timeout", help="seconds per request."),
    http_transport: str = _backend_option("openai", BackendConfig, "http_transport", "--http-transport", help="the SDK's transport, auto | aiohttp | httpx."),
    sdk_requests: bool = typer.Option(False, "--sdk-requests", help="openai: every request through the SDK's client.post() (slower; see docs/annotate.md)."),
    temperature: float = config_option(AnnotateConfig, "temperature", "--temperature", help="Sampling temperature (paper: 0.3)."),
    max_tokens: int = config_option(AnnotateConfig, "max_tokens", "--max-tokens"),
    chat_template_kwargs: str | None = typer.Option(None, "--chat-template-kwargs", help='JSON, e.g. \'{"enable_thinking": false}\'.'),
    template: Path | None = config_option(AnnotateConfig, "prompt_template", "--template"),
    max_chars: int = config_option(AnnotateConfig, "max_chars", "--max-chars"),
    max_depth: int | None = config_option(AnnotateConfig, "max_depth", "--max-depth"),
    max_failed_share: float = config_option(AnnotateConfig, "max_failed_share", "--max-failed-share", min=0.0, max=1.0),
    tensor_parallel_size: int = _backend_option("vllm", BackendConfig, "tensor_parallel_size", "--tensor-parallel-size", help="GPUs per model."),
    gpu_memory_utilization: float = _backend_option("vllm", BackendConfig, "gpu_memory_utilization", "--gpu-memory-utilization", help="share of each GPU's memory."),
    data_parallel_size: int = _backend_option("vllm", BackendConfig, "data_parallel_size", "--dp", min=1, help="engines, each on its own GPUs."),
    max_model_len: int | None = _backend_option("vllm", BackendConfig, "max_model_len", "--max-model-len", help="context length."),
    dtype: str = _backend_option("vllm / transformers", BackendConfig, "dtype", "--dtype", help="auto | bfloat16 | float16 | float32."),
    enforce_eager: bool = config_option(BackendConfig, "enforce_eager", "--enforce-eager"),
    kv_cache_gb: float | None = config_option(BackendConfig, "kv_cache_memory_gb", "--kv-cache-gb"),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="KEY=VALUE for vllm.LLM (vllm) or from_pretrained (transformers). Repeatable."),
    device: str = _backend_option("transformers / embedding", BackendConfig, "device", "--device"),
    batch_size: int = _backend_option("transformers", BackendConfig, "batch_size", "--batch-size", help="conversations per forward pass."),
    embedding_model: str | None = _backend_option("embedding", EmbeddingConfig, "model", "--embedding-model"),
    top_k: int = _backend_option("embedding", EmbeddingConfig, "top_k", "--top-k"),
    margin: float = _backend_option("embedding", EmbeddingConfig, "margin", "--margin"),
    embedding_scoring: str = _backend_option("embedding", EmbeddingConfig, "scoring", "--embedding-scoring"),
    force: bool = typer.Option(False, "--force", help="Rebuild outputs even when the manifest says done (the cache is still used)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again the decisions that failed (a refused prompt) or came back unreadable."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Attribute skill chains to every item of CORPUS; resumable (rerun to continue)."""
    from ..attribution import run_annotate

    _check_backend_flags(backend, model, llm_backend, label_field, label_map, train_labels)
    anchor = _anchor_config(backend, anchor_field, anchor_map, anchor_separator, anchor_required)
    band, ct_kwargs = _uncertain_band(uncertain_band), _json_option("--chat-template-kwargs", chat_template_kwargs)
    with _config_errors():
        llm = None if backend in _NO_MODEL or (backend == "distilled" and llm_backend is None) else BackendConfig(
            kind=llm_backend if backend == "distilled" else backend, model=model, api_key_env=api_key_env, max_concurrency=concurrency,
            max_retries=max_retries, request_timeout_s=timeout, http_transport=http_transport,
            fast_requests=not sdk_requests, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, device=device, batch_size=batch_size,
            data_parallel_size=data_parallel_size, max_model_len=max_model_len, dtype=dtype,
            enforce_eager=enforce_eager, kv_cache_memory_gb=kv_cache_gb, model_kwargs=engine_kwargs(engine_arg),
            **({"base_urls": base_url} if base_url else {}),
        )
        cfg = AnnotateConfig(
            backend=backend, llm=llm, prompt_template=str(template) if template else None,
            embedding=EmbeddingConfig(model=embedding_model, top_k=top_k, margin=margin, scoring=embedding_scoring,
                                      device="cpu" if device == "auto" else device),
            temperature=temperature, max_tokens=max_tokens, chat_template_kwargs=ct_kwargs,
            max_chars=max_chars, max_depth=max_depth, max_failed_share=max_failed_share,
            distilled=DistilledConfig(sample_size=sample_size, holdout_fraction=holdout_fraction, min_examples=min_examples,
                                      strata=strata, uncertain_band=band, features=features, train_labels=_text(train_labels)),
            labels=LabelsConfig(label_field=label_field, label_separator=label_separator, label_map=_text(label_map)), anchor=anchor)
    _report(run_annotate(corpus, resolve_tree(tree, on_duplicate), out, cfg, force=force, show_progress=progress, retry_failed=retry_failed))


def _text(path: Path | None) -> str | None:
    return str(path) if path else None


def _report(result: Any) -> None:
    if result.skipped:
        console.print(f"[green]up to date[/green]: {result.skills_path} (use --force to rebuild)")
        return
    _print_summary(result.summary)
    console.print(f"wrote {result.skills_path}")


def _check_backend_flags(backend: str, model: str | None, llm_backend: str | None, label_field: str | None = None,
                         label_map: Path | None = None, train_labels: Path | None = None) -> None:
    """The flags that go together: a known backend, a model for a chat one, the LLM's kind for
    distilled (optional with --train-labels), a label field for labels (and the label flags
    only with it)."""
    if backend not in _BACKENDS:
        raise ConfigError(f"--backend must be embedding, openai, vllm, transformers, distilled or labels, not {backend!r}")
    if train_labels is not None and backend != "distilled":
        raise ConfigError(f"--train-labels goes with --backend distilled (got --backend {backend})")
    llm_optional = backend == "distilled" and train_labels is not None and llm_backend is None
    if backend not in _NO_MODEL and not model and not llm_optional:
        raise ConfigError(f"--backend {backend} needs --model" + (" (or --train-labels FILE, to learn from a labels "
                                                                   "file with no LLM)" if backend == "distilled" else ""))
    if llm_optional and model:
        raise ConfigError("--model names the LLM of --llm-backend: give --llm-backend too (or drop --model to learn "
                          "from --train-labels alone)")
    if backend == "distilled":
        if llm_backend not in _LLM_KINDS and not llm_optional:
            raise ConfigError(f"--backend distilled needs --llm-backend openai, vllm or transformers (got {llm_backend!r})"
                              " or --train-labels FILE")
    elif llm_backend is not None:
        raise ConfigError("--llm-backend goes with --backend distilled")
    if backend == "labels" and not label_field:
        raise ConfigError("--backend labels needs --label-field (the corpus column, or meta key, holding each item's label)")
    if backend != "labels" and (label_field or label_map):
        raise ConfigError(f"--label-field and --label-map go with --backend labels (got --backend {backend})")


def _anchor_config(backend: str, anchor_field: str | None, anchor_map: Path | None, separator: str,
                   required: bool) -> AnchorConfig:
    """The anchor flags, checked (with a backend that walks the tree; the map and --anchor-required
    only with a field), as the config's ``anchor`` section."""
    if anchor_field is None and (anchor_map is not None or required):
        raise ConfigError("--anchor-map and --anchor-required go with --anchor-field")
    if anchor_field is not None and backend == "labels":
        raise ConfigError("--anchor-field goes with a backend that walks the tree (embedding, openai, vllm, "
                          "transformers, distilled); --backend labels reads every decision from --label-field")
    with _config_errors():
        return AnchorConfig(label_field=anchor_field, label_separator=separator, label_map=_text(anchor_map),
                            required=required)


def _uncertain_band(text: str) -> tuple[float, ...]:
    """``--uncertain-band LOW,HIGH`` as two numbers (their bounds are DistilledConfig's to check)."""
    try:
        band = tuple(float(x) for x in text.split(","))
    except ValueError:
        band = ()
    if len(band) != 2:
        raise ConfigError(f"--uncertain-band must be LOW,HIGH, e.g. 0.2,0.8 (got {text!r})")
    return band


def _json_option(flag: str, text: str | None) -> dict[str, Any]:
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} is not JSON: {e}") from None


@contextlib.contextmanager
def _config_errors() -> Iterator[None]:
    """A config the options make that pydantic refuses is one red line (user_errors names
    the field); any other ValueError of a config check becomes a ConfigError."""
    try:
        yield
    except ValidationError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _print_summary(s: dict[str, Any]) -> None:
    table = Table(title="annotate", show_header=False)
    table.add_row("items (with skills)", f"{s['items']} ({s['items_with_skills']})")
    table.add_row("chains / item", f"{s['chains_per_item']}")
    table.add_row("decisions (new / cached)", f"{s['decisions']} ({s['decisions_this_run']} / {s['decisions_cached']})")
    table.add_row("LLM calls this run (per item, all runs)", f"{s['calls_this_run']} ({s['calls_per_item']})")
    if s.get("prompt_tokens_this_run") is not None:
        table.add_row("tokens this run (prompt / completion)", f"{s['prompt_tokens_this_run']} / {s['completion_tokens_this_run']}")
    table.add_row("unparseable / failed / no valid choice / unmatched names",
                  f"{s['failures']['unparseable']} / {s['failures'].get('failed', 0)} / {s['no_valid_choice']} / {s['unmatched_names']}")
    if s.get("unreadable_reasons"):
        table.add_row("unreadable answers", escape(", ".join(f"{r} ({c})" for r, c in s["unreadable_reasons"])))
    bad = s.get("items_incomplete") or {}
    if any(bad.values()):
        table.add_row("items without a complete attribution (refused / unreadable)",
                      f"{bad.get('failed', 0)} / {bad.get('unparseable', 0)} (skills_status; --retry-failed asks again)")
    table.add_row("wall time", f"{s['wall_time_s']} s ({s['items_per_s']} items/s)")
    console.print(table)
    if s.get("distilled"):
        _print_distilled(s["distilled"])
    if s.get("labels"):
        _print_labels(s["labels"])
    if s.get("anchor"):
        _print_anchor(s["anchor"])


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
    from ..attribution import annotate_stats

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


def _print_labels(d: dict) -> None:
    t = Table(title=f"labels from field {escape(repr(d['field']))}", show_header=False)
    t.add_row("items labelled / no label / a label naming no tree node",
              f"{d['items_labelled']} / {d['missing']} / {d['unmapped']['items']}")
    if d["unmapped"]["values"]:
        t.add_row("labels naming no tree node", escape(", ".join(f"{v!r} ({c})" for v, c in d["unmapped"]["values"][:8])))
    if d["cut_to_ancestor"]["labels"]:
        t.add_row("labels stopped at an ancestor (the tree lacks their lower parts)", str(d["cut_to_ancestor"]["labels"]))
    t.add_row("chains per depth", ", ".join(f"{k}: {v}" for k, v in d["chains_per_depth"].items()) or "-")
    t.add_row("LLM calls", f"0 (a top-down LLM walk: about {d['llm_calls_saved_estimate']}, "
              f"{d['llm_calls_saved_per_item']} per item)")
    console.print(t)


def _print_anchor(d: dict) -> None:
    t = Table(title=f"walk anchored on field {escape(repr(d['field']))}", show_header=False)
    un = d["unanchored"]
    t.add_row("items anchored / unanchored (no label / a label naming no tree node)",
              f"{d['items_anchored']} / {un['items']} ({un['missing']} / {un['unmapped']})"
              + (" marked failed (--anchor-required)" if d["required"] else " walked from the root"))
    if un["values"]:
        t.add_row("labels naming no tree node", escape(", ".join(f"{v!r} ({c})" for v, c in un["values"][:8])))
    t.add_row("decisions taken from the labels (calls saved)", str(d["calls_saved"]))
    console.print(t)


def _print_distilled(d: dict) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    t = Table(title="distilled attribution", show_header=False)
    smp, cls, dec, calls = d["sample"], d["classifiers"], d["decisions"], d["llm_calls"]
    if d.get("labels"):
        lab = d["labels"]
        t.add_row("labels file (rows / items / chains)", f"{escape(lab['file'])} ({lab['rows']} / {lab['items']} / "
                  f"{lab['chains']})")
    t.add_row("labelled sample (train / held out)" if d.get("labels") else "LLM-labelled sample (train / held out)",
              f"{smp['items']} ({smp['train']} / {smp['held_out']})")
    t.add_row("features", escape(cls["features"]))
    t.add_row("nodes with a classifier / left to the LLM", f"{cls['nodes_with_classifier']} / {cls['nodes_llm_only']}")
    t.add_row("decisions on the other items (classifier / LLM)",
              f"{dec['total']} ({dec['classifier']} / {dec['llm']}; fell back {pct(dec['fallback_share'])})")
    for name, a in d["held_out_agreement"].items():
        t.add_row(f"held-out agreement, {name.replace('_', ' ')} (P / R)",
                  f"leaf {pct(a['leaf_precision'])} / {pct(a['leaf_recall'])}, "
                  f"top {pct(a['top_precision'])} / {pct(a['top_recall'])} ({a['items']} items)")
    if calls["all_llm_estimate"] is None:  # learnt from a labels file: no LLM-labelled sample to estimate from
        t.add_row("LLM calls made (fall-back / held-out check)",
                  f"{calls['total']} ({calls['fallback']} / {calls['held_out_check']})")
        console.print(t)
        return
    t.add_row("LLM calls: made / labelling all with the LLM",
              f"{calls['total']} / ~{calls['all_llm_estimate']}")
    t.add_row("LLM calls saved", f"{calls['saved']} ({pct(calls['saved_share'])})")
    console.print(t)
