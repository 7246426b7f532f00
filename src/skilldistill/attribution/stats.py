"""`skilldistill annotate stats`: per-node counts over an annotated table."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..tree import Chain, SkillTree, chain_str
from .items import SKILLS_FILE


def annotate_stats(skills: str | Path | pa.Table, tree: str | Path | SkillTree | None = None, *, max_depth: int | None = None) -> list[dict[str, Any]]:
    """Per-node counts over an annotated table (``skills.parquet``, its folder, or a Table).

    One row per node any chain passes through (every node of ``tree`` when given, zero
    counts included, in tree order): ``node`` (chain text), ``depth``, ``leaf``,
    ``items`` (items whose chains pass through it), ``chains`` (chains through it),
    ``share`` (items / all items).
    """
    rows = _skills_column(skills)
    items: collections.Counter[Chain] = collections.Counter()
    chains: collections.Counter[Chain] = collections.Counter()
    for item_chains in rows:
        seen: set[Chain] = set()
        for chain in item_chains or []:
            for d in range(1, len(chain) + 1):
                prefix = tuple(chain[:d])
                chains[prefix] += 1
                if prefix not in seen:
                    seen.add(prefix)
                    items[prefix] += 1
    n = len(rows)
    skill_tree = tree if isinstance(tree, SkillTree) or tree is None else SkillTree.resolve(tree)
    if skill_tree is not None:
        paths = [path for path, _ in skill_tree.nodes() if path]
        extra = sorted(path for path in items if path not in skill_tree)  # chains from another tree version
        paths += extra
    else:
        paths = sorted(items)
    out = []
    for path in paths:
        if max_depth is not None and len(path) > max_depth:
            continue
        leaf = skill_tree.node(path).is_leaf if (skill_tree is not None and path in skill_tree) else None
        out.append({"node": chain_str(path), "depth": len(path), "leaf": leaf, "items": items[path],
                    "chains": chains[path], "share": round(items[path] / n, 4) if n else 0.0})
    return out


def _skills_column(skills: str | Path | pa.Table) -> list[Any]:
    """The ``skills`` column of the table, of ``skills.parquet``, or of that file in a folder."""
    if isinstance(skills, pa.Table):
        table = skills
    else:
        path = Path(skills)
        if path.is_dir():
            path = path / SKILLS_FILE
        if not path.exists():
            raise InputError("annotated table not found", file=path)
        table = pq.read_table(path, columns=["skills"]) if "skills" in pq.read_schema(path).names else None
        if table is None:
            raise InputError("no 'skills' column: run `skilldistill annotate` first", file=path, field="skills")
    return table.column("skills").to_pylist()
