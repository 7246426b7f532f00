"""Reading a run folder for the report: each arm's seeds, results, per-problem accuracies,
selections and loss curves, and the run-level context (profile, recipe, stage times,
manifests). Reads artifacts only.

Nothing read is trusted. An arm whose evaluation is missing (a seed the run folder or the
recipe knows of, or the whole arm) or one of whose files cannot be used (not JSON, not the
expected shape, a samples file that is no Parquet or holds no samples) is *incomplete*:
:func:`collect_run` leaves it out of the arms and names each file in
``context["incomplete"]``. A damaged file of the run as a whole (recipe.yaml, the state
file, the skill profile, the world's weak leaves, the annotate summary) raises
:class:`InputError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..json_files import load_json, load_object
from ..orchestration.stage_state import read_state
from .checks import (
    check_profile,
    check_results,
    check_selection,
    check_weak_leaves,
    load_recipe_copy,
    loss_points,
    read_samples,
)

BASE = "base"  # the untrained student's arm (evaluate/base)

# benchmark -> problem id -> (accuracy over its samples, samples, skill chains)
ProblemScores = dict[str, dict[str, tuple[float, int, list[list[str]]]]]


@dataclass
class ArmRuns:
    """Everything the report knows about one arm, across its seeds."""

    name: str
    seeds: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> results.json
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> select report
    loss: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # seed -> (step, loss)
    problems: dict[str, ProblemScores] = field(default_factory=dict)  # seed -> per-problem scores
    ran: set[str] = field(default_factory=set)  # seeds with a folder in any stage (each must be evaluated)
    incomplete: list[str] = field(default_factory=list)  # "<file>: what is wrong", one per damaged or missing file


def arm_order(names: set[str] | list[str]) -> list[str]:
    """Arm names as tables and figures show them: ``base`` first, then by name."""
    return sorted(names, key=lambda a: (a != BASE, a))


def benchmarks_of(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A results.json is either a summary {benchmarks: {...}} or one benchmark's results."""
    if "benchmarks" in res and isinstance(res["benchmarks"], dict):
        return res["benchmarks"]
    if "benchmark" in res:
        return {res["benchmark"]: res}
    return {}


def collect_run(run_dir: str | Path) -> tuple[dict[str, ArmRuns], dict[str, Any]]:
    """Gather the complete arms (``base`` included when evaluated) and the run-level context;
    ``context["incomplete"]`` names each incomplete arm's missing or damaged files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run folder not found" if not run_dir.exists() else "not a folder: give the run folder",
                         file=run_dir)
    context = run_context(run_dir)  # a damaged file of the whole run refuses before any arm is read
    arms: dict[str, ArmRuns] = {}
    _collect_evaluations(run_dir, arms)
    _collect_selections_and_training(run_dir, arms)
    _collect_rounds(run_dir, arms)
    _check_evaluated(run_dir, arms, context.get("recipe") or {})
    context["incomplete"] = {name: arms[name].incomplete for name in arm_order(list(arms)) if arms[name].incomplete}
    return {name: arm for name, arm in arms.items() if not arm.incomplete}, context


def _seed_dirs(folder: Path) -> list[Path]:
    """``folder/seed*`` subfolders, or ``folder`` itself when it holds results directly."""
    subs = sorted((sub for sub in folder.iterdir() if sub.is_dir() and re.fullmatch(r"seed\d+", sub.name)),
                  key=lambda sub: int(sub.name[4:]))
    return subs or [folder]


def _arm_dirs(root: Path) -> list[Path]:
    return sorted(sub for sub in root.iterdir() if sub.is_dir())


def _arm_seed_dirs(root: Path, arms: dict[str, ArmRuns]) -> Iterator[tuple[ArmRuns, str, Path]]:
    """Every ``root/<arm>/<seed>/`` folder (or ``root/<arm>/`` holding results directly, as
    seed0), with its arm's record, the seed marked as ran."""
    for arm_dir in _arm_dirs(root):
        arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
        for seed_dir in _seed_dirs(arm_dir):
            seed = seed_dir.name if seed_dir != arm_dir else "seed0"
            arm.ran.add(seed)
            yield arm, seed, seed_dir


