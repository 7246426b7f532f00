"""The pool to profile: the annotated corpus read and checked, and the tree of its chains
when no tree file is given."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..errors import InputError
from ..grading import normalize_gold
from ..tree import Chain, SkillTree


def load_pool(path: str | Path, answer_field: str = "answer") -> list[dict[str, Any]]:
    """Rows of an annotated corpus (id, question, answer, skills), validated."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", file=path)
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise InputError(f"cannot read Parquet: {e}", file=path) from e
    for col in ("id", "question", answer_field, "skills"):
        if col not in table.column_names:
            raise InputError(f"missing column (has: {', '.join(table.column_names)})", file=path, field=col)
    cols = ["id", "question", answer_field, "skills"]
    rows = table.select(cols).to_pylist()
    out = []
    seen: dict[str, int] = {}
    for row_no, r in enumerate(rows, start=1):
        # checked here, with the file's own row numbers (generation checks again, on the
        # items left after those without gold, where the numbers no longer match the file)
        if r["id"] is None or str(r["id"]) == "":
            raise InputError("empty id", file=path, row=row_no, field="id")
        if str(r["id"]) in seen:
            raise InputError(f"duplicate id {str(r['id'])!r} (also row {seen[str(r['id'])]})", file=path, row=row_no,
                             field="id")
        seen[str(r["id"])] = row_no
        if not isinstance(r["question"], str) or not r["question"].strip():
            raise InputError("empty or non-text question", file=path, row=row_no, field="question")
        skills = r["skills"] or []
        if not isinstance(skills, list) or not all(
            isinstance(c, list) and c and all(isinstance(n, str) and n for n in c) for c in skills
        ):
            raise InputError("skills must be a list of chains (lists of node names)", file=path, row=row_no, field="skills")
        answer = r[answer_field]
        if isinstance(answer, float) and math.isnan(answer):
            answer = None
        out.append(
            {"id": str(r["id"]), "question": r["question"], "answer": answer, "skills": [list(c) for c in skills], "_row": row_no}
        )
    return out


def has_gold(answer: Any) -> bool:
    """The item has a gold answer the grader can use (a list: any part); blank text, NaN and
    inf are none, exactly as :func:`~skilldistill.grading.grade` sees them."""
    return normalize_gold(answer) is not None


def tree_from_chains(chains: Sequence[Sequence[str]], *, source: str) -> SkillTree:
    """A tree holding exactly the given chains (when no tree file is given)."""
    root: dict[str, Any] = {"name": "root", "children": []}
    index: dict[Chain, dict[str, Any]] = {(): root}
    for chain in chains:
        for depth in range(1, len(chain) + 1):
            path = tuple(chain[:depth])
            if path not in index:
                node = {"name": path[-1], "children": []}
                index[path[:-1]]["children"].append(node)
                index[path] = node
    return SkillTree.from_dict(root, source=source)
