"""The closed loop: re-profile the trained student and spend the next slice of the budget
where it is still weak.

An arm with ``rounds: k`` (recipe ``rounds``, or the arm's own) and budget ``B`` runs ``k``
rounds of ``profile -> select -> format -> train`` instead of one select/format/train:

- round 1 selects from the profile of the base student (the run's ``profile/`` stage);
- round ``r > 1`` first profiles the student trained in round ``r - 1`` on a stratified
  sample of the pool (``loop.profile_sample``; items of earlier rounds left out, since the
  student was trained on them), then selects from that profile;
- each round selects ``B_r`` new items (``loop.budgets``, or equal slices of ``B``), never an
  item an earlier round selected;
- training continues from round ``r - 1``'s model with a fresh optimizer and a fresh
  learning-rate schedule (warmup and decay within the round), on the round's slice alone, or
  on every slice so far with ``loop.replay: true``;
- the arm's final model (the last round's) is evaluated as any arm's.

Each step of a round is a pipeline stage of its own, fingerprinted and resumable:
``rounds/<arm>/seed<s>/round<r>/{profile,select,format,train}/``
(:mod:`skilldistill.orchestration.loop_rounds` runs them; ``LoopConfig`` is in
:mod:`skilldistill.orchestration.loop_config`). This module holds the folder layout and
:func:`trajectory`, which reads the rounds back for the report: per-leaf accuracy after
each round and the budget each round spent per leaf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..artifacts import read_json, write_parquet

ROUNDS_DIR = "rounds"
REPLAY_SELECTION = "replay/selection.parquet"  # every slice so far, the format input of a replay round


def round_dir(arm: str, seed: int, r: int) -> str:
    """The run-folder-relative folder of round ``r`` (1-based) of an arm run."""
    return f"{ROUNDS_DIR}/{arm}/seed{seed}/round{r}"


def write_replay_selection(selections: list[Path], out: Path) -> Path:
    """Every slice so far as one selection file (replay), in round order; atomic."""
    tables = [pq.read_table(p) for p in selections]
    table = pa.concat_tables(tables, promote_options="permissive")
    write_parquet(out, table)
    return out


def _leaf_accuracy(profile_json: Path) -> dict[str, dict[str, float]]:
    """Leaf chain -> raw accuracy and graded samples, for the leaves with a verdict."""
    return {n["chain"]: {"accuracy": n["accuracy"], "graded": n["graded"]}
            for n in read_json(profile_json).get("nodes", []) if n.get("is_leaf") and n.get("graded", 0) > 0}


def _leaf_budget(select_report: Path) -> dict[str, int]:
    rep = read_json(select_report)
    return {row["leaf"]: int(row.get("selected_under_leaf", 0)) for row in rep.get("leaf_table", [])
            if row.get("selected_under_leaf", 0)}


def trajectory(run_dir: str | Path, arm: str, seed: int, rounds: int, *, base_profile: str | Path) -> dict[str, Any]:
    """What a closed-loop arm run did, round by round: the profile each round selected from
    (round 1: the base student's), the leaf budget each round spent, and the round's
    training loss at its end. Rounds not finished yet are left out."""
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"arm": arm, "seed": f"seed{seed}", "rounds": []}
    for r in range(1, rounds + 1):
        rd = run_dir / round_dir(arm, seed, r)
        prof = Path(base_profile) if r == 1 else rd / "profile" / "skill_profile.json"
        sel = rd / "select" / "report.json"
        if not (prof.exists() and sel.exists()):
            break
        entry: dict[str, Any] = {
            "round": r,
            "profiled_model": "base" if r == 1 else f"round{r - 1}",
            "leaf_accuracy": _leaf_accuracy(prof),
            "selected": int(read_json(sel).get("selected", 0)),
            "leaf_budget": _leaf_budget(sel),
        }
        if r > 1:
            counts = read_json(prof).get("counts", {})
            entry["profiled_items"] = counts.get("items_profiled")
        out["rounds"].append(entry)
    return out


__all__ = ["REPLAY_SELECTION", "ROUNDS_DIR", "round_dir", "trajectory", "write_replay_selection"]
