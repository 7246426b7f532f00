"""The report's tables beyond the verdict: accuracy per skill, the gains on the weak leaves,
where each arm's budget went and whether the budget's emphasis predicts the gain, the
samples per problem a benchmark needs, and the stage times."""

from __future__ import annotations

import math
from typing import Any

from ..stages import STAGES
from ..stats import bootstrap_correlation, samples_needed
from .comparison import compare, mean_std
from .config import DEFAULT_TARGET_SE
from .run_folder import BASE, ArmRuns, benchmarks_of

# skill chain -> arm -> {mean, std, n_seeds}
SkillTable = dict[str, dict[str, dict[str, Any]]]


def is_leaf(chain: str, skills: dict[str, Any]) -> bool:
    """Whether no other chain of ``skills`` lies under ``chain``."""
    prefix = chain + "->"
    return not any(other.startswith(prefix) for other in skills)


def per_skill_table(arms: dict[str, ArmRuns]) -> SkillTable:
    """skill chain -> arm -> {mean, std} of per-skill accuracy across seeds (all benchmarks pooled)."""
    out: SkillTable = {}
    for arm in arms.values():
        per: dict[str, list[float]] = {}
        for res in arm.results.values():
            for chain, (correct, n) in _pooled_skill_accuracy(res).items():
                per.setdefault(chain, []).append(correct / n)
        for chain, vals in per.items():
            m, sd = mean_std(vals)
            out.setdefault(chain, {})[arm.name] = {"mean": m, "std": sd, "n_seeds": len(vals)}
    return dict(sorted(out.items()))


def _pooled_skill_accuracy(res: dict[str, Any]) -> dict[str, list[float]]:
    """One seed's skill chain -> [correct, problems]: the skill's problems pooled over the
    benchmarks (weighted by each benchmark's count under it), so the spread is over seeds,
    not benchmarks."""
    pooled: dict[str, list[float]] = {}
    for r in benchmarks_of(res).values():
        for chain, v in (r.get("per_skill") or {}).items():
            if v.get("accuracy") is not None:
                n = v.get("n") or 1
                acc = pooled.setdefault(chain, [0.0, 0.0])
                acc[0] += v["accuracy"] * n
                acc[1] += n
    return pooled


