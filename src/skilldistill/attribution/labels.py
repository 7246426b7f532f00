"""The ``labels`` attribution backend: skill chains from a label the corpus already carries.

    skilldistill annotate run runs/dm/corpus --backend labels --label-field topic \\
        --label-separator ' -> ' --label-map topic_map.yaml --tree deepmath_tree.json --out runs/dm/annotate

DeepMath-103K tags each problem with a hierarchical topic ("Mathematics -> Algebra -> Linear
Algebra -> Matrices"), MATH with its subject ("Intermediate Algebra"). This backend reads
that field (a corpus column, else a key of the row's ``meta`` JSON), splits each label at
the separator (whitespace around the parts stripped), rewrites it through an optional label
map (a label value or label path prefix -> a tree chain) and follows it down the tree,
matching names as written or ignoring case and spacing. A leading part naming the tree's
root is dropped; a label whose lower parts the tree lacks stops at its deepest node that
exists (counted: ``cut_to_ancestor``), so a chain may end above the leaves. No model is asked.

Never silent: an item whose field is missing, null or blank, or one with a label naming no
node of the tree (even its first part), is ``skills_status: failed``; both are counted in
``summary.json`` (``labels``), the label values that name no node listed with their counts
and logged in one warning line, and the stage's ``max_failed_share`` applies as for any
backend. A label map that cannot be read, or that names a node the tree lacks, is refused
naming the file and the key.
"""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ..artifacts import hash_obj
from ..errors import InputError
from ..strict_load import strict_loader, unique_keys
from ..tree import CHAIN_SEP, Chain, SkillTree, chain_str
from .cache import FAILED, OK
from .config import LabelsConfig

log = logging.getLogger(__name__)

TOP_VALUES = 20  # label values listed in summary.json per kind (unmapped, cut)


def norm_name(name: str) -> str:
    """A name compared ignoring case and spacing (as the tree folds duplicate siblings)."""
    return " ".join(name.split()).casefold()


