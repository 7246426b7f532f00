"""``skilldistill tree validate|show|stats|list|export|from-labels|build``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..artifacts import read_json, write_json
from ..attribution.config import LabelsConfig
from ..errors import ConfigError
from ..llm.base import BackendConfig
from ..tree import SkillTree, available_bundled_trees
from ..tree_build.config import TreeBuildConfig
from .app import app, console, engine_kwargs, on_duplicate_option, resolve_tree, user_errors
from .options import config_option

tree_app = typer.Typer(help="Inspect and validate skill trees (JSON or YAML, or a bundled tree name).", no_args_is_help=True)
app.add_typer(tree_app, name="tree")

TREE_ARG = typer.Argument(..., help="Tree file (.json/.yaml; EvalTree's raw description/subtrees form too) or bundled tree name (e.g. 'math', 'demo').")
ON_DUPLICATE = on_duplicate_option()


@tree_app.command("validate")
@user_errors
def validate(tree: str = TREE_ARG, on_duplicate: str = ON_DUPLICATE) -> None:
    """Check a tree: names are non-empty strings, siblings unique, no unknown keys."""
    t = resolve_tree(tree, on_duplicate)
    s = t.stats()
    merged = f", {len(t.merged)} duplicate siblings merged" if t.merged else ""
    console.print(f"[green]valid[/green]: {tree} ({s.nodes} nodes, {s.leaves} leaves, depth {s.depth}{merged})")


@tree_app.command("stats")
@user_errors
def stats(tree: str = TREE_ARG, on_duplicate: str = ON_DUPLICATE, as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """Print node, leaf, depth and branching counts."""
    s = resolve_tree(tree, on_duplicate).stats()
    if as_json:
        typer.echo(json.dumps(s.as_dict(), indent=2))
        return
    table = Table(title=f"skill tree: {tree}", show_header=False)
    table.add_row("nodes", str(s.nodes))
    table.add_row("leaves", str(s.leaves))
    table.add_row("inner nodes", str(s.inner))
    table.add_row("depth", str(s.depth))
    table.add_row("top-level skills", str(s.top_level))
    table.add_row("branching (min / mean / max)", f"{s.branching_min} / {s.branching_mean} / {s.branching_max}")
    table.add_row("leaves per depth", ", ".join(f"{d}: {n}" for d, n in s.leaves_per_depth.items()))
    table.add_row("nodes with a description", str(s.described))
    console.print(table)


@tree_app.command("show")
@user_errors
def show(
    tree: str = TREE_ARG,
    max_depth: int | None = typer.Option(None, "--max-depth", "-d", help="Stop expanding below this depth."),
    max_children: int | None = typer.Option(None, "--max-children", help="Show at most this many children per node."),
    descriptions: bool = typer.Option(True, "--descriptions/--no-descriptions", help="Show node descriptions."),
    on_duplicate: str = ON_DUPLICATE,
) -> None:
    """Render the tree."""
    t = resolve_tree(tree, on_duplicate)
    console.print(t.render(max_depth=max_depth, descriptions=descriptions, max_children=max_children))


@tree_app.command("list")
def list_bundled() -> None:
    """List the trees bundled with the package."""
    for name, file in sorted(available_bundled_trees().items()):
        typer.echo(f"{name}\t{file}")


@tree_app.command("export")
@user_errors
def export(tree: str = TREE_ARG, out: Path = typer.Argument(..., help="Output .json or .yaml path."),
           on_duplicate: str = ON_DUPLICATE) -> None:
    """Write a tree (e.g. a bundled one, or EvalTree's raw file as name/children) to a file."""
    resolve_tree(tree, on_duplicate).save(out)
    console.print(f"wrote {out}")


@tree_app.command("from-labels")
@user_errors
def from_labels(
    corpus: Path = typer.Argument(..., help="Corpus Parquet (or a folder holding corpus.parquet)."),
    label_field: str = typer.Option(..., "--label-field", help="The field holding each item's label: a column, else a key of its meta JSON."),
    separator: str = config_option(LabelsConfig, "label_separator", "--separator"),
    min_size: int = typer.Option(1, "--min-size", min=1, help="A node with fewer items merges into its parent (its items count there)."),
    root: str | None = typer.Option(None, "--root", help="The root's name; default: the first part every label shares, else 'Skills'."),
    out: Path = typer.Option(..., "--out", "-o", help="The tree file to write (.json or .yaml); counts go to <stem>_counts.json beside it."),
) -> None:
    """Build the tree a corpus's labels live in (DeepMath's topics, MATH's subjects), with per-node counts."""
    from ..attribution.labels_tree import tree_from_labels, write_label_tree

    result = tree_from_labels(corpus, label_field, separator=separator, min_size=min_size, root=root)
    tree_path, counts_path = write_label_tree(result, out)
    c, s = result.counts, result.tree.stats()
    table = Table(title=f"tree from labels {label_field!r}", show_header=False)
    table.add_row("items (labelled / no label)", f"{c['items']} ({c['items_labelled']} / {c['missing']})")
    if c["malformed"]["labels"]:
        table.add_row("labels with an empty part (skipped)", str(c["malformed"]["labels"]))
    table.add_row("root", c["root"])
    table.add_row("nodes / leaves / depth", f"{s.nodes} / {s.leaves} / {s.depth}")
    table.add_row("top level (items)", ", ".join(f"{n['node']} ({n['items']})" for n in c["nodes"] if n["depth"] == 1))
    if c["merged"]:
        table.add_row(f"merged into their parent (< {min_size} items)",
                      f"{len(c['merged'])} subtrees ({sum(m['items'] for m in c['merged'])} items, counted in their parents)")
    if c["at_root"]:
        table.add_row("items left at the root (no skill)", str(c["at_root"]))
    console.print(table, soft_wrap=True)
    console.print(f"wrote {tree_path} and {counts_path}")


@tree_app.command("build")
@user_errors
def build(
    corpus: Path = typer.Argument(..., help="Corpus Parquet (or a folder holding corpus.parquet): id, question, response."),
    backend: str = typer.Option(..., "--backend", "-b", help="Who proposes the chains: openai (any OpenAI-compatible server) or vllm (in process)."),
    model: str = typer.Option(..., "--model", "-m", help="Model id, local path, or served model name."),
    base_url: list[str] = typer.Option([], "--base-url", help="openai: OpenAI-compatible base URL; repeat for several servers."),
    out: Path = typer.Option(..., "--out", "-o", help="The tree file to write (.json or .yaml); counts go to <stem>_counts.json beside it."),
    work_dir: Path | None = typer.Option(None, "--work-dir", help="The build folder (answers, counts, summary; resumable); default: <out stem>_build beside --out."),
    items: int | None = config_option(TreeBuildConfig, "items", "--items", "-n", min=1),
    seed: int = config_option(TreeBuildConfig, "seed", "--seed"),
    root: str = config_option(TreeBuildConfig, "root", "--root"),
    max_tokens: int = config_option(TreeBuildConfig, "max_tokens", "--max-tokens"),
    temperature: float = config_option(TreeBuildConfig, "temperature", "--temperature"),
    max_chars: int = config_option(TreeBuildConfig, "max_chars", "--max-chars"),
    max_chains: int = config_option(TreeBuildConfig, "max_chains", "--max-chains"),
    max_depth: int = config_option(TreeBuildConfig, "max_depth", "--max-depth"),
    merge_threshold: float = config_option(TreeBuildConfig, "merge_threshold", "--merge-threshold"),
    max_children: int = config_option(TreeBuildConfig, "max_children", "--max-children"),
    overflow: str = config_option(TreeBuildConfig, "overflow", "--overflow"),
    min_count: int = config_option(TreeBuildConfig, "min_count", "--min-count"),
    max_failed_share: float = config_option(TreeBuildConfig, "max_failed_share", "--max-failed-share"),
    concurrency: int = config_option(BackendConfig, "max_concurrency", "--concurrency", "-c"),
    max_retries: int = config_option(BackendConfig, "max_retries", "--max-retries"),
    timeout: float = config_option(BackendConfig, "request_timeout_s", "--timeout"),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="vllm: KEY=VALUE for vllm.LLM (e.g. dtype=float32). Repeatable."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the manifest says done (the answers are reused)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again the items whose request the server refused."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Induce a skill tree from CORPUS: an LLM proposes skill chains per item, merged into one tree; resumable."""
    from ..tree_build import run_tree_build

    if backend not in ("openai", "vllm"):
        raise ConfigError(f"--backend must be openai or vllm, not {backend!r}")
    llm = BackendConfig(kind=backend, model=model, max_concurrency=concurrency, max_retries=max_retries,
                        request_timeout_s=timeout, model_kwargs=engine_kwargs(engine_arg),
                        **({"base_urls": base_url} if base_url else {}))
    cfg = TreeBuildConfig(llm=llm, items=items, seed=seed, root=root, max_tokens=max_tokens, temperature=temperature,
                          max_chars=max_chars, max_chains=max_chains, max_depth=max_depth,
                          merge_threshold=merge_threshold, max_children=max_children, overflow=overflow,
                          min_count=min_count, max_failed_share=max_failed_share)
    folder = work_dir or out.with_name(f"{out.stem}_build")
    result = run_tree_build(corpus, folder, cfg, force=force, retry_failed=retry_failed, show_progress=progress)
    tree = SkillTree.load(result.tree_path, on_duplicate="error")
    tree.save(out)
    counts_path = out.with_name(f"{out.stem}_counts.json")
    write_json(counts_path, read_json(result.counts_path))
    _print_build(result.summary, result.skipped)
    console.print(f"wrote {out} and {counts_path} (build folder {folder})")


def _print_build(s: dict, skipped: bool) -> None:
    table = Table(title="tree build" + (" (up to date)" if skipped else ""), show_header=False)
    failed = s["items_failed"]
    table.add_row("items (with chains / refused / no readable chain)",
                  f"{s['items']} ({s['items_with_chains']} / {failed['refused']} / {failed['no_chain']})")
    table.add_row("chains / item", str(s["chains_per_item"]))
    table.add_row("answer lines dropped", ", ".join(f"{k} {v}" for k, v in s["lines_dropped"].items() if v) or "0")
    table.add_row("calls this run (answers reused)", f"{s['calls_this_run']} ({s['answers_cached']})")
    t = s["tree"]
    table.add_row("nodes / leaves / depth", f"{t['nodes']} / {t['leaves']} / {t['depth']}")
    table.add_row("names merged / folded by the cap / nodes dropped (min count)",
                  f"{s['merges']} / {s['folded']} / {s['dropped_nodes']}")
    table.add_row("top level (items)", escape(", ".join(f"{n['node']} ({n['items']})" for n in s["top_level"])))
    console.print(table, soft_wrap=True)