def weak_leaf_set(skills: SkillTable, profile: dict[str, Any] | None,
                  world_weak: list[str] | None, *, k: int | None = None) -> tuple[set[str], set[str], str] | None:
    """(weak leaves, other leaves, what "weak" means here).

    A world that knows its weak leaves (the demo: leaves made rare in the base student's
    mix) defines them; otherwise the leaves below the median profiled accuracy (or the
    ``k`` lowest) are the weak ones.
    """
    leaves = [c for c in skills if is_leaf(c, skills)]
    if world_weak:
        weak = {c for c in leaves if c in set(world_weak)}
        if weak:
            return weak, set(leaves) - weak, (f"the world's {len(weak)} weak leaves (rare in the base student's "
                                              "training mix, known by construction)")
    if not profile:
        return None
    nodes = [n for n in profile.get("nodes", []) if n.get("is_leaf") and n.get("accuracy") is not None
             and n.get("chain") in skills]
    key = "smoothed_accuracy" if nodes and nodes[0].get("smoothed_accuracy") is not None else "accuracy"
    nodes.sort(key=lambda n: n[key])
    if not nodes:
        return None
    cut = k or max(1, len(nodes) // 2)
    weak = {n["chain"] for n in nodes[:cut]}
    return weak, {n["chain"] for n in nodes[cut:]}, f"the {len(weak)} leaves with the lowest profiled accuracy"


def problems_under(arm: ArmRuns, leaves: set[str]) -> set[tuple[str, str]]:
    """``(benchmark, problem id)`` of the problems with a chain under one of ``leaves``."""
    ids: set[tuple[str, str]] = set()
    for per_bench in arm.problems.values():
        for bench, probs in per_bench.items():
            for pid, (_, _, chains) in probs.items():
                if any("->".join(c) in leaves for c in chains):
                    ids.add((bench, pid))
    return ids


def weak_skill_gains(arms: dict[str, ArmRuns], skills: SkillTable,
                     profile: dict[str, Any] | None, world_weak: list[str] | None = None,
                     *, k: int | None = None) -> dict[str, Any]:
    """Mean per-leaf gain over ``base`` on the weak and the other leaves, per arm, with
    a paired-bootstrap interval over the problems of each group."""
    picked = weak_leaf_set(skills, profile, world_weak, k=k)
    if picked is None or BASE not in arms:
        return {}
    weak, strong, definition = picked
    out: dict[str, Any] = {"weak_leaves": sorted(weak), "definition": definition, "by_arm": {}}
    base = arms[BASE]
    benches = sorted({b for per in base.problems.values() for b in per})
    for name in sorted(a for a in arms if a != BASE):
        gains: dict[str, list[float]] = {"weak": [], "strong": []}
        for chain, per in skills.items():
            if name in per and BASE in per and per[name]["mean"] is not None and per[BASE]["mean"] is not None:
                group = "weak" if chain in weak else "strong" if chain in strong else None
                if group:
                    gains[group].append(per[name]["mean"] - per[BASE]["mean"])
        row: dict[str, Any] = {g: (sum(v) / len(v) if v else None) for g, v in gains.items()}
        for group, leaves in (("weak", weak), ("strong", strong)):
            ids = problems_under(base, leaves)
            ci = compare(arms[name], base, benches, only=ids) if ids else None
            row[f"{group}_ci"] = ci.get("average") if ci else None
        out["by_arm"][name] = row
    return out


def recipe_arm_settings(recipe: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """arm -> {strategy, style} as the recipe sets them (arm override over the recipe default)."""
    if not recipe:
        return {}
    default_strategy = (recipe.get("select") or {}).get("strategy")
    default_style = (recipe.get("format") or {}).get("style")
    out = {}
    for arm in recipe.get("arms") or []:
        out[arm.get("name")] = {
            "strategy": (arm.get("select") or {}).get("strategy", default_strategy),
            "style": (arm.get("format") or {}).get("style", default_style),
        }
    return out


def selection_distributions(arms: dict[str, ArmRuns]) -> dict[str, dict[str, float]]:
    """arm -> leaf -> realised share of the selected items (mean over seeds)."""
    out: dict[str, dict[str, float]] = {}
    for arm in arms.values():
        acc: dict[str, list[float]] = {}
        for rep in arm.selections.values():
            for chain, share in _realised_shares(rep).items():
                acc.setdefault(chain, []).append(share)
        if acc:
            n = len(arm.selections)
            out[arm.name] = {c: sum(v) / n for c, v in sorted(acc.items())}
    return out


def _realised_shares(rep: dict[str, Any]) -> dict[str, float]:
    """Share of the selected items that sit under each leaf (from the select report's
    ``leaf_table``; a multi-skill item counts under each of its leaves)."""
    total = rep.get("selected") or 0
    if not total:
        return {}
    return {row["leaf"]: row.get("selected_under_leaf", 0) / total for row in rep.get("leaf_table", [])}


def emphasis_vs_gain(arms: dict[str, ArmRuns], skills: SkillTable,
                     dists: dict[str, dict[str, float]], recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Per leaf: how much more of the budget a skill-selection arm put there than its random
    counterpart (same format), against how much more it gained there; their correlation."""
    out: dict[str, Any] = {"pairs": {}}
    for arm_name, partner in _random_partners(recipe, dists):
        points = []
        for leaf in sorted(set(dists[arm_name]) | set(dists[partner])):
            share_a, share_r = dists[arm_name].get(leaf, 0.0), dists[partner].get(leaf, 0.0)
            per = skills.get(leaf) or {}
            if share_r <= 0 or share_a <= 0 or arm_name not in per or partner not in per:
                continue
            points.append({"leaf": leaf, "emphasis": share_a / share_r, "gain": per[arm_name]["mean"] - per[partner]["mean"]})
        entry: dict[str, Any] = {"against": partner, "points": points}
        if len(points) >= 3:
            corr = bootstrap_correlation([math.log2(p["emphasis"]) for p in points], [p["gain"] for p in points])
            # constant emphasis or gain: no correlation (None in summary.json, not NaN)
            entry["correlation"] = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                                    for k, v in corr.items()}
        out["pairs"][arm_name] = entry
    return out


def _random_partners(recipe: dict[str, Any] | None, dists: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    """(skill-selection arm, the first random arm of the same format), both with a selection."""
    settings = recipe_arm_settings(recipe)
    pairs = []
    for name, s in settings.items():
        if s["strategy"] in (None, "random") or name not in dists:
            continue
        partner = next((n for n, t in settings.items() if t["strategy"] == "random" and t["style"] == s["style"]
                        and n in dists), None)
        if partner:
            pairs.append((name, partner))
    return pairs


def n_needed(arms: dict[str, ArmRuns], target_se: float = DEFAULT_TARGET_SE) -> dict[str, Any]:
    """Per benchmark and arm: samples per problem for a sampling SE of ``target_se``."""
    out: dict[str, Any] = {"target_se": target_se, "benchmarks": {}}
    for name, arm in sorted(arms.items(), key=lambda kv: (kv[0] != BASE, kv[0])):
        benches = sorted({b for per in arm.problems.values() for b in per})
        for bench in benches:
            seeds = [s for s in arm.seeds if arm.problems.get(s, {}).get(bench)]
            if not seeds:
                continue
            # the problems every seed evaluated, one row of per-problem accuracies per seed
            ids = sorted(set.intersection(*(set(arm.problems[s][bench]) for s in seeds)))
            if not ids:
                continue
            rows = [[arm.problems[s][bench][pid][0] for pid in ids] for s in seeds]
            n = min(arm.problems[s][bench][pid][1] for s in seeds for pid in ids)
            temps = {((benchmarks_of(arm.results.get(s, {})).get(bench) or {}).get("decoding") or {}).get("temperature")
                     for s in seeds}
            greedy = temps == {0.0} or temps == {0}
            out["benchmarks"].setdefault(bench, {})[name] = samples_needed(rows, n, target_se, greedy=greedy)
    return out


def stage_times(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pipeline's stages in pipeline order with their wall time in seconds."""
    stages = (state or {}).get("stages") or {}
    done = {k: v for k, v in stages.items() if "running" not in v}  # not the ones being run or interrupted
    return [{"stage": k, "wall_time_s": v.get("wall_time_s")}
            for k, v in sorted(done.items(), key=lambda kv: _pipeline_rank(kv[0]))]


def _pipeline_rank(key: str) -> tuple:
    """Sort key of a pipeline state key (``select/<arm>/seed<k>``): stage order, then
    ``base`` first, arm name, seed number; an arm's own pool (``pools/<name>/<stage>``) at its stage."""
    kind = key.split("/")[-1] if key.startswith("pools/") else key.split("/")[0]
    rank = STAGES.index(kind) if kind in STAGES else len(STAGES)
    parts = key.split("/")[1:]
    arm = parts[0] if parts else ""
    seed = int(parts[1][4:]) if len(parts) > 1 and parts[1].startswith("seed") and parts[1][4:].isdigit() else -1
    return (rank, arm != BASE, arm, seed)
