"""Anchored walks: the top decisions of an item's walk taken from a label the corpus carries.

    skilldistill annotate runs/math/corpus --backend openai --model ... --anchor-field type \\
        --anchor-map subjects.yaml --tree skill_mix.json --out runs/math/annotate

MATH carries its subject, DeepMath a hierarchical topic: the walk need not ask the root (or
the levels the label names) what the label already says. The anchor field is read, split and
mapped exactly as the labels backend reads its field (``labels.attribute_labels``). Every node
on the way to an item's resolved label chain(s) is decided by the label (a record with
``source: anchor``, ``calls: 0``, kept in memory, never in ``calls.jsonl``), and the backend's
walk starts at the deepest labelled node(s): the root decision, and its call and its errors,
are saved. With several labels an item is anchored on all of them; a label that is a prefix of
another is covered by the deeper one.

Keys: a labelled node's record is filed under a key of the item's anchor (its chains), the
node and the item text (``AnchoredKeys``), so it never meets a decider's cached answer; below
the anchor the decider's own keys are used: the question asked there (the item, the node, its
children) is the one an unanchored walk asks, so its cached answers are shared correctly.

Never silent: an item whose field is missing, null or blank, or with a label naming no node
of the tree, is walked from the root as usual and counted ``unanchored`` (the values naming
no node listed with their counts and logged); with ``anchor.required`` it is not walked but
marked ``skills_status: failed`` instead, and ``max_failed_share`` applies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..artifacts import hash_obj
from ..tree import Chain, SkillTree, chain_str
from .cache import OK, Decisions
from .config import AnchorConfig
from .decision_keys import DecisionKeys
from .labels import LabelMap, attribute_labels

log = logging.getLogger(__name__)

ANCHOR_SOURCE = "anchor"  # ``source`` of a decision the anchor label made


def anchor_key(group: str, path: Chain, text_hash: str) -> str:
    """Key of a labelled node's decision: the item's anchor chains (``group``), the node, the text."""
    return hash_obj({"anchor": group, "node": list(path), "item": text_hash})


class AnchoredKeys(DecisionKeys):
    """The decision keys of an anchored item: at a labelled node the anchor's key, below it
    ``base``'s (the decider's own)."""

    def __init__(self, base: DecisionKeys, labelled: frozenset[Chain], group: str) -> None:
        super().__init__(base.tree, base.model_id, base.version)
        self.base, self.labelled, self.group = base, labelled, group
        self._anchor_memo: dict[tuple[Chain, str], str] = {}

    def __call__(self, path: Chain, text_hash: str) -> str:
        if path not in self.labelled:
            return self.base(path, text_hash)
        key = self._anchor_memo.get((path, text_hash))
        if key is None:
            key = self._anchor_memo[(path, text_hash)] = anchor_key(self.group, path, text_hash)
        return key


def labelled_nodes(chains: Sequence[Chain]) -> dict[Chain, list[str]]:
    """Node -> the children the label chains choose there: every proper prefix of a chain."""
    nodes: dict[Chain, list[str]] = {}
    for chain in chains:
        for d in range(len(chain)):
            chosen = nodes.setdefault(chain[:d], [])
            if chain[d] not in chosen:
                chosen.append(chain[d])
    return nodes


@dataclass
class Anchoring:
    """Per item, its anchor chains and where its walk starts; the labelled decisions; the summary's
    ``anchor`` section."""

    chains: list[list[Chain]]  # per item: its resolved label chains ([]: unanchored)
    groups: list[str]  # per item: the identity of its anchor chains ('' unanchored)
    records: Decisions  # anchor key -> the labelled decision
    section: dict[str, Any]
    required: bool
    _keys: dict[tuple[int, str], DecisionKeys] = field(default_factory=dict)

    def anchored(self, i: int) -> bool:
        return bool(self.chains[i])

    def failed(self, i: int) -> bool:
        """Unanchored while the anchor is required: not walked, marked failed."""
        return self.required and not self.chains[i]

    def starts(self, items: Sequence[int]) -> list[list[Chain]]:
        """Per item, the nodes its walk starts at: its deepest labelled chains (not a prefix of
        another), the root when unanchored, none when it must be anchored and is not."""
        out = []
        for i in items:
            chains = self.chains[i]
            if not chains:
                out.append([] if self.required else [()])
                continue
            out.append([c for c in chains if not any(len(o) > len(c) and o[:len(c)] == c for o in chains)])
        return out

    def keys(self, base: DecisionKeys, i: int) -> DecisionKeys:
        """Item ``i``'s keys over ``base``: ``base`` itself when unanchored."""
        if not self.chains[i]:
            return base
        k = self._keys.get((id(base), self.groups[i]))
        if k is None:
            k = self._keys[(id(base), self.groups[i])] = AnchoredKeys(
                base, frozenset(labelled_nodes(self.chains[i])), self.groups[i])
        return k


