"""Reading a run folder for the report: each arm's seeds, results, per-problem accuracies,
selections and loss curves, and the run-level context (profile, recipe, stage times,
manifests). Reads artifacts only."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..artifacts import read_json
from ..errors import InputError

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
    """Gather the arms (``base`` included when evaluated) and run-level context."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError("run folder not found", file=run_dir)
    arms: dict[str, ArmRuns] = {}
    _collect_evaluations(run_dir, arms)
    _collect_selections_and_training(run_dir, arms)
    _collect_rounds(run_dir, arms)
    return arms, run_context(run_dir)


def _seed_dirs(folder: Path) -> list[Path]:
    """``folder/seed*`` subfolders, or ``folder`` itself when it holds results directly."""
    subs = sorted((sub for sub in folder.iterdir() if sub.is_dir() and re.fullmatch(r"seed\d+", sub.name)),
                  key=lambda sub: int(sub.name[4:]))
    return subs or [folder]


def _arm_dirs(root: Path) -> list[Path]:
    return sorted(sub for sub in root.iterdir() if sub.is_dir())


def _collect_evaluations(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """``evaluate/<arm>/<seed>/``: results.json and the per-problem accuracies."""
    eval_root = run_dir / "evaluate"
    if not eval_root.exists():
        return
    for arm_dir in _arm_dirs(eval_root):
        arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
        for seed_dir in _seed_dirs(arm_dir):
            if (seed_dir / "results.json").exists():
                seed = seed_dir.name if seed_dir != arm_dir else "seed0"
                arm.results[seed] = read_json(seed_dir / "results.json")
                arm.problems[seed] = _read_problems(seed_dir, arm.results[seed])
                if seed not in arm.seeds:
                    arm.seeds.append(seed)


def _read_problems(seed_dir: Path, res: dict[str, Any]) -> ProblemScores:
    """Per-problem accuracy of each benchmark of one evaluation, from its samples.parquet."""
    import pyarrow.parquet as pq

    out: ProblemScores = {}
    for bench in benchmarks_of(res):
        path = seed_dir / bench / "samples.parquet"
        if not path.exists():
            continue
        cols = [c for c in ("id", "correct", "skills") if c in pq.read_schema(path).names]
        samples = pq.read_table(path, columns=cols).to_pydict()
        acc: dict[str, list[int]] = {}
        skills: dict[str, list[list[str]]] = {}
        for i, pid in enumerate(samples["id"]):
            acc.setdefault(str(pid), []).append(int(bool(samples["correct"][i])))
            if "skills" in samples and samples["skills"][i]:
                skills[str(pid)] = [list(c) for c in samples["skills"][i]]
        out[bench] = {pid: (sum(v) / len(v), len(v), skills.get(pid, [])) for pid, v in acc.items()}
    return out


def _collect_selections_and_training(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """``select/<arm>/<seed>/report.json`` and ``train/<arm>/<seed>/`` loss curves."""
    for stage in ("select", "train"):
        root = run_dir / stage
        if not root.exists():
            continue
        for arm_dir in _arm_dirs(root):
            arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
            for seed_dir in _seed_dirs(arm_dir):
                seed = seed_dir.name if seed_dir != arm_dir else "seed0"
                if stage == "select" and (seed_dir / "report.json").exists():
                    arm.selections[seed] = read_json(seed_dir / "report.json")
                if stage == "train":
                    curve = _loss_curve(seed_dir)
                    if curve:
                        arm.loss[seed] = curve


def _collect_rounds(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """Closed-loop arms (``rounds/<arm>/<seed>/round<r>/``): the rounds' selections as one
    (leaf counts summed), their loss curves end to end (steps counted on)."""
    root = run_dir / "rounds"
    if not root.exists():
        return
    for arm_dir in _arm_dirs(root):
        arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
        for seed_dir in sorted(sub for sub in arm_dir.iterdir() if sub.is_dir() and sub.name.startswith("seed")):
            rounds = sorted((sub for sub in seed_dir.iterdir() if sub.is_dir() and re.fullmatch(r"round\d+", sub.name)),
                            key=lambda sub: int(sub.name[5:]))
            merged: dict[str, Any] = {"selected": 0, "leaf_table": []}
            by_leaf: dict[str, dict[str, Any]] = {}
            curve: list[tuple[int, float]] = []
            for round_dir in rounds:
                if (round_dir / "select" / "report.json").exists():
                    rep = read_json(round_dir / "select" / "report.json")
                    merged["selected"] += int(rep.get("selected") or 0)
                    for row in rep.get("leaf_table", []):
                        slot = by_leaf.setdefault(row["leaf"], {"leaf": row["leaf"], "selected_under_leaf": 0})
                        slot["selected_under_leaf"] += int(row.get("selected_under_leaf", 0))
                offset = curve[-1][0] if curve else 0
                curve += [(offset + step, loss) for step, loss in _loss_curve(round_dir / "train")]
            if merged["selected"]:
                merged["leaf_table"] = list(by_leaf.values())
                arm.selections[seed_dir.name] = merged
            if curve:
                arm.loss[seed_dir.name] = curve


def _loss_curve(train_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) from the trainer state of a fine-tune (its latest checkpoint's when
    training was interrupted)."""
    candidates = [train_dir / "trainer_state.json", *sorted(train_dir.glob("checkpoint-*/trainer_state.json"))]
    for state_path in candidates:
        if state_path.exists():
            state = read_json(state_path)
            return [(int(e["step"]), float(e["loss"])) for e in state.get("log_history", []) if "loss" in e]
    return []


def run_context(run_dir: Path) -> dict[str, Any]:
    """What the report shows about the run as a whole: the base profile, the recipe, the
    world's weak leaves (demo runs), the pipeline state and the stage manifests."""
    context: dict[str, Any] = {"run_dir": str(run_dir)}
    if (run_dir / "profile" / "skill_profile.json").exists():
        context["skill_profile"] = read_json(run_dir / "profile" / "skill_profile.json")
    if (run_dir / "recipe.yaml").exists():
        context["recipe_text"] = (run_dir / "recipe.yaml").read_text(encoding="utf-8")
        try:
            context["recipe"] = yaml.safe_load(context["recipe_text"]) or {}
        except yaml.YAMLError:
            context["recipe"] = {}
    if (run_dir / "annotate" / "summary.json").exists():
        context["annotate"] = read_json(run_dir / "annotate" / "summary.json")
    world = run_dir / "demo" / "student" / "base_training.json"
    if world.exists():
        context["world_weak_leaves"] = list(read_json(world).get("weak_leaves") or [])
    if (run_dir / "pipeline_state.json").exists():
        context["pipeline_state"] = read_json(run_dir / "pipeline_state.json")
    context["manifests"] = _stage_manifests(run_dir)
    return context


def _stage_manifests(run_dir: Path) -> dict[str, Any]:
    """Folder (relative to the run) -> manifest.json, leaving out checkpoints' and final models'."""
    manifests = {}
    for manifest in sorted(run_dir.glob("**/manifest.json")):
        if "checkpoint-" in str(manifest) or "/final/" in str(manifest):
            continue
        try:
            manifests[str(manifest.parent.relative_to(run_dir))] = read_json(manifest)
        except (OSError, json.JSONDecodeError):
            continue
    return manifests


collect = collect_run  # the old name
