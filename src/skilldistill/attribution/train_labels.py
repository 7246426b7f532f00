"""The distilled backend's training labels read from a file (``distilled.train_labels``) instead
of an LLM-labelled sample: a few hundred items labelled by hand, or offline by any model.

A labels file is JSONL (one object per line), Parquet or CSV with an ``id`` column and a
``skills`` (or ``chains``) column: a list of chains, each ``"A->b->c"`` (parts stripped) or a
list of names; a single chain text is one chain; in CSV a cell holds a JSON list or one chain.
A previous annotate's ``skills.parquet`` is one (its rows whose ``skills_status`` is not ``ok``
are skipped and counted). Rows with the same id add their chains up (CSV: one row per chain).
Chain names are matched to the tree as the labels backend matches labels (as written, or
ignoring case and spacing; a leading root name dropped); a chain may end above the leaves.

Refused, never guessed: ids that are not corpus ids (the count and examples of both sides),
a chain that is not in the tree (naming the row and the missing node), an empty id, a file
without the columns, a file with no usable row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..rows import iter_local_rows
from ..tree import CHAIN_SEP, Chain, SkillTree, chain_str
from .anchor import labelled_nodes
from .classifiers import Examples
from .labels import TreeNames, shown

CHAIN_COLUMNS = ("skills", "chains")
EXAMPLES_SHOWN = 5


def train_labels_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError("labels file not found (distilled.train_labels, --train-labels)", file=p)
    return p


@dataclass
class TrainLabels:
    """Per labelled corpus row, its chains; and the summary's ``distilled.labels`` section."""

    chains: dict[int, list[Chain]]  # corpus row -> its chains, in file order
    section: dict[str, Any]


def read_train_labels(path: str | Path, ids: Sequence[str], tree: SkillTree, max_depth: int | None = None) -> TrainLabels:
    """The labels file's chains per corpus row, checked (see the module docstring)."""
    file = train_labels_file(path)
    rows = _rows(file)
    status_skipped = sum(1 for r in rows if r[3] is not None and r[3] != "ok")
    rows = [r for r in rows if r[3] is None or r[3] == "ok"]
    _check_ids(file, rows, ids)
    row_of = {item_id: i for i, item_id in enumerate(ids)}
    names = TreeNames(tree)
    chains: dict[int, list[Chain]] = {}
    no_chain = 0
    for row, item_id, value, _ in rows:
        parsed = [_tree_chain(c, names, tree, file, row)[:max_depth] for c in _chain_values(value, file, row)]
        if not parsed:
            no_chain += 1
            continue
        have = chains.setdefault(row_of[item_id], [])
        have.extend(c for c in parsed if c not in have)
    if not chains:
        raise InputError("no labelled item: every row has no chain" + (f" or a skills_status other than ok "
                         f"({status_skipped})" if status_skipped else ""), file=file, field="skills")
    n_chains = sum(len(c) for c in chains.values())
    section = {"file": str(file), "rows": len(rows) + status_skipped, "items": len(chains), "chains": n_chains,
               "skipped": {"status_not_ok": status_skipped, "no_chain": no_chain}}
    return TrainLabels(chains, section)


def label_examples(tree: SkillTree, chains: dict[int, list[Chain]], train: Sequence[int],
                   max_depth: int | None = None) -> Examples:
    """Per inner node: (item, children chosen) of every training item whose chains go below it
    (an item whose chains all end at a node teaches nothing there)."""
    per_node: Examples = {}
    for i in train:
        for node, chosen in labelled_nodes(chains[i]).items():
            if tree.node(node).is_leaf or (max_depth is not None and len(node) >= max_depth):
                continue
            per_node.setdefault(node, []).append((i, chosen))
    return per_node


# -- reading the file --------------------------------------------------------------------
Row = tuple[int, str, Any, Any]  # (row number from 1, id, chains value, skills_status or None)