def anchor_items(table: pa.Table, path: Path, tree: SkillTree, cfg: AnchorConfig, label_map: LabelMap,
                 ids: Sequence[str], text_hashes: Sequence[str], max_depth: int | None = None) -> Anchoring:
    """Every row's anchor from its label field, and the decisions it makes (see the module docstring)."""
    labels = attribute_labels(table, path, tree, cfg, label_map, max_depth, warn=False)
    chains: list[list[Chain]] = []
    groups: list[str] = []
    records: Decisions = {}
    for item_id, h, skills, status in zip(ids, text_hashes, labels.skills, labels.statuses, strict=True):
        item_chains = [tuple(c) for c in skills] if status == OK else []
        group = hash_obj(sorted(map(list, item_chains)))[:16] if item_chains else ""
        chains.append(item_chains)
        groups.append(group)
        for node, chosen in labelled_nodes(item_chains).items():
            records[anchor_key(group, node, h)] = {"status": OK, "chosen": chosen, "unmatched": [], "calls": 0,
                                                   "source": ANCHOR_SOURCE, "node": chain_str(node), "item": item_id}
    section = _section(labels.section, chains, cfg)
    if section["unanchored"]["items"]:
        _log_unanchored(section, len(ids))
    return Anchoring(chains, groups, records, section, cfg.required)


def _section(lab: dict[str, Any], chains: list[list[Chain]], cfg: AnchorConfig) -> dict[str, Any]:
    decided = sum(len(labelled_nodes(c)) for c in chains)
    anchored = sum(1 for c in chains if c)
    depths: dict[str, int] = {}
    for item in chains:
        for c in item:
            depths[str(len(c))] = depths.get(str(len(c)), 0) + 1
    return {
        "field": cfg.label_field, "separator": cfg.label_separator, "map": lab["map"], "map_entries": lab["map_entries"],
        "required": cfg.required,
        "items_anchored": anchored,
        "unanchored": {"items": len(chains) - anchored, "missing": lab["missing"],
                       "unmapped": lab["unmapped"]["items"], "values": lab["unmapped"]["values"]},
        "walked_from_root": 0 if cfg.required else len(chains) - anchored,
        "cut_to_ancestor": lab["cut_to_ancestor"],
        "chains_per_depth": dict(sorted(depths.items())),
        # every labelled node is a decision the backend did not make: for a chat model, its call
        "decisions_from_labels": decided,
        "calls_saved": decided,
    }


def _log_unanchored(section: dict[str, Any], n: int) -> None:
    un = section["unanchored"]
    values = ", ".join(f"{v!r} ({c})" for v, c in un["values"][:8])
    log.warning("annotate: %d of %d items have no anchor in %r (%d without a label, %d with a label naming no tree "
                "node%s): %s (summary.json: anchor.unanchored)", un["items"], n, section["field"], un["missing"],
                un["unmapped"], f": {values}" if values else "",
                "marked failed (anchor.required)" if section["required"] else "walked from the root")


def anchor_failed_message(section: dict[str, Any], n_bad: int, n: int, max_failed_share: float) -> str:
    """The stage's line when too many items failed with ``anchor.required``."""
    un = section["unanchored"]
    values = ", ".join(f"{v!r} ({c})" for v, c in un["values"][:5])
    return (f"{n_bad} of {n} items have no complete attribution ({un['items']} with no anchor in field "
            f"{section['field']!r}: {un['missing']} without a label, {un['unmapped']} with a label naming no tree node"
            + (f": {values}" if values else "") + f"), over max_failed_share {max_failed_share:g}. Fix the field, map "
            "the labels with --anchor-map, drop --anchor-required (unanchored items are then walked from the root) "
            "or raise annotate.max_failed_share")
