"""`skilldistill tree from-labels`: the skill tree a corpus's own labels live in, with counts.

    skilldistill tree from-labels runs/dm/corpus --label-field topic --separator ' -> ' \\
        --min-size 50 --out deepmath_tree.json          # + deepmath_tree_counts.json

Each item's label field (a column or a key of its ``meta``, one label or a list: read as the
``labels`` backend reads it, ``labels.py``) is split into parts; every distinct label path
becomes a chain of nodes. Parts equal but for case and spacing are one node, named as most
items spell it. The root: ``root`` when given (a label's leading part equal to it is dropped),
else the first part every label shares when there is one (DeepMath's "Mathematics"), else
``Skills``. Siblings are ordered by item count, most first.

A node's count is the number of items whose labels pass through it. A node with fewer than
``min_size`` items is merged into its parent with its whole subtree: those items count for the
parent (they already pass through it) and the ``labels`` backend stops their chains there. A
top-level node merged into the root leaves its items without a skill (``at_root``).

The tree format has no place for counts, so they go to a side file beside the tree,
``<tree stem>_counts.json``: per node ``items`` (through it) and ``ends_here`` (items whose label
stops there after merging), the merged nodes, and the rows with no label.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..errors import InputError, TreeError
from ..tree import Chain, SkillTree, chain_str
from .items import corpus_file
from .labels import TOP_VALUES, label_values, norm_name, read_label_column, shown, split_label

DEFAULT_ROOT = "Skills"


@dataclass
class LabelTree:
    """The tree built from the labels and its counts (the side file's content)."""

    tree: SkillTree
    counts: dict[str, Any]


@dataclass
class _Labels:
    """Per item its label paths (parts as written), and what could not be read."""

    paths: list[list[Chain]]
    missing: int
    malformed: collections.Counter[str]
    first_row: dict[str, int]  # a part, as written -> the first row carrying it (1-based)


def tree_from_labels(corpus: str | Path, label_field: str, *, separator: str = "->", min_size: int = 1,
                     root: str | None = None) -> LabelTree:
    """The tree of the label paths in ``corpus``'s ``label_field`` (see the module docstring)."""
    if min_size < 1:
        raise InputError(f"min_size must be at least 1, got {min_size}")
    if not separator.strip():
        raise InputError("the separator must hold a visible character (whitespace around parts is stripped)")
    path = corpus_file(corpus)
    labels = _read(read_label_column(path, label_field), separator)
    if not any(labels.paths):
        raise InputError(f"no row has a readable label in {label_field!r} ({labels.missing} without one)", file=path,
                         field=label_field)
    root_name = root.strip() if root and root.strip() else _common_root(labels.paths)
    paths = [[_below(p, root_name) for p in item] for item in labels.paths]
    items, names = _count(paths)
    # A child never has more items than its parent: the nodes kept are those with min_size items
    # (their ancestors all are); a smaller one goes with its subtree, into its parent.
    kept = {p for p, n in items.items() if n >= min_size}
    if not any(len(p) == 1 for p in kept):
        raise InputError(f"every top-level label has fewer than {min_size} items: nothing is left (lower --min-size; "
                         f"the largest has {max(items[p] for p in items if len(p) == 1)})", file=path, field=label_field)
    _check_names([root_name, *(names[p] for p in kept)], labels.first_row, path, label_field)
    tree = SkillTree.from_dict(nested_tree(root_name, kept, items, names), source=f"labels {label_field!r} of {path}",
                               on_duplicate="error")
    counts = _counts_file(tree, paths, items, kept, names, labels, min_size)
    counts.update({"corpus": str(path), "field": label_field, "separator": separator, "root": root_name})
    return LabelTree(tree, dict(sorted(counts.items(), key=lambda kv: _KEY_ORDER.get(kv[0], 99))))


_KEY_ORDER = {k: i for i, k in enumerate(("corpus", "field", "separator", "root", "min_size", "items", "items_labelled",
                                          "missing", "malformed", "at_root", "tree", "nodes", "merged"))}


def write_label_tree(result: LabelTree, out: str | Path) -> tuple[Path, Path]:
    """The tree to ``out`` (.json or .yaml) and its counts to ``<stem>_counts.json`` beside it."""
    out = Path(out)
    counts_path = out.with_name(f"{out.stem}_counts.json")
    result.tree.save(out)
    write_json(counts_path, result.counts)
    return out, counts_path


def _read(raw: list[Any], separator: str) -> _Labels:
    labels = _Labels([], 0, collections.Counter(), {})
    for row, value in enumerate(raw, start=1):
        values = label_values(value)
        if values is None:
            labels.missing += 1
            labels.paths.append([])
            continue
        item = []
        for v in values:
            parts = split_label(v, separator)
            if parts is None:
                labels.malformed[shown(v)] += 1
                continue
            item.append(parts)
            for part in parts:
                labels.first_row.setdefault(part, row)
        labels.paths.append(item)
    return labels


def _common_root(paths: list[list[Chain]]) -> str:
    """The first part every label shares, when there is one and some label goes below it."""
    firsts = collections.Counter(p[0] for item in paths for p in item)
    if len({norm_name(f) for f in firsts}) == 1 and any(len(p) > 1 for item in paths for p in item):
        return firsts.most_common(1)[0][0]
    return DEFAULT_ROOT


def _below(parts: Chain, root_name: str) -> Chain:
    return parts[1:] if norm_name(parts[0]) == norm_name(root_name) else parts


def _count(paths: list[list[Chain]]) -> tuple[dict[Chain, int], dict[Chain, str]]:
    """Per node (its path, names folded): the items passing through it, and its name as most
    labels spell it (the first seen among equals)."""
    items: dict[Chain, int] = collections.defaultdict(int)
    spelled: dict[Chain, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for item in paths:
        seen: set[Chain] = set()
        for parts in item:
            key: Chain = ()
            for part in parts:
                key += (norm_name(part),)
                spelled[key][part] += 1
                if key not in seen:
                    seen.add(key)
                    items[key] += 1
    return dict(items), {p: c.most_common(1)[0][0] for p, c in spelled.items()}


def _check_names(names: list[str], first_row: dict[str, int], path: Path, label_field: str) -> None:
    """A label part that cannot be a node name (a line break, ``->`` inside it, only invisible
    characters) is refused naming it and the first row carrying it."""
    for name in dict.fromkeys(names):
        try:
            SkillTree.from_dict({"name": "root", "children": [name]})
        except TreeError as e:
            reason = str(e).split(": ", 1)[-1]
            raise InputError(f"label part {name!r} cannot name a tree node: {reason}", file=path,
                             row=first_row.get(name), field=label_field) from None


def nested_tree(root_name: str, kept: set[Chain], items: dict[Chain, int], names: dict[Chain, str]) -> dict[str, Any]:
    """The kept nodes as the tree format's nested dicts, siblings by item count (most first)."""
    children: dict[Chain, list[Chain]] = collections.defaultdict(list)
    for p in kept:
        children[p[:-1]].append(p)
    out: dict[str, Any] = {"name": root_name}
    stack: list[tuple[Chain, dict[str, Any]]] = [((), out)]
    while stack:
        path, node = stack.pop()
        kids = sorted(children.get(path, []), key=lambda c: (-items[c], names[c]))
        if kids:
            node["children"] = []
        for c in kids:
            child = {"name": names[c]}
            node["children"].append(child)
            stack.append((c, child))
    return out


def _counts_file(tree: SkillTree, paths: list[list[Chain]], items: dict[Chain, int], kept: set[Chain],
                 names: dict[Chain, str], labels: _Labels, min_size: int) -> dict[str, Any]:
    """The side file: per node its items and the items whose label stops there, the merges."""
    def display(p: Chain) -> str:
        return chain_str(names[p[:k]] for k in range(1, len(p) + 1))

    ends: collections.Counter[Chain] = collections.Counter()
    at_root = 0
    for item in paths:
        stops = {_deepest_kept(parts, kept) for parts in item}
        ends.update(stops)
        at_root += bool(item) and stops == {()}
    nodes = []
    for p, node in tree.nodes():
        if p:
            k = tuple(norm_name(x) for x in p)
            nodes.append({"node": chain_str(p), "depth": len(p), "items": items[k], "ends_here": ends[k],
                          "leaf": node.is_leaf})
    # the top of each merged subtree (its parent kept), largest first
    merged = sorted((p for p in items if p not in kept and (len(p) == 1 or p[:-1] in kept)),
                    key=lambda p: (-items[p], display(p)))
    return {
        "min_size": min_size,
        "items": len(paths),
        "items_labelled": sum(1 for item in paths if item),
        "missing": labels.missing,
        "malformed": {"labels": sum(labels.malformed.values()),
                      "values": [[v, c] for v, c in labels.malformed.most_common(TOP_VALUES)]},
        "at_root": at_root,
        "tree": {"nodes": len(tree), "leaves": len(tree.leaves()), "depth": tree.depth},
        "nodes": nodes,
        "merged": [{"node": display(p), "items": items[p], "into": display(p[:-1])} for p in merged],
    }


def _deepest_kept(parts: Chain, kept: set[Chain]) -> Chain:
    key: Chain = ()
    for part in parts:
        nxt = key + (norm_name(part),)
        if nxt not in kept:
            break
        key = nxt
    return key
