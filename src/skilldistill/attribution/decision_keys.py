"""The cache key of one (item, node) decision: what decides the answer, hashed."""

from __future__ import annotations

from ..artifacts import hash_obj
from ..tree import Chain, SkillNode, SkillTree


def decision_key(model_id: str, template_version: str, path: Chain, text_hash: str, children_sig: str = "") -> str:
    """Cache key of one (item, node) decision: hash of the model id, the template version,
    the node path (with the children it offers, so editing a node re-asks only that node)
    and the item text. No secrets go in."""
    return hash_obj({"model": model_id, "template": template_version, "node": list(path), "children": children_sig, "item": text_hash})


def children_signature(node: SkillNode) -> str:
    return hash_obj([[c.name, c.description] for c in node.children])[:16]


class DecisionKeys:
    """The decision keys of one decider (model id + version) over one tree:
    ``keys(path, text_hash)`` is ``decision_key`` with the per-node children signatures
    computed once, and each key remembered: the walk, the chains and the summary all look
    the same keys up."""

    def __init__(self, tree: SkillTree, model_id: str, version: str) -> None:
        self.tree, self.model_id, self.version = tree, model_id, version
        self._sig: dict[Chain, str] = {}
        self._memo: dict[tuple[Chain, str], str] = {}

    def __call__(self, path: Chain, text_hash: str) -> str:
        key = self._memo.get((path, text_hash))
        if key is None:
            sig = self._sig.get(path)
            if sig is None:
                sig = self._sig[path] = children_signature(self.tree.node(path))
            key = self._memo[(path, text_hash)] = decision_key(self.model_id, self.version, path, text_hash, sig)
        return key
