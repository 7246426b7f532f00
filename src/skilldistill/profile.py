"""Stage 2: profile the student per skill (what it gets right, node by node).

    skilldistill profile runs/x/annotate/skills.parquet -o runs/x/profile \\
        --model Qwen/Qwen3-4B --backend vllm --max-new-tokens 8192 --tree skill_mix.json

    from skilldistill.profile import ProfileConfig, run_profile
    result = run_profile("skills.parquet", "runs/x/profile", ProfileConfig(generation=...), tree=tree)

The student answers every pool problem (``n`` samples each, see :mod:`skilldistill.generate`),
each answer is graded against the gold answer (:mod:`skilldistill.grading`), and the
counts are rolled up the skill tree: a node's counts cover every item whose chains pass
through it (an item counts once per node, however many of its chains pass there).

Raw per-skill accuracy is noisy for skills with a handful of problems, so each node also
gets a smoothed accuracy: the mean of a Beta posterior whose prior has mean equal to
the parent's smoothed accuracy and strength ``prior_strength`` pseudo-samples
(Beta-binomial shrinkage toward the parent; the root's prior is Beta(k/2, k/2)). The 95%
interval is the 2.5% and 97.5% quantiles of that posterior.

Artifacts (in ``out_dir``): ``generations.jsonl`` / ``generations.parquet`` (samples),
``grades.parquet`` (per sample), ``profile.parquet`` (per item), ``skill_profile.json``
(per node), ``skill_profile.png`` (per-leaf plot), ``sample.json`` (with ``sample``),
``manifest.json``. See docs/profile.md.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from .artifacts import (
    hash_obj,
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
)
from .errors import InputError
from .generate import GENERATIONS_PARQUET, GenerationConfig, run_generation
from .grading import DEFAULT_TIMEOUT_S, grade_many
from .llm.base import ChatBackend
from .tree import CHAIN_SEP, SkillTree, chain_str

logger = logging.getLogger(__name__)

PROFILE_PARQUET = "profile.parquet"
GRADES_PARQUET = "grades.parquet"
SKILL_PROFILE_JSON = "skill_profile.json"
SKILL_PROFILE_PNG = "skill_profile.png"
SAMPLE_JSON = "sample.json"
NO_SKILL = "(no skill)"

Chain = tuple[str, ...]


class ProfileConfig(BaseModel):
    """Settings of the profiling stage."""

    model_config = ConfigDict(extra="forbid")

    generation: GenerationConfig
    prior_strength: float = Field(4.0, ge=0, description="Beta prior pseudo-samples pulling a node toward its parent.")
    solved_threshold: float = Field(0.5, ge=0, le=1, description="An item is solved when its accuracy >= this.")
    sample: int | None = Field(None, ge=1, description="Profile a stratified sample of this many items (by leaf).")
    sample_seed: int = 0
    exclude_selections: list[str] = Field(
        default_factory=list, description="Selections (selection.parquet or its folder) whose items are left out: "
        "a closed-loop round profiles the trained student on items it was not trained on.")
    answer_field: str = Field("answer", description="Column holding the gold answer.")
    grading_processes: int | None = Field(None, description="Grading worker processes (default: all cores).")
    grading_timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="Hard limit per graded answer.")
    plot: bool = True


@dataclass
class ProfileResult:
    out_dir: Path
    counts: dict[str, Any]
    overall_accuracy: float | None
    per_leaf_sampled: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # True when a matching finished run was found

    @property
    def skill_profile(self) -> dict[str, Any]:
        return read_json(self.out_dir / SKILL_PROFILE_JSON)


# --------------------------------------------------------------------------------------
# Beta posterior: quantiles without scipy
# --------------------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    # Converges in O(sqrt(max(a, b))) steps on the side of x chosen by betainc.
    for m in range(1, 20000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), the CDF of Beta(a, b) at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of Beta(a, b) by bisection on the CDF (monotone, so this cannot miss)."""
    lo, hi = 0.0, 1.0
    for _ in range(64):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def beta_posterior(correct: int, graded: int, prior_mean: float, prior_strength: float) -> tuple[float, float, float]:
    """(posterior mean, 2.5% quantile, 97.5% quantile) of Beta(k*m + c, k*(1-m) + g - c)."""
    eps = 1e-6  # keep the prior proper when the parent sits at exactly 0 or 1
    m = min(max(prior_mean, eps), 1 - eps)
    k = max(prior_strength, 0.0)
    a = k * m + correct
    b = k * (1 - m) + (graded - correct)
    if a <= 0 or b <= 0:
        # No prior and all-or-nothing data: the posterior is a point mass.
        point = correct / graded if graded else m
        return point, point, point
    return a / (a + b), beta_ppf(0.025, a, b), beta_ppf(0.975, a, b)


