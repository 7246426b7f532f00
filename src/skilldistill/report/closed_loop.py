"""The closed-loop arms' table: per-leaf accuracy and budget round by round, and each arm
against its one-shot counterpart at the same budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .analysis import SkillTable, is_leaf, problems_under
from .comparison import compare
from .run_folder import ArmRuns, benchmarks_of


def closed_loop_summary(run_dir: Path, arms: dict[str, ArmRuns], skills: SkillTable,
                        recipe: dict[str, Any] | None, weak: set[str]) -> dict[str, Any] | None:
    """Each closed-loop arm: per-leaf accuracy over rounds (the profile each round selected
    from, then the held-out evaluation), the budget per leaf per round (means over seeds),
    and the arm against its one-shot counterpart at the same budget (paired bootstrap)."""
    from ..orchestration.closed_loop import (
        trajectory,  # pyarrow, needed only for a recipe with closed-loop arms
    )

    if not recipe:
        return None
    loop_arms = _loop_arms(recipe)
    if not loop_arms:
        return None
    one_shot = _one_shot_arm(recipe, loop_arms)
    seeds = recipe.get("seeds") or [0]
    base_profile = run_dir / "profile" / "skill_profile.json"
    out: dict[str, Any] = {"one_shot": one_shot, "arms": {}}
    for name, rounds in loop_arms.items():
        if name not in arms:
            continue  # incomplete (never evaluated, or a damaged file): left out, named by the report
        runs = [trajectory(run_dir, name, int(s), rounds, base_profile=base_profile) for s in seeds]
        entry: dict[str, Any] = {"rounds": rounds, "seeds": [t["seed"] for t in runs],
                                 "rounds_done": [len(t["rounds"]) for t in runs],
                                 "leaves": _leaf_rows(name, rounds, runs, skills, weak),
                                 "selected_per_round": [sum(t["rounds"][k]["selected"] for t in runs if len(t["rounds"]) > k)
                                                        / max(1, sum(1 for t in runs if len(t["rounds"]) > k))
                                                        for k in range(rounds)]}
        if one_shot and name in arms and one_shot in arms and arms[name].results and arms[one_shot].results:
            entry |= _against_one_shot(arms[name], arms[one_shot], weak)
        out["arms"][name] = entry
    return out


def _loop_arms(recipe: dict[str, Any]) -> dict[str, int]:
    """Arm -> rounds, for the arms that run more than one round."""
    default_rounds = int(recipe.get("rounds") or 1)
    return {a["name"]: int(a.get("rounds") or default_rounds) for a in recipe.get("arms") or []
            if int(a.get("rounds") or default_rounds) > 1}


def _one_shot_arm(recipe: dict[str, Any], loop_arms: dict[str, int]) -> str | None:
    """``report.one_shot``, else the verdict's arm when it runs one round."""
    one_shot = (recipe.get("report") or {}).get("one_shot")
    if one_shot is None:
        method = (recipe.get("report") or {}).get("method") or (recipe.get("arms") or [{}])[-1].get("name")
        one_shot = method if method and method not in loop_arms else None
    return one_shot


def _leaf_rows(name: str, rounds: int, runs: list[dict[str, Any]], skills: SkillTable,
               weak: set[str]) -> list[dict[str, Any]]:
    """Per leaf: the accuracy each round selected from and the items it spent there (means
    over the seeds that reached the round), and the final held-out accuracy."""
    profiled = {leaf for t in runs for r in t["rounds"] for leaf in r["leaf_accuracy"]}
    leaves = sorted(profiled | {c for c in skills if is_leaf(c, skills)})
    table = []
    for leaf in leaves:
        row: dict[str, Any] = {"leaf": leaf, "weak": leaf in weak, "accuracy": [], "budget": []}
        for k in range(rounds):
            accs = [t["rounds"][k]["leaf_accuracy"][leaf]["accuracy"] for t in runs
                    if len(t["rounds"]) > k and leaf in t["rounds"][k]["leaf_accuracy"]]
            budget = [t["rounds"][k]["leaf_budget"].get(leaf, 0) for t in runs if len(t["rounds"]) > k]
            row["accuracy"].append(sum(accs) / len(accs) if accs else None)
            row["budget"].append(sum(budget) / len(budget) if budget else None)
        held = (skills.get(leaf) or {}).get(name)
        row["held_out"] = held["mean"] if held else None
        table.append(row)
    return table


def _against_one_shot(arm: ArmRuns, one_shot: ArmRuns, weak: set[str]) -> dict[str, Any]:
    """``vs_one_shot`` (and ``vs_one_shot_weak`` with weak leaves): the average intervals."""
    out: dict[str, Any] = {}
    benches = sorted({b for r in arm.results.values() for b in benchmarks_of(r)})
    ci = compare(arm, one_shot, benches)
    out["vs_one_shot"] = (ci or {}).get("average")
    if weak:
        ids = problems_under(one_shot, weak)
        ci_weak = compare(arm, one_shot, benches, only=ids) if ids else None
        out["vs_one_shot_weak"] = (ci_weak or {}).get("average")
    return out