def _rows(file: Path) -> list[Row]:
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        records = _parquet_records(file)
    elif suffix == ".csv":
        records = _csv_records(file)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        records = _jsonl_records(file)
    else:
        raise InputError(f"a labels file is .jsonl, .parquet or .csv, got {file.suffix or 'no suffix'!r}", file=file)
    out: list[Row] = []
    column = None
    for n, rec in enumerate(records, start=1):
        if column is None:
            column = next((c for c in CHAIN_COLUMNS if c in rec), None)
            if "id" not in rec or column is None:
                raise InputError(f"a labels file needs 'id' and 'skills' (or 'chains'); row {n} has "
                                 f"{', '.join(map(str, rec)) or 'nothing'}", file=file, row=n)
        item_id = rec.get("id")
        if item_id is None or str(item_id).strip() == "":
            raise InputError("empty id", file=file, row=n, field="id")
        out.append((n, str(item_id), rec.get(column), rec.get("skills_status")))
    if not out:
        raise InputError("the labels file has no row", file=file)
    return out


def _parquet_records(file: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(file).names
        cols = [c for c in ("id", *CHAIN_COLUMNS, "skills_status") if c in names]
        return pq.read_table(file, columns=cols).to_pylist() if cols else [{}]
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"cannot read as Parquet: {e}", file=file) from None


def _csv_records(file: Path) -> list[dict[str, Any]]:
    try:
        with file.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read as CSV: {e}", file=file) from None


def _jsonl_records(file: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines (or JSON) file, read as corpora are (:func:`skilldistill.rows.iter_local_rows`:
    a byte-order mark and UTF-16/32 with one are read too)."""
    out = []
    for row in iter_local_rows(file):
        if row.data is None:
            raise InputError(f"not JSON objects, one a line: {row.error}", file=file, row=row.line)
        out.append(row.data)
    return out


def _chain_values(value: Any, file: Path, row: int) -> list[Any]:
    """A row's chains: a list of chains, one chain text, or (CSV) a JSON list in text."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"skills {shown(text)!r} is not a JSON list: {e}", file=file, row=row,
                                 field="skills") from None
        else:
            return [text] if text else []
    if not isinstance(value, list | tuple):
        raise InputError(f"skills is a list of chains, got {shown(value)!r}", file=file, row=row, field="skills")
    return list(value)


def _tree_chain(value: Any, names: TreeNames, tree: SkillTree, file: Path, row: int) -> Chain:
    if isinstance(value, str):
        parts = tuple(p.strip() for p in value.split(CHAIN_SEP))
    elif isinstance(value, list | tuple) and all(isinstance(p, str) for p in value):
        parts = tuple(p.strip() for p in value)
    else:
        raise InputError(f"a chain is text ('A{CHAIN_SEP}b') or a list of names, got {shown(value)!r}", file=file,
                         row=row, field="skills")
    if not parts or not all(parts):
        raise InputError(f"chain {shown(value)!r} has an empty step", file=file, row=row, field="skills")
    wanted = names.below_root(parts)
    chain = names.deepest(wanted)
    if len(chain) < len(wanted):
        missing = chain_str(chain + (wanted[len(chain)],))
        top = "" if chain else f" (its top level: {', '.join(c.name for c in tree.root.children[:10])})"
        raise InputError(f"chain {shown(value)!r} is not in the tree {tree.source or tree.root.name}: no node "
                         f"{missing!r}{top}", file=file, row=row, field="skills")
    return chain


def _check_ids(file: Path, rows: list[Row], ids: Sequence[str]) -> None:
    known = set(ids)
    unknown = list(dict.fromkeys(item_id for _, item_id, _, _ in rows if item_id not in known))
    if not unknown:
        return
    first_row = next(r for r, item_id, _, _ in rows if item_id == unknown[0])
    labelled = len({item_id for _, item_id, _, _ in rows})
    raise InputError(
        f"{len(unknown)} of the {labelled} ids in the labels file are not ids of the corpus, e.g. "
        f"{', '.join(repr(x) for x in unknown[:EXAMPLES_SHOWN])}; the corpus's ids are like "
        f"{', '.join(repr(x) for x in list(ids)[:EXAMPLES_SHOWN])} ({len(ids)} items). Label the corpus being "
        "annotated (a labels file from another corpus, or ids changed by ingest, do not match)",
        file=file, row=first_row, field="id")