def shown(value: Any, limit: int = 80) -> str:
    """A label value as listed in the summary: its text, a non-text value as JSON, cut short."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- reading the field ------------------------------------------------------------------
def label_column(table: pa.Table, path: Path, label_field: str) -> list[Any]:
    """Per row, the raw value of ``label_field``: the column of that name, else that key of
    the row's ``meta`` JSON (None where a row lacks it or its meta is no JSON object). A field
    no row carries is an InputError naming the columns and meta keys there are."""
    if label_field in table.column_names:
        return table.column(label_field).to_pylist()
    if "meta" not in table.column_names:
        raise InputError(f"no column {label_field!r} and no meta column that could hold it (columns: "
                         f"{', '.join(table.column_names)})", file=path, field=label_field)
    values: list[Any] = []
    keys: collections.Counter[str] = collections.Counter()
    carried = False
    for text in table.column("meta").to_pylist():
        meta = _meta_object(text)
        if meta is None:
            values.append(None)
            continue
        carried = carried or label_field in meta
        if not carried and len(keys) < 1000:
            keys.update(meta.keys())
        values.append(meta.get(label_field))
    if not carried:
        seen = ", ".join(k for k, _ in keys.most_common(12)) or "none"
        raise InputError(f"no row carries {label_field!r}: not a column ({', '.join(table.column_names)}) nor a key "
                         f"of any row's meta (meta keys: {seen})", file=path, field=label_field)
    return values


def read_label_column(path: Path, label_field: str) -> list[Any]:
    """:func:`label_column` of a Parquet file, reading only the column that holds the field."""
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"cannot read as Parquet: {e}", file=path) from None
    columns = [label_field] if label_field in names else (["meta"] if "meta" in names else [])
    return label_column(pq.read_table(path, columns=columns), path, label_field)


def _meta_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        return None
    return meta if isinstance(meta, dict) else None


def label_values(raw: Any) -> list[Any] | None:
    """The labels in one row's field: one value or a list of them; None when there is none
    (missing, null, blank, an empty list or only blank entries). A value that is no text
    (nor a whole number) stays as it is: it names no node and is counted as such."""
    items = raw if isinstance(raw, list | tuple) else [raw]
    out = []
    for v in items:
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        out.append(v)
    return out or None


def split_label(value: Any, separator: str) -> Chain | None:
    """A label's parts, whitespace around each stripped; a list of texts is a label already split
    (``["Algebra", "Linear equations"]``, as a chain column holds it). None for a value that is no
    text or has an empty part (``A -> -> B``)."""
    if isinstance(value, list | tuple) and value and all(isinstance(p, str) for p in value):
        parts = tuple(p.strip() for p in value)
    elif isinstance(value, str):
        parts = tuple(p.strip() for p in value.split(separator))
    else:
        return None
    return parts if all(parts) else None


# -- the tree's names -------------------------------------------------------------------
class TreeNames:
    """Label parts followed down a tree: each part names a child, as written or ignoring case
    and spacing; a leading part naming the root is dropped."""

    def __init__(self, tree: SkillTree) -> None:
        self.tree = tree
        self.root = norm_name(tree.root.name)
        self._children: dict[Chain, dict[str, str]] = {}

    def child(self, path: Chain, part: str) -> str | None:
        kids = self._children.get(path)
        if kids is None:
            kids = self._children[path] = {norm_name(c.name): c.name for c in self.tree.children(path)}
        return kids.get(norm_name(part))

    def below_root(self, parts: Chain) -> Chain:
        """``parts`` without a leading root name (unless that part also names a top-level node)."""
        if len(parts) > 1 and norm_name(parts[0]) == self.root and self.child((), parts[0]) is None:
            return parts[1:]
        return parts

    def deepest(self, parts: Chain, max_depth: int | None = None) -> Chain:
        """The tree path of the longest prefix of ``parts`` (below the root) that names nodes
        (``()``: not even the first)."""
        path: Chain = ()
        for part in parts[:max_depth]:
            name = self.child(path, part)
            if name is None:
                break
            path += (name,)
        return path


# -- the label map ----------------------------------------------------------------------
@dataclass
class LabelMap:
    """Label value or label path prefix (its parts compared ignoring case and spacing) -> tree chain."""

    source: str | None = None
    entries: dict[Chain, Chain] = field(default_factory=dict)

    def apply(self, parts: Chain) -> Chain | None:
        """``parts`` with its longest mapped prefix replaced by that prefix's chain; None when
        no prefix is mapped."""
        for k in range(min(len(parts), self.longest), 0, -1):
            target = self.entries.get(tuple(norm_name(p) for p in parts[:k]))
            if target is not None:
                return target + parts[k:]
        return None

    @property
    def longest(self) -> int:
        return max((len(k) for k in self.entries), default=0)

    @property
    def digest(self) -> str:
        """What the map decides, hashed: in the stage's manifest inputs (an edit reruns)."""
        return hash_obj(sorted([list(k), list(v)] for k, v in self.entries.items()))


def load_label_map(path: str | Path | None, tree: SkillTree, separator: str) -> LabelMap:
    """Read and check a label map (YAML or JSON: ``label or label path prefix: tree chain``; a
    chain is written ``A->b`` or as a list of names, the root's name may lead it). An unreadable
    file, a key written twice, or a chain naming a node the tree lacks is an InputError naming
    the file and the key. ``path`` None: the empty map."""
    if path is None:
        return LabelMap()
    data = _read_map_file(Path(path))
    names = TreeNames(tree)
    entries: dict[Chain, Chain] = {}
    written: dict[Chain, str] = {}
    for key, value in data.items():
        key_text = str(key)
        parts = split_label(key_text, separator)
        if isinstance(key, bool) or not isinstance(key, str | int) or parts is None:
            raise InputError(f"key {key_text!r} is no label (a label value or a path like 'A{separator}B', no empty "
                             "part)", file=path, field=key_text)
        norm_key = tuple(norm_name(p) for p in parts)
        if norm_key in entries:
            raise InputError(f"keys {written[norm_key]!r} and {key_text!r} name the same label (case and spacing aside)",
                             file=path, field=key_text)
        entries[norm_key], written[norm_key] = _map_target(value, names, tree, path, key_text), key_text
    return LabelMap(str(path), entries)