# --------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------
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


def _has_gold(answer: Any) -> bool:
    if answer is None:
        return False
    if isinstance(answer, list | tuple):
        return any(str(a).strip() for a in answer)
    return bool(str(answer).strip())


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


# --------------------------------------------------------------------------------------
# Stratified sample
# --------------------------------------------------------------------------------------
def stratified_sample(items: Sequence[dict[str, Any]], n: int, *, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pick ``n`` items so every leaf keeps roughly its share of the pool.

    Each leaf (and a "(no skill)" stratum) gets a quota proportional to its size (largest
    remainders; at least one per leaf while ``n`` allows), filled with a seeded shuffle;
    items under several leaves are taken once, and any shortfall is filled at random.
    Returns the sample (in pool order) and the number of sampled items per leaf.
    """
    if n >= len(items):
        chosen = list(items)
    else:
        rng = random.Random(seed)
        strata: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            leaves = {chain_str(c) for c in it["skills"]} or {NO_SKILL}
            for leaf in leaves:
                strata[leaf].append(i)
        names = sorted(strata)
        total = sum(len(strata[s]) for s in names)
        raw = {s: n * len(strata[s]) / total for s in names}
        quota = {s: int(raw[s]) for s in names}
        if n >= len(names):
            for s in names:
                quota[s] = max(quota[s], 1)
        left = n - sum(quota.values())
        while left < 0:  # the ones raised to 1 pushed the total past n: take back from the biggest
            s = max(names, key=lambda s: (quota[s], len(strata[s]), s))
            quota[s] -= 1
            left += 1
        for s in sorted(names, key=lambda s: (-(raw[s] - int(raw[s])), s)):
            if left <= 0:
                break
            quota[s] += 1
            left -= 1
        picked: set[int] = set()
        for s in names:
            pool = strata[s][:]
            rng.shuffle(pool)
            need = quota[s] - sum(1 for i in strata[s] if i in picked)
            for i in pool:
                if need <= 0 or len(picked) >= n:
                    break
                if i not in picked:
                    picked.add(i)
                    need -= 1
        rest = [i for i in range(len(items)) if i not in picked]
        rng.shuffle(rest)
        for i in rest[: max(0, n - len(picked))]:
            picked.add(i)
        chosen = [items[i] for i in sorted(picked)]
    per_leaf: dict[str, int] = defaultdict(int)
    for it in chosen:
        for leaf in {chain_str(c) for c in it["skills"]} or {NO_SKILL}:
            per_leaf[leaf] += 1
    return chosen, dict(sorted(per_leaf.items()))


# --------------------------------------------------------------------------------------
# Per-node statistics
# --------------------------------------------------------------------------------------
def skill_stats(
    item_rows: Sequence[dict[str, Any]],
    tree: SkillTree,
    *,
    prior_strength: float,
) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Per-node counts, raw and smoothed accuracy, 95% intervals, in tree pre-order.

    ``item_rows``: dicts with ``skills``, ``n_samples``, ``n_correct``. Returns (nodes,
    overall, number of item chains not found in the tree).
    """
    graded: dict[Chain, int] = defaultdict(int)
    correct: dict[Chain, int] = defaultdict(int)
    unknown = 0
    for r in item_rows:
        paths: set[Chain] = {()}
        for c in r["skills"]:
            chain = tuple(c)
            if chain not in tree:
                unknown += 1
                continue
            paths.update(chain[:d] for d in range(1, len(chain) + 1))
        for p in paths:
            graded[p] += r["n_samples"]
            correct[p] += r["n_correct"]

    smoothed: dict[Chain, float] = {}
    nodes: list[dict[str, Any]] = []
    overall: dict[str, Any] = {}
    for path, node in tree.nodes():  # pre-order: a parent is smoothed before its children
        g, c = graded.get(path, 0), correct.get(path, 0)
        prior_mean = smoothed[path[:-1]] if path else 0.5
        mean, lo, hi = beta_posterior(c, g, prior_mean, prior_strength)
        smoothed[path] = mean
        entry = {
            "path": list(path),
            "chain": chain_str(path),
            "depth": len(path),
            "is_leaf": node.is_leaf,
            "graded": g,
            "correct": c,
            "accuracy": (c / g) if g else None,
            "smoothed_accuracy": mean,
            "ci_low": lo,
            "ci_high": hi,
        }
        if path:
            nodes.append(entry)
        else:
            overall = {k: entry[k] for k in ("graded", "correct", "accuracy", "smoothed_accuracy", "ci_low", "ci_high")}
    return nodes, overall, unknown


# --------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------
def plot_skill_profile(nodes: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Per-leaf accuracy (smoothed, with 95% interval; raw as a hollow marker), grouped
    by top-level skill. Leaves with no graded sample are left out. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts import atomic_path

    leaves = [n for n in nodes if n["is_leaf"] and n["graded"] > 0]
    if not leaves:
        return None
    groups: dict[str, list[dict[str, Any]]] = {}
    for n in leaves:
        groups.setdefault(n["path"][0], []).append(n)
    n_leaves = len(leaves)
    label_leaves = n_leaves <= 150
    width = min(40.0, max(8.0, 0.14 * n_leaves + 2))
    fig, ax = plt.subplots(figsize=(width, 6.5 if label_leaves else 5.0))
    cmap = plt.get_cmap("tab10")
    x = 0
    ticks, labels = [], []
    for gi, (top, members) in enumerate(groups.items()):
        color = cmap(gi % 10)
        xs = list(range(x, x + len(members)))
        mean = [m["smoothed_accuracy"] for m in members]
        # For very skewed posteriors (a few items, a parent near 0) the posterior mean can lie
        # outside the equal-tailed interval; draw the bar up to the mean then, not backwards.
        err = [[max(0.0, m["smoothed_accuracy"] - m["ci_low"]) for m in members],
               [max(0.0, m["ci_high"] - m["smoothed_accuracy"]) for m in members]]
        ax.errorbar(xs, mean, yerr=err, fmt="o", ms=3.5, color=color, ecolor=color, elinewidth=0.8, capsize=1.5, label=top)
        ax.scatter(xs, [m["accuracy"] for m in members], s=14, facecolors="none", edgecolors=color, linewidths=0.7)
        ax.text((xs[0] + xs[-1]) / 2, 1.03, top if len(top) <= 28 else top[:26] + "…", ha="center", va="bottom", fontsize=7, rotation=0 if len(members) > 4 else 30, color=color)
        if gi:
            ax.axvline(x - 0.5, color="0.85", lw=0.8)
        ticks += xs
        labels += [m["path"][-1] if len(m["path"][-1]) <= 40 else m["path"][-1][:38] + "…" for m in members]
        x += len(members)
    ax.set_xlim(-0.8, x - 0.2)
    ax.set_ylim(-0.02, 1.12)
    ax.set_ylabel("accuracy (dot: smoothed, 95% interval; ring: raw)")
    if label_leaves:
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n_leaves} leaf skills, grouped by top-level skill")
    ax.set_title(title or "per-skill accuracy", fontsize=10, pad=22)
    ax.grid(axis="y", color="0.92")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------
def run_profile(
    skills_parquet: str | Path,
    out_dir: str | Path,
    config: ProfileConfig,
    *,
    tree: SkillTree | str | Path | None = None,
    backend: ChatBackend | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    show_progress: bool = True,
) -> ProfileResult:
    """Sample the student on the pool, grade, and write the per-item and per-skill profile.

    ``tree``: a :class:`SkillTree`, a tree file / bundled name, or None (the tree is then
    the set of chains found in the data). ``backend``: a ready backend (else built from
    ``config.generation.backend`` before any work; a model that cannot load raises
    :class:`~skilldistill.errors.ConfigError` first). A finished run with the same
    config and inputs is not redone unless ``force``.
    """
    from .artifacts import FolderLock

    with FolderLock(out_dir, what="profile"):
        return _run_profile_unlocked(skills_parquet, out_dir, config, tree=tree, backend=backend, force=force, progress=progress, show_progress=show_progress)


def _run_profile_unlocked(
    skills_parquet: str | Path,
    out_dir: str | Path,
    config: ProfileConfig,
    *,
    tree: SkillTree | str | Path | None = None,
    backend: ChatBackend | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    show_progress: bool = True,
) -> ProfileResult:
    """Sample the student on the pool, grade, and write the per-item and per-skill profile.

    ``tree``: a :class:`SkillTree`, a tree file / bundled name, or None (the tree is then
    the set of chains found in the data). ``backend``: a ready backend (else built from
    ``config.generation.backend`` before any work; a model that cannot load raises
    :class:`~skilldistill.errors.ConfigError` first). A finished run with the same
    config and inputs is not redone unless ``force``.
    """
    t0 = time.time()
    skills_parquet = Path(skills_parquet)
    out_dir = Path(out_dir)
    items = load_pool(skills_parquet, config.answer_field)

    if isinstance(tree, str | Path):
        tree = SkillTree.resolve(tree)
    if tree is None:
        tree = tree_from_chains([c for it in items for c in it["skills"]], source=f"chains found in {skills_parquet}")
    tree_source = tree.source or "in-memory tree"
    inputs = {"skills": sha256_file(skills_parquet), "tree": hash_obj(tree.to_dict())}
    from .select import read_selected_ids, selection_file

    trained_on = [selection_file(p) for p in config.exclude_selections]
    for f in trained_on:
        inputs[f"excluded_selection:{f}"] = sha256_file(f)
    config_json = config.model_dump(mode="json")
    if not force and manifest_matches(out_dir, config=config_json, inputs=inputs) and (out_dir / SKILL_PROFILE_JSON).exists():
        m = read_json(out_dir / "manifest.json")
        sp = read_json(out_dir / SKILL_PROFILE_JSON)
        logger.info("profile already done in %s (manifest matches): nothing to do", out_dir)
        per_leaf = (sp.get("sample") or {}).get("per_leaf", {})
        accuracy = (sp.get("overall") or {}).get("accuracy")
        return ProfileResult(out_dir, m.get("counts", {}), accuracy, per_leaf, skipped=True)

    # From here on the folder's files change: the old manifest no longer certifies them.
    (out_dir / "manifest.json").unlink(missing_ok=True)
    with_gold = [it for it in items if _has_gold(it["answer"])]
    n_no_gold = len(items) - len(with_gold)
    if n_no_gold:
        logger.warning("%d of %d items have no gold answer: skipped", n_no_gold, len(items))
    if not with_gold:
        raise InputError("no item has a gold answer", file=skills_parquet, field=config.answer_field)
    n_trained_on = 0
    if trained_on:
        left_out = read_selected_ids(trained_on)
        kept = [it for it in with_gold if it["id"] not in left_out]
        n_trained_on = len(with_gold) - len(kept)
        logger.info("profile: %d items of earlier selections left out", n_trained_on)
        with_gold = kept
        if not with_gold:
            raise InputError("every item with a gold answer is in an excluded selection", file=skills_parquet)

    per_leaf_sampled: dict[str, int] = {}
    pool = with_gold
    if config.sample is not None and config.sample < len(with_gold):
        pool, per_leaf_sampled = stratified_sample(with_gold, config.sample, seed=config.sample_seed)
        write_json(out_dir / SAMPLE_JSON, {"n_pool": len(with_gold), "n_sampled": len(pool), "seed": config.sample_seed, "per_leaf": per_leaf_sampled})
        logger.info("profiling a stratified sample of %d of %d items (%d strata)", len(pool), len(with_gold), len(per_leaf_sampled))

    gen_table = run_generation(
        pool, out_dir, config.generation, backend=backend, source=str(skills_parquet), show_progress=show_progress
    )
    gens = gen_table.select(["id", "sample", "response", "finish_reason"]).to_pylist()
    gold_of = {it["id"]: it["answer"] for it in pool}
    grades = _grade_with_progress(
        [gold_of[g["id"]] for g in gens], [g["response"] for g in gens], config, progress, show_progress
    )
    grade_rows = []
    for g, r in zip(gens, grades, strict=True):
        # A sample is truncated when <think> never closed or the token cap was hit; a
        # truncated sample is wrong even when a \boxed{} before the cut matches the gold.
        truncated = r.truncated or g["finish_reason"] == "length"
        grade_rows.append(
            {
                "id": g["id"],
                "sample": g["sample"],
                "pred": r.pred,
                "correct": bool(r.correct) and not truncated,
                "truncated": truncated,
                "finish_reason": g["finish_reason"],
                "error": r.error,
            }
        )
    write_parquet(out_dir / GRADES_PARQUET, pa.Table.from_pylist(grade_rows, schema=_GRADES_SCHEMA))

    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in grade_rows:
        by_item[r["id"]].append(r)
    item_rows = []
    for it in pool:
        rs = by_item[it["id"]]
        n_s, n_c = len(rs), sum(r["correct"] for r in rs)
        acc = n_c / n_s if n_s else None
        item_rows.append(
            {
                "id": it["id"],
                "n_samples": n_s,
                "n_correct": n_c,
                "accuracy": acc,
                "solved": acc is not None and acc >= config.solved_threshold,
                "n_truncated": sum(r["truncated"] for r in rs),
                "n_grading_errors": sum(r["error"] is not None for r in rs),
                "skills": it["skills"],
            }
        )
    write_parquet(out_dir / PROFILE_PARQUET, pa.Table.from_pylist(item_rows, schema=_PROFILE_SCHEMA))

    nodes, overall, n_unknown = skill_stats(item_rows, tree, prior_strength=config.prior_strength)
    n_samples = sum(r["n_samples"] for r in item_rows)
    counts = {
        "items_in_pool": len(items),
        "items_without_gold": n_no_gold,
        "items_left_out_as_trained_on": n_trained_on,
        "items_profiled": len(item_rows),
        "items_without_skills": sum(1 for r in item_rows if not r["skills"]),
        "samples": n_samples,
        "correct": sum(r["n_correct"] for r in item_rows),
        "truncated": sum(r["n_truncated"] for r in item_rows),
        "grading_errors": sum(r["n_grading_errors"] for r in item_rows),
        "chains_not_in_tree": n_unknown,
        "nodes": len(nodes),
        "leaves": sum(n["is_leaf"] for n in nodes),
        "leaves_with_data": sum(1 for n in nodes if n["is_leaf"] and n["graded"] > 0),
    }
    if n_unknown:
        logger.warning("%d item chains are not paths of the tree (%s): left out of the node counts", n_unknown, tree_source)
    doc = {
        "tree_source": tree_source,
        "model": config.generation.backend.model,
        "prior_strength": config.prior_strength,
        "prior": "Beta(k*m_parent, k*(1-m_parent)); root prior mean 0.5",
        "interval": "95% equal-tailed Beta posterior interval",
        "counts_unit": "samples (an item counts once per node it passes through, n_samples each)",
        "solved_threshold": config.solved_threshold,
        "counts": counts,
        "overall": overall,
        "sample": {"n_pool": len(with_gold), "n_sampled": len(pool), "per_leaf": per_leaf_sampled} if per_leaf_sampled else None,
        "nodes": nodes,
    }
    write_json(out_dir / SKILL_PROFILE_JSON, doc)
    if config.plot:
        acc = overall.get("accuracy")
        title = f"{config.generation.backend.model}: {len(item_rows)} items, accuracy {acc:.3f}" if acc is not None else config.generation.backend.model
        plot_skill_profile(nodes, out_dir / SKILL_PROFILE_PNG, title=title)
    write_manifest(
        out_dir,
        config=config_json,
        inputs=inputs,
        counts=counts,
        wall_time_s=round(time.time() - t0, 2),
        artifacts=[GENERATIONS_PARQUET, GRADES_PARQUET, PROFILE_PARQUET, SKILL_PROFILE_JSON] + ([SKILL_PROFILE_PNG] if config.plot else []),
    )
    return ProfileResult(out_dir, counts, overall.get("accuracy"), per_leaf_sampled)


def _grade_with_progress(golds, responses, config: ProfileConfig, progress, show_progress: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from .progress import StageProgress

    with StageProgress(
        TextColumn("[bold]grade[/bold]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not show_progress,
    ) as bar:
        task = bar.add_task("grade", total=len(golds))

        def advance(k: int) -> None:
            bar.advance(task, k)
            if progress:
                progress(k)

        return grade_many(
            golds, responses, processes=config.grading_processes, timeout_s=config.grading_timeout_s, progress=advance
        )


_GRADES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sample", pa.int32()),
        ("pred", pa.string()),
        ("correct", pa.bool_()),
        ("truncated", pa.bool_()),
        ("finish_reason", pa.string()),
        ("error", pa.string()),
    ]
)
_PROFILE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("n_samples", pa.int32()),
        ("n_correct", pa.int32()),
        ("accuracy", pa.float64()),
        ("solved", pa.bool_()),
        ("n_truncated", pa.int32()),
        ("n_grading_errors", pa.int32()),
        ("skills", pa.list_(pa.list_(pa.string()))),
    ]
)

__all__ = [
    "CHAIN_SEP",
    "ProfileConfig",
    "ProfileResult",
    "beta_posterior",
    "beta_ppf",
    "betainc",
    "load_pool",
    "plot_skill_profile",
    "run_profile",
    "skill_stats",
    "stratified_sample",
    "tree_from_chains",
]
