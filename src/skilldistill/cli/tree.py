"""``skilldistill tree validate|show|stats``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..tree import available_bundled_trees
from .app import app, console, on_duplicate_option, resolve_tree, user_errors

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