def _read_map_file(path: Path) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("label map not found", file=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the label map: {e}", file=path) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=unique_keys)
        else:  # YAML (JSON is YAML too)
            data = yaml.load(text, Loader=strict_loader("a label map"))  # noqa: S506 - a SafeLoader refusing repeated keys
    except (ValueError, yaml.YAMLError) as e:
        raise InputError(f"cannot parse the label map: {e}", file=path) from None
    if not isinstance(data, dict) or not data:
        kind = "an empty file" if not data else type(data).__name__
        raise InputError(f"a label map is a mapping 'label: tree chain', got {kind}", file=path)
    return data


def _map_target(value: Any, names: TreeNames, tree: SkillTree, path: str | Path, key: str) -> Chain:
    """A map value as a tree path: every step must name a node (case and spacing aside)."""
    if isinstance(value, str):
        parts = tuple(p.strip() for p in value.split(CHAIN_SEP))
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        parts = tuple(p.strip() for p in value)
    else:
        raise InputError(f"key {key!r} maps to {shown(value)!r}: a tree chain is text ('A{CHAIN_SEP}b') or a list of "
                         "names", file=path, field=key)
    if not parts or not all(parts):
        raise InputError(f"key {key!r} maps to {shown(value)!r}, which has an empty step", file=path, field=key)
    wanted = names.below_root(parts)
    chain = names.deepest(wanted)
    if len(chain) < len(wanted):
        missing = chain_str(chain + (wanted[len(chain)],))
        top = ", ".join(c.name for c in tree.root.children[:10])
        raise InputError(f"key {key!r} maps to {shown(value)!r}, but the tree ({tree.source or tree.root.name}) has no "
                         f"node {missing!r}" + ("" if chain else f" (its top level: {top})"), file=path, field=key)
    return chain


# -- attribution ------------------------------------------------------------------------
class LabelReader:
    """The labels backend's identity in the summary (``model``, ``template``): no model decides."""

    def __init__(self, cfg: LabelsConfig, label_map: LabelMap) -> None:
        self.model_id = f"labels:{cfg.label_field}"
        self.version = f"labels|sep={cfg.label_separator!r}|map={label_map.digest[:12] if label_map.entries else '-'}"


@dataclass
class LabelResult:
    """Per item, its chains and status; and the summary's ``labels`` section."""

    skills: list[list[list[str]]]
    statuses: list[str]
    section: dict[str, Any]
    failed_reasons: list[list[Any]]


@dataclass
class _Tally:
    missing: int = 0
    unmapped_items: int = 0
    unmapped: collections.Counter[str] = field(default_factory=collections.Counter)
    cut: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)


def attribute_labels(table: pa.Table, path: Path, tree: SkillTree, cfg: LabelsConfig, label_map: LabelMap,
                     max_depth: int | None = None, warn: bool = True) -> LabelResult:
    """Every row's chains from its label field (see the module docstring); ``warn``: log the
    label values naming no node (the labels backend's warning line)."""
    assert cfg.label_field is not None
    raw = label_column(table, path, cfg.label_field)
    names = TreeNames(tree)
    memo: dict[Any, tuple[Chain, bool]] = {}  # label value -> (its tree path, cut short)
    tally = _Tally()
    skills: list[list[list[str]]] = []
    statuses: list[str] = []
    for value in raw:
        labels = label_values(value)
        if labels is None:
            tally.missing += 1
            skills.append([])
            statuses.append(FAILED)
            continue
        chains: dict[Chain, None] = {}
        bad = False
        for label in labels:
            key = label if isinstance(label, str) else shown(label)
            if key not in memo:
                memo[key] = _resolve(label, cfg.label_separator, label_map, names, max_depth)
            chain, cut = memo[key]
            if not chain:
                tally.unmapped[shown(label)] += 1
                bad = True
                continue
            if cut:
                tally.cut[(shown(label), chain_str(chain))] += 1
            chains[chain] = None
        tally.unmapped_items += bad
        skills.append([list(c) for c in chains])
        statuses.append(FAILED if bad else OK)
    return _result(tally, skills, statuses, cfg, label_map, tree, warn)


