"""Hierarchical skill trees: load, validate, walk, render.

    skilldistill tree validate skill_mix.json     # errors name the node path
    skilldistill tree show math --max-depth 1     # bundled trees: math, demo

A tree is nested nodes ``{"name": str, "description": str (optional), "children": [...]}``
(the format of the method paper's released trees). Hand-written YAML trees use the same
keys, and a child may be a bare string for a leaf without description.

A *chain* names the nodes from just below the root down to a leaf, e.g.
``("Algebra", "Solving linear equations")``; it is written ``Algebra->Solving linear
equations`` in skill plans. Every walk here is iterative, so trees with thousands of
leaves and depth well past 10 cost linear time and no recursion.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import TreeError
from .strict_load import DuplicateKeyError, strict_loader, unique_keys

log = logging.getLogger(__name__)

CHAIN_SEP = "->"
_ALLOWED_KEYS = {"name", "description", "children"}

Chain = tuple[str, ...]


@dataclass(eq=False)
class SkillNode:
    name: str
    description: str | None = None
    children: list[SkillNode] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass(frozen=True)
class TreeStats:
    nodes: int
    leaves: int
    inner: int
    depth: int
    top_level: int
    branching_min: int
    branching_mean: float
    branching_max: int
    leaves_per_depth: dict[int, int]
    described: int

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class SkillTree:
    """A validated skill tree with an index from path (tuple of names) to node."""

    def __init__(self, root: SkillNode, *, source: str | None = None) -> None:
        self.root = root
        self.source = source
        self.merged: list[str] = []  # paths of duplicate siblings merged while loading
        self._index: dict[Chain, SkillNode] = {}
        for path, node in self._walk():
            self._index[path] = node

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None, on_duplicate: OnDuplicate = "merge") -> SkillTree:
        """Build and validate a tree from nested dicts (as parsed from JSON or YAML).

        Two formats: ``{"name", "description"?, "children"?}`` (the paper's), or EvalTree's
        raw ``{"description", "subtrees"}`` (subtrees an index-keyed dict for an inner node;
        an integer item index, or a list of per-item capabilities, for a leaf, as the
        authors' converted tree has it; a node's name is its description).

        Siblings whose names are equal after case and whitespace folding (EvalTree has 13
        such groups, 2 of them differing only in case) are, by ``on_duplicate``:
        ``merge`` (the default, as the authors' dict-based code effectively does: one node,
        the children of all of them; each merge logged), ``rename`` (the later ones get
        " (2)", " (3)", ...), or ``error``.
        """
        if on_duplicate not in ("merge", "rename", "error"):
            raise TreeError(f"on_duplicate must be merge, rename or error, not {on_duplicate!r}", file=source)
        if isinstance(data, dict) and "subtrees" in data and "name" not in data:
            data = _from_raw(data, source)
        root = _parse_node(data, path=[], file=source)
        # Iterative build: (raw children, parent node, parent path)
        stack: list[tuple[Any, SkillNode, list[str]]] = [(data, root, [])]
        n_nodes = 1
        merges: list[str] = []
        while stack:
            raw, node, path = stack.pop()
            if len(path) > MAX_DEPTH:
                raise TreeError(f"deeper than {MAX_DEPTH} levels", path=path[:3] + ["..."], file=source)
            # A merged node's raw is the list of its duplicates' raws: their children, in file order.
            children: list[Any] = []
            for r in (raw if isinstance(raw, list) else [raw]):
                kids = r.get("children", []) if isinstance(r, dict) else []
                if kids is None:
                    kids = []
                if not isinstance(kids, list):
                    raise TreeError(f"'children' must be a list, got {type(kids).__name__}", path=path or None, file=source)
                children.extend(kids)
            seen: dict[str, tuple[SkillNode, list[Any]]] = {}
            for i, raw_child in enumerate(children):
                child = _parse_node(raw_child, path=path + [f"<child {i}>"], file=source)
                key = _norm(child.name)
                if key in seen:
                    first, raws = seen[key]
                    if on_duplicate == "error":
                        raise TreeError(f"duplicate sibling name {child.name!r} (also {first.name!r}); "
                                        "--on-duplicate merge or rename loads it", path=path or None, file=source)
                    if on_duplicate == "merge":
                        merges.append(" -> ".join([*path, first.name]))
                        if first.description is None and child.description:
                            first.description = child.description
                        raws.append(raw_child)
                        continue
                    k = 2
                    while _norm(f"{child.name} ({k})") in seen:
                        k += 1
                    child = SkillNode(name=f"{child.name} ({k})", description=child.description)
                    key = _norm(child.name)
                seen[key] = (child, [raw_child])
                node.children.append(child)
                n_nodes += 1
                if n_nodes > MAX_NODES:
                    raise TreeError(f"more than {MAX_NODES:,} nodes (YAML aliases that repeat a subtree can "
                                    "multiply a small file into billions)", file=source)
            for child, raws in seen.values():
                stack.append((raws, child, path + [child.name]))
        if not root.children:
            raise TreeError("the tree has no skills below its root: nothing to attribute", file=source)
        for m in merges:
            steps = m.split(" -> ")
            shown = " -> ".join(x if len(x) <= 70 else x[:67] + "..." for x in steps[-2:])
            log.warning("%s: merged duplicate sibling %s%s (its children joined the first one's)", source or "tree",
                        "... -> " if len(steps) > 2 else "", shown)
        tree = cls(root, source=source)
        tree.merged = merges
        return tree

    @classmethod
    def load(cls, path: str | Path, *, on_duplicate: OnDuplicate = "merge") -> SkillTree:
        """Load a tree from ``.json`` or ``.yaml``/``.yml`` (see :meth:`from_dict`)."""
        path = Path(path)
        if not path.exists():
            raise TreeError(f"no such file: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TreeError(f"not UTF-8 text (byte {e.start}: {e.reason})", file=path) from None
        try:
            if path.suffix.lower() in {".yaml", ".yml"}:
                data = yaml.load(text, Loader=strict_loader("a skill tree"))  # noqa: S506 - a SafeLoader without aliases
            else:
                data = json.loads(text, object_pairs_hook=unique_keys)
        except DuplicateKeyError as e:
            raise TreeError(str(e), file=path) from None
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise TreeError(f"cannot parse: {e}", file=path) from e
        except RecursionError:
            raise TreeError(f"nested too deeply to parse (a tree is at most {MAX_DEPTH} levels)", file=path) from None
        return cls.from_dict(data, source=str(path), on_duplicate=on_duplicate)

    @classmethod
    def bundled(cls, name: str = "math") -> SkillTree:
        """A tree shipped with the package: ``math`` (default) or ``demo``."""
        names = available_bundled_trees()
        if name not in names:
            raise TreeError(f"no bundled tree {name!r}; available: {', '.join(sorted(names))}")
        ref = resources.files("skilldistill") / "trees" / names[name]
        with resources.as_file(ref) as p:
            return cls.load(p)

    @classmethod
    def resolve(cls, spec: str | Path, *, on_duplicate: OnDuplicate = "merge") -> SkillTree:
        """Load ``spec`` as a file path, or as a bundled tree name (``bundled:math`` or ``math``)."""
        s = str(spec)
        if s.startswith("bundled:"):
            return cls.bundled(s.split(":", 1)[1])
        if Path(s).exists() or Path(s).suffix.lower() in {".json", ".yaml", ".yml"}:
            return cls.load(s, on_duplicate=on_duplicate)
        return cls.bundled(s)

    # -- export --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested dict in the released JSON format (description only where set)."""
        def shallow(n: SkillNode) -> dict[str, Any]:
            d: dict[str, Any] = {"name": n.name}
            if n.description:
                d["description"] = n.description
            if n.children:  # leaves carry no "children" key, as in the released trees
                d["children"] = []
            return d

        out = shallow(self.root)
        stack = [(self.root, out)]
        while stack:
            node, d = stack.pop()
            for child in node.children:
                cd = shallow(child)
                d["children"].append(cd)
                stack.append((child, cd))
        return out

    def save(self, path: str | Path) -> Path:
        from .artifacts import write_json, write_text

        path = Path(path)
        if path.suffix.lower() in {".yaml", ".yml"}:
            return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        return write_json(path, self.to_dict())

    # -- queries -------------------------------------------------------------------
    def _walk(self) -> Iterator[tuple[Chain, SkillNode]]:
        """Pre-order (parents before children, siblings in file order), iterative."""
        stack: list[tuple[Chain, SkillNode]] = [((), self.root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            for child in reversed(node.children):
                stack.append((path + (child.name,), child))

    def nodes(self) -> Iterator[tuple[Chain, SkillNode]]:
        """All (path, node) pairs in pre-order; the root has path ``()``."""
        return iter(self._index.items())

    def leaves(self) -> list[Chain]:
        """Every root-to-leaf chain (root excluded), in pre-order."""
        return [p for p, n in self._index.items() if n.is_leaf and p]

    def node(self, path: Sequence[str]) -> SkillNode:
        try:
            return self._index[tuple(path)]
        except KeyError:
            raise KeyError(f"no node at {chain_str(path) or 'the root'}") from None

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple | list) and tuple(path) in self._index

    def children(self, path: Sequence[str] = ()) -> list[SkillNode]:
        return self.node(path).children

    def is_leaf_chain(self, chain: Sequence[str]) -> bool:
        node = self._index.get(tuple(chain))
        return node is not None and node.is_leaf and bool(chain)

    def parse_chain(self, text: str, sep: str = CHAIN_SEP) -> Chain:
        """Turn ``A->b`` into ``("A", "b")``, checking that it exists in this tree."""
        chain = tuple(part.strip() for part in text.split(sep))
        if not all(chain):  # "A->", "->b", "A->->b": no node is named ""
            raise KeyError(f"{text!r} has an empty element: a chain names one node per step, e.g. 'A{sep}b'")
        if chain not in self._index:
            raise KeyError(f"{text!r} is not a path in this tree")
        return chain

    @property
    def depth(self) -> int:
        return max((len(p) for p in self._index), default=0)

    def __len__(self) -> int:
        return len(self._index)

    def stats(self) -> TreeStats:
        branching = [len(n.children) for n in self._index.values() if n.children]
        leaves_per_depth: dict[int, int] = {}
        for p, n in self._index.items():
            if n.is_leaf and p:
                leaves_per_depth[len(p)] = leaves_per_depth.get(len(p), 0) + 1
        n_leaves = sum(leaves_per_depth.values())
        return TreeStats(
            nodes=len(self._index),
            leaves=n_leaves,
            inner=len(branching),
            depth=self.depth,
            top_level=len(self.root.children),
            branching_min=min(branching, default=0),
            branching_mean=round(sum(branching) / len(branching), 2) if branching else 0.0,
            branching_max=max(branching, default=0),
            leaves_per_depth=dict(sorted(leaves_per_depth.items())),
            described=sum(1 for n in self._index.values() if n.description),
        )

    def render(self, *, max_depth: int | None = None, descriptions: bool = True, max_children: int | None = None):
        """A :class:`rich.tree.Tree` of this tree, optionally cut at ``max_depth``."""
        from rich.markup import escape
        from rich.tree import Tree as RichTree

        def label(n: SkillNode, bold: bool = False) -> str:
            name = f"[bold]{escape(n.name)}[/bold]" if bold or n.children else escape(n.name)
            if descriptions and n.description:
                return f"{name} [dim]- {escape(n.description)}[/dim]"
            return name

        top = RichTree(label(self.root, bold=True))
        stack = [(self.root, top, 0)]
        while stack:
            node, rnode, d = stack.pop()
            if max_depth is not None and d >= max_depth:
                if node.children:
                    rnode.add(f"[dim]... {len(node.children)} children[/dim]")
                continue
            kids = node.children if max_children is None else node.children[:max_children]
            pending = []
            for child in kids:
                pending.append((child, rnode.add(label(child)), d + 1))
            if max_children is not None and len(node.children) > max_children:
                rnode.add(f"[dim]... {len(node.children) - max_children} more[/dim]")
            stack.extend(reversed(pending))
        return top


def chain_str(chain: Sequence[str], sep: str = CHAIN_SEP) -> str:
    return sep.join(chain)


def available_bundled_trees() -> dict[str, str]:
    """Bundled tree name -> file name in ``skilldistill/trees``."""
    out = {}
    for entry in (resources.files("skilldistill") / "trees").iterdir():
        name = entry.name
        for ext in (".yaml", ".yml", ".json"):
            if name.endswith(ext):
                out[name[: -len(ext)]] = name
    return out


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


OnDuplicate = Literal["merge", "rename", "error"]


def _from_raw(data: dict, source: str | None) -> dict:
    """EvalTree's raw ``{"description", "subtrees"}`` form as ``{"name", "children"}``."""
    def convert(node: Any, path: list[str]) -> dict:
        if not isinstance(node, dict) or not isinstance(node.get("description"), str):
            raise TreeError("a raw node needs a 'description' string", path=path or None, file=source)
        return {"name": node["description"], "children": []}

    out = convert(data, [])
    stack: list[tuple[Any, dict, list[str]]] = [(data, out, [])]
    while stack:
        raw, node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise TreeError(f"deeper than {MAX_DEPTH} levels", path=path[:3] + ["..."], file=source)
        subs = raw.get("subtrees")
        if not isinstance(subs, dict):
            # An integer (one item's index) or a list (the per-item capabilities of a
            # leaf cluster): a leaf, as in the authors' converted evaltree_math_full.json.
            node.pop("children")
            continue
        subs = [subs[k] for k in sorted(subs, key=lambda k: (len(str(k)), str(k)))]
        for sub in subs:
            child = convert(sub, path)
            node["children"].append(child)
            stack.append((sub, child, path + [child["name"][:60]]))
        if not node["children"]:
            node.pop("children")
    return out


# Bounds that keep a hostile tree file from exhausting memory or time.
MAX_DEPTH = 64
MAX_NODES = 1_000_000


# Characters that reorder how text is shown (a chain, and the rest of a skill plan's line, would
# read differently from what it holds), and letters that show as nothing (fillers, blank braille).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_MARKUP = frozenset("*_`\"',.;")  # what the annotator's answer parsing strips from a name
_JOINERS = frozenset("\u200c\u200d")  # zero-width (non-)joiners shape letters in Persian, Indic scripts


def _invisible_name(name: str) -> str | None:
    """Why a node name would not read as what it is, or None."""
    if any(ch in _BIDI_CONTROLS for ch in name):
        return "holds a bidirectional control character (it reorders how the chain is shown)"
    hidden = [ch.isspace() or ch in _BLANK_LETTERS or unicodedata.category(ch) in ("Cf", "Cc") for ch in name]
    if all(hidden):  # zero-width only: its chain reads "A->", and an empty step would match it
        return "has no visible character"
    if all(h or ch in _MARKUP for h, ch in zip(hidden, name, strict=True)):
        return "is only quotes, markdown or punctuation (an annotator's answer strips them: it would read as empty)"
    odd = next((ch for ch in name if unicodedata.category(ch) == "Cf" and ch not in _JOINERS), None)
    if odd is not None:  # "Linear\u200b" looks exactly like its sibling "Linear"
        return f"holds an invisible character (U+{ord(odd):04X})"
    return None


def _parse_node(raw: Any, *, path: list[str], file: str | None) -> SkillNode:
    if isinstance(raw, str):
        name = raw
        description = None
    elif isinstance(raw, dict):
        unknown = set(raw) - _ALLOWED_KEYS
        if unknown:
            raise TreeError(f"unknown key(s) {sorted(unknown)}; allowed: name, description, children", path=path or None, file=file)
        if "name" not in raw:
            raise TreeError("node has no 'name'", path=path or None, file=file)
        name = raw["name"]
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            raise TreeError(f"'description' must be a string, got {type(description).__name__}", path=path or None, file=file)
    else:
        raise TreeError(f"a node must be a mapping or a string, got {type(raw).__name__}", path=path or None, file=file)
    if not isinstance(name, str):
        raise TreeError(f"node name must be a string, got {type(name).__name__} {name!r}", path=path or None, file=file)
    if not name.strip():
        raise TreeError("empty node name", path=path or None, file=file)
    if CHAIN_SEP in name:
        raise TreeError(f"node name {name!r} contains the chain separator {CHAIN_SEP!r}", path=path or None, file=file)
    if any(ch in name for ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") or any(ord(ch) < 32 and ch != "\t" for ch in name):
        # a skill plan writes one chain per line: a line break inside a name would split it
        raise TreeError(f"node name {name!r} contains a line break or control character", path=path or None, file=file)
    if (why := _invisible_name(name)) is not None:
        # ascii(): the message shows what the name holds, where a terminal shows nothing
        raise TreeError(f"node name {ascii(name)} {why}", path=path or None, file=file)
    return SkillNode(name=name.strip(), description=(description.strip() or None) if description else None)
