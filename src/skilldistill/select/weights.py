"""Leaf weights from the student's skill profile: the paper's clipped inverse accuracy.

``w = min((1/acc)**T, w_max**T)``, ``acc == 0`` -> ``w_max**T``. A leaf's accuracy is its own
profile value, else its nearest profiled ancestor's, else the global mean.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


def leaf_weights(accuracy: np.ndarray, temperature: float = 1.0, w_max: float = 1000.0) -> np.ndarray:
    """``min((1/acc)**T, w_max**T)``; ``acc == 0`` gives ``w_max**T``."""
    acc = np.clip(np.asarray(accuracy, dtype=np.float64), 0.0, 1.0)
    cap = float(w_max) ** temperature
    with np.errstate(divide="ignore"):
        w = np.where(acc > 0, np.power(1.0 / np.where(acc > 0, acc, 1.0), temperature), cap)
    return np.minimum(w, cap)


@dataclass
class LeafAccuracy:
    accuracy: np.ndarray  # float, one per leaf (never NaN)
    source: list[str]  # "leaf" | "ancestor" | "global" | "none"
    graded: np.ndarray  # graded items of the leaf's own profile node (0 if absent)
    in_profile: int  # leaves of the profile
    profile_leaves_without_items: int
    global_accuracy: float | None
    matched: np.ndarray  # bool per leaf: the leaf or one of its ancestors is a node of the profile


def leaf_accuracies(keys: Sequence[tuple[str, ...]], profile: dict, field_name: str = "smoothed", *, file: str | Path | None = None) -> LeafAccuracy:
    """Accuracy per leaf from a skill profile, with fallbacks for leaves without a value.

    A leaf whose own value is null (no graded item) takes the value of its nearest
    ancestor that has one, else the global mean (the root node's value, or the profile's
    top-level ``overall`` entry, else correct / graded summed over the profile's leaves). With no graded item anywhere, every leaf
    gets weight 1 (uniform over leaves). The profile is checked first (``check_profile``).
    """
    key = "smoothed_accuracy" if field_name == "smoothed" else "accuracy"
    by_path = check_profile(profile, file)
    global_acc = _global_accuracy(by_path, profile, key)
    acc = np.empty(len(keys), dtype=np.float64)
    sources: list[str] = []
    graded_arr = np.zeros(len(keys), dtype=np.int64)
    for j, chain in enumerate(keys):
        node = by_path.get(tuple(chain))
        graded_arr[j] = int(node.get("graded") or 0) if node else 0
        acc[j], src = _leaf_value(chain, by_path, key, global_acc)
        sources.append(src)
    key_set = {tuple(k) for k in keys}
    profile_leaves = [p for p, n in by_path.items() if p and n.get("is_leaf")]
    matched = np.array([any(tuple(k[:d]) in by_path for d in range(1, len(k) + 1)) for k in keys], dtype=bool)
    return LeafAccuracy(
        accuracy=acc, source=sources, graded=graded_arr, in_profile=len(profile_leaves),
        profile_leaves_without_items=sum(1 for p in profile_leaves if p not in key_set),
        global_accuracy=global_acc, matched=matched,
    )


def read_profile(path: str | Path) -> dict:
    """A skill profile read and checked (``check_profile``): a bad file is one ``InputError`` naming it."""
    p = Path(path)
    if not p.is_file():
        raise InputError("skill profile not found" if not p.exists() else "skill profile is not a file", file=p)
    try:
        profile = json.loads(p.read_text(encoding="utf-8"))
    except RecursionError:
        raise InputError("nested too deeply to parse (not a skill profile)", file=p) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start}: {e.reason})", file=p) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg}, column {e.colno})", file=p, row=e.lineno) from None
    check_profile(profile, p)
    return profile


def check_profile(profile: Any, file: str | Path | None = None) -> dict[tuple[str, ...], dict]:
    """The profile's nodes by path, each checked: a list of names given once, accuracies null or in
    [0, 1], ``graded`` and ``correct`` counts (``correct <= graded``); the ``overall`` entry too."""
    nodes = profile.get("nodes") if isinstance(profile, dict) else None
    if not isinstance(nodes, list):
        raise InputError("skill profile has no 'nodes' list", file=file, field="nodes")
    by_path: dict[tuple[str, ...], dict] = {}
    first: dict[tuple[str, ...], int] = {}
    for i, node in enumerate(nodes):
        path = node.get("path") if isinstance(node, dict) else None
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            raise InputError("node needs 'path': a list of names", file=file, field=f"nodes[{i}].path")
        if tuple(path) in first:
            raise InputError(f"path {'->'.join(path) or '(root)'} given twice (nodes[{first[tuple(path)]}] and "
                             f"nodes[{i}])", file=file, field=f"nodes[{i}].path")
        _check_numbers(node, f"nodes[{i}]", file)
        first[tuple(path)] = i
        by_path[tuple(path)] = node
    if isinstance(profile.get("overall"), dict):
        _check_numbers(profile["overall"], "overall", file)
    return by_path


def _check_numbers(node: dict, where: str, file: str | Path | None) -> None:
    """Accuracies: null, NaN (no value) or a number in [0, 1]; counts: null or an integer >= 0."""
    for key in ("accuracy", "smoothed_accuracy"):
        v = node.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise InputError(f"{key!r} must be a number in [0, 1] or null, got {v!r}", file=file, field=f"{where}.{key}")
    counts = {}
    for key in ("graded", "correct"):
        v = node.get(key)
        if v is None:
            continue
        whole = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        if isinstance(v, bool) or not whole or v < 0:
            raise InputError(f"{key!r} must be a count (an integer >= 0) or null, got {v!r}", file=file,
                             field=f"{where}.{key}")
        counts[key] = int(v)
    if counts.get("correct", 0) > counts.get("graded", math.inf):
        raise InputError(f"'correct' ({counts['correct']}) exceeds 'graded' ({counts['graded']})", file=file,
                         field=f"{where}.correct")


def _node_value(node: dict | None, key: str) -> float | None:
    if node is None:
        return None
    v = node.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _global_accuracy(by_path: dict[tuple[str, ...], dict], profile: dict, key: str) -> float | None:
    """The root node's value, else the profile's ``overall`` entry, else correct / graded over its leaves."""
    global_acc = _node_value(by_path.get(()), key)
    if global_acc is None and isinstance(profile.get("overall"), dict):
        global_acc = _node_value(profile["overall"], key)  # the root's numbers, as the profile stage writes them
    if global_acc is None:
        leaf_nodes = [n for p, n in by_path.items() if p and n.get("is_leaf")]
        graded = sum(int(n.get("graded") or 0) for n in leaf_nodes)
        correct = sum(int(n.get("correct") or 0) for n in leaf_nodes)
        global_acc = correct / graded if graded else None
    return global_acc


def _leaf_value(chain: Sequence[str], by_path: dict[tuple[str, ...], dict], key: str,
                global_acc: float | None) -> tuple[float, str]:
    """A leaf's accuracy and where it came from: the leaf, its nearest valued ancestor, the global mean, or none (1.0)."""
    v = _node_value(by_path.get(tuple(chain)), key)
    src = "leaf"
    if v is None:
        src = "ancestor"
        for cut in range(len(chain) - 1, 0, -1):
            v = _node_value(by_path.get(tuple(chain[:cut])), key)
            if v is not None:
                break
    if v is None:
        src, v = ("global", global_acc) if global_acc is not None else ("none", 1.0)
    return v, src


def profile_order(keys: Sequence[tuple[str, ...]], profile: dict) -> np.ndarray:
    """Leaves in the profile's node order (the tree's pre-order), unknown ones after, by name."""
    rank: dict[tuple[str, ...], int] = {}
    for i, node in enumerate(profile.get("nodes") or []):
        if isinstance(node, dict) and isinstance(node.get("path"), list):
            rank.setdefault(tuple(node["path"]), i)
    big = len(rank)
    return np.array(sorted(range(len(keys)), key=lambda j: (rank.get(tuple(keys[j]), big), keys[j])), dtype=np.int64)