def _resolve(label: Any, separator: str, label_map: LabelMap, names: TreeNames,
             max_depth: int | None) -> tuple[Chain, bool]:
    """One label value's tree path, and whether the tree lacked some of its lower parts."""
    parts = split_label(label, separator)
    if parts is None:
        return (), False
    # a map key is matched on the label as written, else on it without a leading root name
    wanted = label_map.apply(parts) or label_map.apply(names.below_root(parts)) or names.below_root(parts)
    chain = names.deepest(wanted, max_depth)
    return chain, len(chain) < len(wanted[:max_depth])


def _result(tally: _Tally, skills: list[list[list[str]]], statuses: list[str], cfg: LabelsConfig,
            label_map: LabelMap, tree: SkillTree, warn: bool) -> LabelResult:
    n = len(statuses)
    depths = collections.Counter(len(c) for item in skills for c in item)
    leaves = tree.leaves()
    per_item = round(sum(len(c) for c in leaves) / len(leaves), 3) if leaves else 0.0
    section = {
        "field": cfg.label_field,
        "separator": cfg.label_separator,
        "map": label_map.source,
        "map_entries": len(label_map.entries),
        "items_labelled": statuses.count(OK),
        "missing": tally.missing,
        "unmapped": {"items": tally.unmapped_items, "labels": sum(tally.unmapped.values()),
                     "values": [[v, c] for v, c in tally.unmapped.most_common(TOP_VALUES)]},
        "cut_to_ancestor": {"labels": sum(tally.cut.values()),
                            "values": [[v, chain, c] for (v, chain), c in tally.cut.most_common(TOP_VALUES)]},
        "chains_per_depth": {str(d): c for d, c in sorted(depths.items())},
        "llm_calls": 0,
        # what a top-down LLM walk would have asked: one call per inner node on the way to a
        # leaf (the mean over the tree's leaves), one chain per item (as `skilldistill plan` estimates)
        "llm_calls_saved_per_item": per_item,
        "llm_calls_saved_estimate": round(per_item * n),
    }
    reasons = [[f"no label in field {cfg.label_field!r} (missing, null or blank)", tally.missing],
               [f"a label naming no node of the tree {tree.source or tree.root.name}", tally.unmapped_items]]
    if tally.unmapped and warn:
        listed = ", ".join(f"{v!r} ({c})" for v, c in tally.unmapped.most_common(8))
        more = len(tally.unmapped) - 8
        log.warning("annotate: %d of %d items carry a label in %r that names no node of the tree (skills_status "
                    "failed): %s%s; a --label-map maps them (summary.json: labels.unmapped)", tally.unmapped_items, n,
                    cfg.label_field, listed, f" and {more} more values" if more > 0 else "")
    return LabelResult(skills, statuses, section, [r for r in reasons if r[1]])


def failed_share_message(section: dict[str, Any], n_bad: int, n: int, max_failed_share: float) -> str:
    """The labels backend's line when too many items failed: the counts and the values."""
    values = ", ".join(f"{v!r} ({c})" for v, c in section["unmapped"]["values"][:5])
    return (f"{n_bad} of {n} items have no complete attribution ({section['missing']} with no label in field "
            f"{section['field']!r}, {section['unmapped']['items']} with a label naming no tree node"
            + (f": {values}" if values else "") + f"), over max_failed_share {max_failed_share:g}. Fix the field or "
            "the tree, map the labels with --label-map, or raise annotate.max_failed_share")
