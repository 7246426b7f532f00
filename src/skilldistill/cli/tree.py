"""``skilldistill tree validate|show|stats|list|export|from-labels``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..attribution.config import LabelsConfig
from ..tree import available_bundled_trees
from .app import app, console, on_duplicate_option, resolve_tree, user_errors
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