def _collect_evaluations(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """``evaluate/<arm>/<seed>/``: results.json and the per-problem accuracies."""
    eval_root = run_dir / "evaluate"
    if not eval_root.exists():
        return
    for arm, seed, seed_dir in _arm_seed_dirs(eval_root, arms):
        if not (seed_dir / "results.json").exists():
            continue  # named by _check_evaluated
        try:
            res = load_object(seed_dir / "results.json")
            problems = {b: _read_problems(seed_dir / b / "samples.parquet")
                        for b in check_results(res, seed_dir / "results.json")}
        except InputError as e:
            arm.incomplete.append(str(e))
            continue
        arm.results[seed] = res
        arm.problems[seed] = problems
        if seed not in arm.seeds:
            arm.seeds.append(seed)


def _read_problems(path: Path) -> dict[str, tuple[float, int, list[list[str]]]]:
    """Per-problem accuracy (and samples, skill chains) of one benchmark's samples.parquet."""
    samples = read_samples(path)
    acc: dict[str, list[int]] = {}
    skills: dict[str, list[list[str]]] = {}
    for i, pid in enumerate(samples["id"]):
        acc.setdefault(str(pid), []).append(int(bool(samples["correct"][i])))
        if "skills" in samples and samples["skills"][i]:
            skills[str(pid)] = [list(c) for c in samples["skills"][i]]
    return {pid: (sum(v) / len(v), len(v), skills.get(pid, [])) for pid, v in acc.items()}


def _check_evaluated(run_dir: Path, arms: dict[str, ArmRuns], recipe: dict[str, Any]) -> None:
    """Every arm the recipe names (and ``base`` when it evaluates it) and every seed an arm
    has a folder for (or the recipe runs) must have an evaluation; a missing one is named."""
    names = [a["name"] for a in recipe.get("arms") or []]
    if (recipe.get("evaluate") or {}).get("base"):
        names.append(BASE)
    for name in names:
        arms.setdefault(name, ArmRuns(name))
    seeds = {f"seed{s}" for s in recipe.get("seeds") or []}
    for arm in arms.values():
        folder = run_dir / "evaluate" / arm.name
        if not folder.is_dir():
            arm.incomplete.append(f"{folder}: missing: the arm was never evaluated")
            continue
        expected = arm.ran | (seeds if arm.name in names and arm.name != BASE else set())
        for seed in sorted(expected - set(arm.seeds) - set(arm.results), key=lambda s: (len(s), s)):
            path = folder / "results.json" if arm.name == BASE else folder / seed / "results.json"
            if path.exists():
                continue  # read, found damaged: named already
            arm.incomplete.append(f"{path}: missing: the evaluation of {arm.name} {seed} did not finish")


def _collect_selections_and_training(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """``select/<arm>/<seed>/report.json`` and ``train/<arm>/<seed>/`` loss curves."""
    for stage in ("select", "train"):
        root = run_dir / stage
        if not root.exists():
            continue
        for arm, seed, seed_dir in _arm_seed_dirs(root, arms):
            try:
                if stage == "select" and (seed_dir / "report.json").exists():
                    path = seed_dir / "report.json"
                    arm.selections[seed] = check_selection(load_object(path), path)
                if stage == "train":
                    curve = _loss_curve(seed_dir)
                    if curve:
                        arm.loss[seed] = curve
            except InputError as e:
                arm.incomplete.append(str(e))


def _collect_rounds(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """Closed-loop arms (``rounds/<arm>/<seed>/round<r>/``): the rounds' selections as one
    (leaf counts summed), their loss curves end to end (steps counted on)."""
    root = run_dir / "rounds"
    if not root.exists():
        return
    for arm_dir in _arm_dirs(root):
        arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
        for seed_dir in sorted(sub for sub in arm_dir.iterdir() if sub.is_dir() and sub.name.startswith("seed")):
            arm.ran.add(seed_dir.name)
            try:
                merged, curve = _read_rounds(seed_dir)
            except InputError as e:
                arm.incomplete.append(str(e))
                continue
            if merged["selected"]:
                arm.selections[seed_dir.name] = merged
            if curve:
                arm.loss[seed_dir.name] = curve


def _read_rounds(seed_dir: Path) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """One closed-loop arm run's rounds: the merged selection and the loss curve end to end."""
    rounds = sorted((sub for sub in seed_dir.iterdir() if sub.is_dir() and re.fullmatch(r"round\d+", sub.name)),
                    key=lambda sub: int(sub.name[5:]))
    merged: dict[str, Any] = {"selected": 0, "leaf_table": []}
    by_leaf: dict[str, dict[str, Any]] = {}
    curve: list[tuple[int, float]] = []
    for round_dir in rounds:
        if (round_dir / "profile" / "skill_profile.json").exists():  # read by the closed-loop table
            path = round_dir / "profile" / "skill_profile.json"
            check_profile(load_object(path), path)
        if (round_dir / "select" / "report.json").exists():
            path = round_dir / "select" / "report.json"
            rep = check_selection(load_object(path), path)
            merged["selected"] += int(rep.get("selected") or 0)
            for row in rep.get("leaf_table", []):
                slot = by_leaf.setdefault(row["leaf"], {"leaf": row["leaf"], "selected_under_leaf": 0})
                slot["selected_under_leaf"] += int(row.get("selected_under_leaf", 0))
        offset = curve[-1][0] if curve else 0
        curve += [(offset + step, loss) for step, loss in _loss_curve(round_dir / "train")]
    if merged["selected"]:
        merged["leaf_table"] = list(by_leaf.values())
    return merged, curve


def _loss_curve(train_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) from the trainer state of a fine-tune (its latest checkpoint's when
    training was interrupted)."""
    checkpoints = sorted(train_dir.glob("checkpoint-*/trainer_state.json"), key=_checkpoint_step, reverse=True)
    for state_path in [train_dir / "trainer_state.json", *checkpoints]:
        if state_path.exists():
            return loss_points(load_object(state_path), state_path)
    return []


def _checkpoint_step(state_path: Path) -> int:
    """The step of ``checkpoint-<step>/trainer_state.json`` (-1 for another name)."""
    step = state_path.parent.name[len("checkpoint-"):]
    return int(step) if step.isdigit() else -1


def run_context(run_dir: Path) -> dict[str, Any]:
    """What the report shows about the run as a whole: the base profile, the recipe, the
    world's weak leaves (demo runs), the pipeline state and the stage manifests. A damaged
    one of these files raises InputError naming it and the stage to rerun."""
    context: dict[str, Any] = {"run_dir": str(run_dir)}
    profile = run_dir / "profile" / "skill_profile.json"
    if profile.exists():
        fix = "rerun the profile stage (skilldistill run RECIPE --from profile)"
        context["skill_profile"] = check_profile(load_object(profile, fix), profile, fix)
    if (run_dir / "recipe.yaml").exists():
        context["recipe_text"], context["recipe"] = load_recipe_copy(run_dir / "recipe.yaml")
    if (run_dir / "annotate" / "summary.json").exists():
        context["annotate"] = load_object(run_dir / "annotate" / "summary.json",
                                          "rerun the annotate stage (skilldistill run RECIPE --from annotate)")
    world = run_dir / "demo" / "student" / "base_training.json"
    if world.exists():
        fix = "rerun the demo stage (skilldistill run RECIPE --from demo)"
        context["world_weak_leaves"] = check_weak_leaves(load_object(world, fix), world, fix)
    if (run_dir / "pipeline_state.json").exists():
        context["pipeline_state"] = read_state(run_dir)
    context["manifests"] = _stage_manifests(run_dir)
    return context


def _stage_manifests(run_dir: Path) -> dict[str, Any]:
    """Folder (relative to the run) -> manifest.json, leaving out checkpoints' and final models';
    one that cannot be read shows as such in its counts."""
    manifests = {}
    for manifest in sorted(run_dir.glob("**/manifest.json")):
        if "checkpoint-" in str(manifest) or "/final/" in str(manifest):
            continue
        try:
            data = load_json(manifest)
        except InputError as e:
            data = {"counts": {"unreadable": e.reason.split(":")[0]}}
        if not isinstance(data, dict) or not isinstance(data.get("counts", {}), dict):
            data = {"counts": {"unreadable": "not a JSON object" if not isinstance(data, dict) else "counts not an object"}}
        manifests[str(manifest.parent.relative_to(run_dir))] = data
    return manifests


collect = collect_run  # the old name
