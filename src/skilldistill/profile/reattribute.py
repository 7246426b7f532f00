"""A finished profile seen through another attribution of the same pool: the student's grades
per item, unchanged, rolled up the tree by other chains.

Two attributions of one pool (an LLM's and the corpus's own labels, say) give two skill
profiles of one student without a second generation pass: every item keeps its samples and
correct answers from ``profile.parquet``; only the chains it counts under change. Items of
the profile that the other attribution does not list are counted (``items_not_attributed``)
and count under no chain; the output's ``profile.parquet`` carries the new chains, so a
selection reading it sees the items as that attribution places them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..artifacts import (
    hash_obj,
    locked_stage,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
)
from ..errors import InputError
from ..tree import SkillTree
from .accuracy import skill_stats
from .stage import PROFILE_PARQUET, PROFILE_SCHEMA, SKILL_PROFILE_JSON


def attributed_chains(skills_parquet: Path) -> dict[str, list[list[str]]]:
    """id -> chains of an attribution (``skills.parquet``)."""
    try:
        table = pq.read_table(skills_parquet, columns=["id", "skills"])
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise InputError(f"not an attribution with 'id' and 'skills' columns ({e})", file=skills_parquet) from None
    return dict(zip(table.column("id").to_pylist(), table.column("skills").to_pylist(), strict=True))


@locked_stage("profile")
def reattribute_profile(profile_dir: str | Path, skills_parquet: str | Path, out_dir: str | Path,
                        tree: SkillTree) -> dict[str, Any]:
    """Write ``out_dir``'s ``profile.parquet`` and ``skill_profile.json``: the grades of ``profile_dir``
    under the chains of ``skills_parquet``. Returns the counts (also in the manifest)."""
    started = time.time()
    profile_dir, skills_parquet, out = Path(profile_dir), Path(skills_parquet), Path(out_dir)
    source = read_json(profile_dir / SKILL_PROFILE_JSON)
    rows = pq.read_table(profile_dir / PROFILE_PARQUET).to_pylist()
    chains = attributed_chains(skills_parquet)
    for row in rows:
        row["skills"] = chains.get(row["id"]) or []
    nodes, overall, n_unknown = skill_stats(rows, tree, prior_strength=source["prior_strength"])
    counts = {**source["counts"], "items_without_skills": sum(1 for r in rows if not r["skills"]),
              "items_not_attributed": sum(1 for r in rows if r["id"] not in chains),
              "chains_not_in_tree": n_unknown, "nodes": len(nodes),
              "leaves": sum(n["is_leaf"] for n in nodes),
              "leaves_with_data": sum(1 for n in nodes if n["is_leaf"] and n["graded"] > 0)}
    write_parquet(out / PROFILE_PARQUET, pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA))
    write_json(out / SKILL_PROFILE_JSON, {**source, "tree_source": tree.source or "in-memory tree",
                                          "attribution": str(skills_parquet), "grades_from": str(profile_dir),
                                          "counts": counts, "overall": overall, "nodes": nodes})
    write_manifest(out, config={"grades_from": str(profile_dir)},
                   inputs={"profile": sha256_file(profile_dir / PROFILE_PARQUET), "skills": sha256_file(skills_parquet),
                           "tree": hash_obj(tree.to_dict())},
                   counts=counts, wall_time_s=round(time.time() - started, 3),
                   artifacts=[PROFILE_PARQUET, SKILL_PROFILE_JSON])
    return counts


__all__ = ["attributed_chains", "reattribute_profile"]
