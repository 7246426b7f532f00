"""Report: one Markdown and one self-contained HTML page comparing the arms of a run folder.

    skilldistill report runs/demo --baseline random-plain

Reads only artifacts: ``evaluate/<arm>/<seed>/<benchmark>/samples.parquet`` and
``results.json`` (and ``evaluate/base``), ``select/<arm>/<seed>/report.json``,
``train/<arm>/<seed>/trainer_state.json``, ``profile/skill_profile.json``, ``recipe.yaml``,
``pipeline_state.json`` and stage manifests. Writes ``report/report.md``,
``report/report.html`` (images embedded), ``report/summary.json`` and the PNGs it draws
(``per_skill.png``, ``loss.png``, ``selection.png``, ``emphasis.png``).

Every arm-versus-baseline difference carries a 95% confidence interval from a paired
bootstrap over problems (and over seeds when both arms ran several; see
:mod:`skilldistill.stats`), per benchmark and on the average over benchmarks; a one-line
verdict on the method arm heads the report. See docs/report.md for every figure.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .artifacts import read_json, write_json, write_text
from .errors import InputError
from .stats import bootstrap_correlation, paired_bootstrap, samples_needed

BASE = "base"
STAGE_ORDER = ("corpus", "demo", "annotate", "profile", "select", "format", "train", "evaluate", "report")
DEFAULT_TARGET_SE = 0.01
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass
class ArmRuns:
    """Everything the report knows about one arm, across its seeds."""

    name: str
    seeds: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> results.json
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> select report
    loss: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # seed -> (step, loss)
    # seed -> benchmark -> problem id -> (accuracy over its samples, samples, skill chains)
    problems: dict[str, dict[str, dict[str, tuple[float, int, list[list[str]]]]]] = field(default_factory=dict)


def _seed_dirs(folder: Path) -> list[Path]:
    """``folder/seed*`` subfolders, or ``folder`` itself when it holds results directly."""
    subs = sorted((p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"seed\d+", p.name)),
                  key=lambda p: int(p.name[4:]))
    return subs or [folder]


def _read_problems(seed_dir: Path, res: dict[str, Any]) -> dict[str, dict[str, tuple[float, int, list[list[str]]]]]:
    """Per-problem accuracy of each benchmark of one evaluation, from its samples.parquet."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, tuple[float, int, list[list[str]]]]] = {}
    for bench in _benchmarks_of(res):
        path = seed_dir / bench / "samples.parquet"
        if not path.exists():
            continue
        cols = [c for c in ("id", "correct", "skills") if c in pq.read_schema(path).names]
        t = pq.read_table(path, columns=cols).to_pydict()
        acc: dict[str, list[int]] = {}
        skills: dict[str, list[list[str]]] = {}
        for i, pid in enumerate(t["id"]):
            acc.setdefault(str(pid), []).append(int(bool(t["correct"][i])))
            if "skills" in t and t["skills"][i]:
                skills[str(pid)] = [list(c) for c in t["skills"][i]]
        out[bench] = {pid: (sum(v) / len(v), len(v), skills.get(pid, [])) for pid, v in acc.items()}
    return out


def collect(run_dir: str | Path) -> tuple[dict[str, ArmRuns], dict[str, Any]]:
    """Gather the arms (``base`` included when evaluated) and run-level context."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError("run folder not found", file=run_dir)
    arms: dict[str, ArmRuns] = {}
    eval_root = run_dir / "evaluate"
    if eval_root.exists():
        for arm_dir in sorted(p for p in eval_root.iterdir() if p.is_dir()):
            arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
            for sd in _seed_dirs(arm_dir):
                if (sd / "results.json").exists():
                    seed = sd.name if sd != arm_dir else "seed0"
                    arm.results[seed] = read_json(sd / "results.json")
                    arm.problems[seed] = _read_problems(sd, arm.results[seed])
                    if seed not in arm.seeds:
                        arm.seeds.append(seed)
    for stage in ("select", "train"):
        root = run_dir / stage
        if not root.exists():
            continue
        for arm_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
            for sd in _seed_dirs(arm_dir):
                seed = sd.name if sd != arm_dir else "seed0"
                if stage == "select" and (sd / "report.json").exists():
                    arm.selections[seed] = read_json(sd / "report.json")
                if stage == "train":
                    curve = _loss_curve(sd)
                    if curve:
                        arm.loss[seed] = curve
    _collect_rounds(run_dir, arms)
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
    manifests = {}
    for m in sorted(run_dir.glob("**/manifest.json")):
        if "checkpoint-" in str(m) or "/final/" in str(m):
            continue
        try:
            manifests[str(m.parent.relative_to(run_dir))] = read_json(m)
        except (OSError, json.JSONDecodeError):
            continue
    context["manifests"] = manifests
    return arms, context


def _collect_rounds(run_dir: Path, arms: dict[str, ArmRuns]) -> None:
    """Closed-loop arms (``rounds/<arm>/<seed>/round<r>/``): the rounds' selections as one
    (leaf counts summed), their loss curves end to end (steps counted on)."""
    root = run_dir / "rounds"
    if not root.exists():
        return
    for arm_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        arm = arms.setdefault(arm_dir.name, ArmRuns(arm_dir.name))
        for sd in sorted(p for p in arm_dir.iterdir() if p.is_dir() and p.name.startswith("seed")):
            rounds = sorted((p for p in sd.iterdir() if p.is_dir() and re.fullmatch(r"round\d+", p.name)),
                            key=lambda p: int(p.name[5:]))
            merged: dict[str, Any] = {"selected": 0, "leaf_table": []}
            by_leaf: dict[str, dict[str, Any]] = {}
            curve: list[tuple[int, float]] = []
            for rd in rounds:
                if (rd / "select" / "report.json").exists():
                    rep = read_json(rd / "select" / "report.json")
                    merged["selected"] += int(rep.get("selected") or 0)
                    for row in rep.get("leaf_table", []):
                        slot = by_leaf.setdefault(row["leaf"], {"leaf": row["leaf"], "selected_under_leaf": 0})
                        slot["selected_under_leaf"] += int(row.get("selected_under_leaf", 0))
                offset = curve[-1][0] if curve else 0
                curve += [(offset + step, loss) for step, loss in _loss_curve(rd / "train")]
            if merged["selected"]:
                merged["leaf_table"] = list(by_leaf.values())
                arm.selections[sd.name] = merged
            if curve:
                arm.loss[sd.name] = curve


def closed_loop_summary(run_dir: Path, arms: dict[str, ArmRuns], skills: dict[str, dict[str, dict[str, Any]]],
                        recipe: dict[str, Any] | None, weak: set[str]) -> dict[str, Any] | None:
    """Each closed-loop arm: per-leaf accuracy over rounds (the profile each round selected
    from, then the held-out evaluation), the budget per leaf per round (means over seeds),
    and the arm against its one-shot counterpart at the same budget (paired bootstrap)."""
    from .closed_loop import trajectory

    if not recipe:
        return None
    default_rounds = int(recipe.get("rounds") or 1)
    loop_arms = {a["name"]: int(a.get("rounds") or default_rounds) for a in recipe.get("arms") or []
                 if int(a.get("rounds") or default_rounds) > 1}
    if not loop_arms:
        return None
    one_shot = (recipe.get("report") or {}).get("one_shot")
    if one_shot is None:
        method = (recipe.get("report") or {}).get("method") or (recipe.get("arms") or [{}])[-1].get("name")
        one_shot = method if method and method not in loop_arms else None
    seeds = recipe.get("seeds") or [0]
    base_profile = run_dir / "profile" / "skill_profile.json"
    out: dict[str, Any] = {"one_shot": one_shot, "arms": {}}
    for name, rounds in loop_arms.items():
        runs = [trajectory(run_dir, name, int(s), rounds, base_profile=base_profile) for s in seeds]
        profiled = {leaf for t in runs for r in t["rounds"] for leaf in r["leaf_accuracy"]}
        leaves = sorted(profiled | {c for c in skills if _is_leaf(c, skills)})
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
        entry: dict[str, Any] = {"rounds": rounds, "seeds": [t["seed"] for t in runs],
                                 "rounds_done": [len(t["rounds"]) for t in runs], "leaves": table,
                                 "selected_per_round": [sum(t["rounds"][k]["selected"] for t in runs if len(t["rounds"]) > k)
                                                        / max(1, sum(1 for t in runs if len(t["rounds"]) > k))
                                                        for k in range(rounds)]}
        if one_shot and name in arms and one_shot in arms and arms[name].results and arms[one_shot].results:
            benches = sorted({b for r in arms[name].results.values() for b in _benchmarks_of(r)})
            ci = compare(arms[name], arms[one_shot], benches)
            entry["vs_one_shot"] = (ci or {}).get("average")
            if weak:
                ids = _problems_under(arms[one_shot], weak)
                ci_weak = compare(arms[name], arms[one_shot], benches, only=ids) if ids else None
                entry["vs_one_shot_weak"] = (ci_weak or {}).get("average")
        out["arms"][name] = entry
    return out


def _md_closed_loop(loop: dict[str, Any] | None) -> list[str]:
    if not loop or not loop.get("arms"):
        return []
    md = ["## Closed loop", ""]
    for name, e in loop["arms"].items():
        k = e["rounds"]
        md += [f"**{name}**: {k} rounds; items selected per round (mean over seeds): "
               + ", ".join(f"{b:.0f}" for b in e["selected_per_round"]) + ".", ""]
        vs = e.get("vs_one_shot")
        if vs:
            md += [f"Against the one-shot arm {loop['one_shot']} at the same budget: {_pp(vs['delta'])} pp"
                   f"{_ci_text(vs)} (95% paired-bootstrap interval over {vs.get('n_problems', '?')} problems)"
                   + (f"; on the weak leaves {_pp(e['vs_one_shot_weak']['delta'])} pp{_ci_text(e['vs_one_shot_weak'])}"
                      if e.get("vs_one_shot_weak") else "") + ".", ""]
        heads = [f"acc. profiled before round {r + 1}" for r in range(k)] + ["held-out (final)"]
        heads += [f"items round {r + 1}" for r in range(k)]
        md += ["Per leaf: the accuracy each round selected from (round 1: the base student on the pool; round r: "
               "the round r-1 student on a sample of items not yet trained on), the final model's held-out "
               "accuracy, and the items each round spent under the leaf (means over seeds; ★ weak leaf).", "",
               "| leaf | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for row in e["leaves"]:
            cells = [("–" if a is None else f"{100 * a:.1f}") for a in row["accuracy"]]
            cells.append("–" if row["held_out"] is None else f"{100 * row['held_out']:.1f}")
            cells += [("–" if b is None else f"{b:.1f}") for b in row["budget"]]
            md.append(f"| {'★ ' if row['weak'] else ''}{row['leaf']} | " + " | ".join(cells) + " |")
        md.append("")
    return md


def _loss_curve(train_dir: Path) -> list[tuple[int, float]]:
    candidates = [train_dir / "trainer_state.json", *sorted(train_dir.glob("checkpoint-*/trainer_state.json"))]
    for p in candidates:
        if p.exists():
            state = read_json(p)
            return [(int(e["step"]), float(e["loss"])) for e in state.get("log_history", []) if "loss" in e]
    return []


# ----------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def _benchmarks_of(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A results.json is either a summary {benchmarks: {...}} or one benchmark's results."""
    if "benchmarks" in res and isinstance(res["benchmarks"], dict):
        return res["benchmarks"]
    if "benchmark" in res:
        return {res["benchmark"]: res}
    return {}


def problem_matrices(arm: ArmRuns, other: ArmRuns, benches: list[str], *,
                     only: set[tuple[str, str]] | None = None) -> tuple[dict[str, list[list[float]]], dict[str, list[list[float]]]] | None:
    """``[seed, problem]`` accuracy matrices of two arms on the problems both evaluated
    (every seed of each arm), aligned by problem id; ``only`` restricts to those
    ``(benchmark, problem id)`` pairs (ids are only unique within a benchmark)."""
    a_out: dict[str, list[list[float]]] = {}
    b_out: dict[str, list[list[float]]] = {}
    for bench in benches:
        ids: set[str] | None = None
        for runs in (arm, other):
            for seed in runs.seeds:
                got = set(runs.problems.get(seed, {}).get(bench, {}))
                ids = got if ids is None else ids & got
        if not ids or (only is not None and not (ids := ids & {pid for b, pid in only if b == bench})):
            continue
        order = sorted(ids)
        a_out[bench] = [[arm.problems[s][bench][p][0] for p in order] for s in arm.seeds]
        b_out[bench] = [[other.problems[s][bench][p][0] for p in order] for s in other.seeds]
    return (a_out, b_out) if a_out else None


def compare(arm: ArmRuns, baseline: ArmRuns, benches: list[str], *, only: set[tuple[str, str]] | None = None,
            seed: int = 0) -> dict[str, Any] | None:
    """Per-benchmark and average paired-bootstrap intervals of ``arm - baseline``."""
    mats = problem_matrices(arm, baseline, benches, only=only)
    if mats is None:
        return None
    a, b = mats
    pair = arm.seeds == baseline.seeds and len(arm.seeds) > 1
    # What was compared, for the verdict: the benchmarks both arms ran, each arm's seeds.
    compared = {"n_seeds_arm": len(arm.seeds), "n_seeds_baseline": len(baseline.seeds)}
    out: dict[str, Any] = {}
    for bench in a:
        out[bench] = paired_bootstrap({bench: a[bench]}, {bench: b[bench]}, seed=seed, pair_seeds=pair).as_dict() | compared
    if len(a) > 1:
        out["average"] = paired_bootstrap(a, b, seed=seed, pair_seeds=pair).as_dict() | compared
    elif a:
        out["average"] = dict(next(iter(out.values())))
    out["average"]["benchmarks"] = sorted(a)
    return out


def benchmark_table(arms: dict[str, ArmRuns], baseline: str | None) -> dict[str, Any]:
    """arm -> benchmark -> {mean, std, n_seeds, delta, ci}; plus the unweighted average."""
    table: dict[str, dict[str, Any]] = {}
    names: list[str] = []
    for arm in arms.values():
        per_bench: dict[str, list[float]] = {}
        for res in arm.results.values():
            for b, r in _benchmarks_of(res).items():
                per_bench.setdefault(b, []).append(r.get("accuracy"))
                if b not in names:
                    names.append(b)
        if not per_bench:
            continue
        row = {}
        for b, vals in per_bench.items():
            m, sd = _mean_std(vals)
            row[b] = {"mean": m, "std": sd, "n_seeds": len(vals)}
        # average over benchmarks, per seed, then mean/std over seeds
        seed_avgs = []
        for res in arm.results.values():
            accs = [r.get("accuracy") for r in _benchmarks_of(res).values() if r.get("accuracy") is not None]
            if accs:
                seed_avgs.append(sum(accs) / len(accs))
        m, sd = _mean_std(seed_avgs)
        row["average"] = {"mean": m, "std": sd, "n_seeds": len(seed_avgs)}
        table[arm.name] = row
    if baseline and baseline in table:
        for arm_name, row in table.items():
            if arm_name == baseline:
                continue  # no "(+0.0)" against itself
            cis = compare(arms[arm_name], arms[baseline], names) or {}
            for b, cell in row.items():
                base = table[baseline].get(b, {}).get("mean")
                cell["delta"] = None if base is None or cell["mean"] is None else cell["mean"] - base
                if b in cis:
                    cell["ci"] = cis[b]
                    # the interval's own point: the same problems and benchmarks as its bounds
                    # (differs from the means' difference only when the arms ran different ones)
                    cell["delta"] = cis[b]["delta"]
    return {"benchmarks": names, "arms": table, "baseline": baseline}


def method_arm(arms: list[str], recipe: dict[str, Any] | None, baseline: str | None) -> str | None:
    """The arm the verdict is about: ``report.method`` in the recipe, else the last arm."""
    named = ((recipe or {}).get("report") or {}).get("method")
    if named in arms:
        return named
    order = [a.get("name") for a in (recipe or {}).get("arms") or [] if a.get("name") in arms]
    candidates = [a for a in (order or sorted(arms)) if a not in (BASE, baseline)]
    return candidates[-1] if candidates else None


def _pp(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "–"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def verdict(bench: dict[str, Any], method: str | None) -> dict[str, Any] | None:
    """One line on the method arm against the baseline, on the average over benchmarks."""
    baseline = bench.get("baseline")
    if not method or not baseline or method not in bench["arms"]:
        return None
    cell = bench["arms"][method].get("average") or {}
    ci = cell.get("ci")
    if not ci:
        return None
    names = ci.get("benchmarks") or bench["benchmarks"]  # the benchmarks both arms ran
    scope = f"the {len(names)}-benchmark average" if len(names) > 1 else f"{names[0]}"
    k_arm, k_base = ci.get("n_seeds_arm", ci["n_seeds"]), ci.get("n_seeds_baseline", ci["n_seeds"])
    if k_arm == k_base:
        seeds = f", {k_arm} seeds" if k_arm > 1 else ""
    else:
        seeds = f", {k_arm} seed(s) of {method} and {k_base} of {baseline}"
    interval = f"{_pp(ci['delta'])} pp [{_pp(ci['low'])}, {_pp(ci['high'])}]"
    if ci["low"] > 0:
        how = f"beats {baseline} by {interval}"
    elif ci["high"] < 0:
        how = f"loses to {baseline} by {interval}"
    else:
        how = f"does not differ significantly from {baseline}: {interval}"
    text = (f"{method} {how} on {scope} (95% paired-bootstrap interval over {ci['n_problems']} problems{seeds})")
    # One training run of an arm: resampling problems says nothing about how much another
    # seed's selection and training would move it (in the demo: several pp). The base
    # model is not trained: it has no seeds to vary.
    single = [a for a, k in ((method, k_arm), (baseline, k_base)) if k == 1 and a != BASE]
    if len(single) == 2:
        text += "; one seed per arm, so the interval leaves out seed-to-seed variation: run more seeds to include it"
    elif single:
        text += (f"; one seed of {single[0]}, so the interval leaves out its seed-to-seed variation: "
                 "run more seeds to include it")
    return {"text": text, "method": method, "baseline": baseline, "scope": scope, **ci}


def per_skill_table(arms: dict[str, ArmRuns]) -> dict[str, dict[str, dict[str, Any]]]:
    """skill chain -> arm -> {mean, std} of per-skill accuracy across seeds (all benchmarks pooled)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm in arms.values():
        per: dict[str, list[float]] = {}
        for res in arm.results.values():
            # one value per seed: the skill's problems pooled over the benchmarks (weighted by
            # each benchmark's count under it), so the spread is over seeds, not benchmarks
            pooled: dict[str, list[float]] = {}
            for r in _benchmarks_of(res).values():
                for chain, v in (r.get("per_skill") or {}).items():
                    if v.get("accuracy") is not None:
                        n = v.get("n") or 1
                        acc = pooled.setdefault(chain, [0.0, 0.0])
                        acc[0] += v["accuracy"] * n
                        acc[1] += n
            for chain, (correct, n) in pooled.items():
                per.setdefault(chain, []).append(correct / n)
        for chain, vals in per.items():
            m, sd = _mean_std(vals)
            out.setdefault(chain, {})[arm.name] = {"mean": m, "std": sd, "n_seeds": len(vals)}
    return dict(sorted(out.items()))


def weak_leaf_set(skills: dict[str, dict[str, dict[str, Any]]], profile: dict[str, Any] | None,
                  world_weak: list[str] | None, *, k: int | None = None) -> tuple[set[str], set[str], str] | None:
    """(weak leaves, other leaves, what "weak" means here).

    A world that knows its weak leaves (the demo: leaves made rare in the base student's
    mix) defines them; otherwise the leaves below the median profiled accuracy (or the
    ``k`` lowest) are the weak ones.
    """
    leaves = [c for c in skills if _is_leaf(c, skills)]
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


def _problems_under(arm: ArmRuns, leaves: set[str]) -> set[tuple[str, str]]:
    """``(benchmark, problem id)`` of the problems with a chain under one of ``leaves``."""
    ids: set[tuple[str, str]] = set()
    for per_bench in arm.problems.values():
        for bench, probs in per_bench.items():
            for pid, (_, _, chains) in probs.items():
                if any("->".join(c) in leaves for c in chains):
                    ids.add((bench, pid))
    return ids


def weak_skill_gains(arms: dict[str, ArmRuns], skills: dict[str, dict[str, dict[str, Any]]],
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
            ids = _problems_under(base, leaves)
            ci = compare(arms[name], base, benches, only=ids) if ids else None
            row[f"{group}_ci"] = ci.get("average") if ci else None
        out["by_arm"][name] = row
    return out


def _recipe_arm_settings(recipe: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
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


def emphasis_vs_gain(arms: dict[str, ArmRuns], skills: dict[str, dict[str, dict[str, Any]]],
                     dists: dict[str, dict[str, float]], recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Per leaf: how much more of the budget a skill-selection arm put there than its random
    counterpart (same format), against how much more it gained there; their correlation."""
    settings = _recipe_arm_settings(recipe)
    pairs = []
    for name, s in settings.items():
        if s["strategy"] in (None, "random") or name not in dists:
            continue
        partner = next((n for n, t in settings.items() if t["strategy"] == "random" and t["style"] == s["style"]
                        and n in dists), None)
        if partner:
            pairs.append((name, partner))
    out: dict[str, Any] = {"pairs": {}}
    for arm_name, partner in pairs:
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
            temps = {((_benchmarks_of(arm.results.get(s, {})).get(bench) or {}).get("decoding") or {}).get("temperature")
                     for s in seeds}
            greedy = temps == {0.0} or temps == {0}
            out["benchmarks"].setdefault(bench, {})[name] = samples_needed(rows, n, target_se, greedy=greedy)
    return out


def stage_times(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pipeline's stages in pipeline order with their wall time in seconds."""
    stages = (state or {}).get("stages") or {}

    def order(key: str) -> tuple:
        kind = key.split("/")[0]
        rank = STAGE_ORDER.index(kind) if kind in STAGE_ORDER else len(STAGE_ORDER)
        parts = key.split("/")[1:]
        arm = parts[0] if parts else ""
        seed = int(parts[1][4:]) if len(parts) > 1 and parts[1].startswith("seed") and parts[1][4:].isdigit() else -1
        return (rank, arm != BASE, arm, seed)

    done = {k: v for k, v in stages.items() if "running" not in v}  # not the ones being run or interrupted
    return [{"stage": k, "wall_time_s": v.get("wall_time_s")} for k, v in sorted(done.items(), key=lambda kv: order(kv[0]))]


# ----------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _arm_order(names: set[str] | list[str]) -> list[str]:
    return sorted(names, key=lambda a: (a != BASE, a))


def _colors(arms: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {a: ("#7f7f7f" if a == BASE else cmap(i % 10)) for i, a in enumerate(a for a in arms)}


def _short_leaf(chain: str) -> str:
    return chain.split("->")[-1]


def plot_per_skill(skills: dict[str, dict[str, dict[str, Any]]], path: Path, *, weak: set[str] | None = None,
                   leaves_only: bool = True) -> Path | None:
    """Horizontal bars, one group per leaf (full names, legible at page width); weak
    leaves marked; error bars (std over seeds) kept inside [0, 1]."""
    rows = {c: v for c, v in skills.items() if not leaves_only or _is_leaf(c, skills)}
    if not rows:
        return None
    plt = _plt()
    arms = _arm_order({a for per in rows.values() for a in per})
    colors = _colors(arms)
    chains = list(rows)
    n_arms = max(1, len(arms))
    height = 0.8 / n_arms
    fig_h = min(40.0, 1.2 + 0.22 * len(chains) * n_arms)
    fig, ax = plt.subplots(figsize=(9.5, fig_h))
    for i, arm in enumerate(arms):
        ys = [j + (i - (n_arms - 1) / 2) * height for j in range(len(chains))]
        means = [rows[c].get(arm, {}).get("mean") for c in chains]
        stds = [rows[c].get(arm, {}).get("std") or 0.0 for c in chains]
        vals = [m if m is not None else 0.0 for m in means]
        lo = [min(s, v) for s, v in zip(stds, vals, strict=True)]
        hi = [min(s, 1.0 - v) for s, v in zip(stds, vals, strict=True)]
        ax.barh(ys, vals, height, xerr=[lo, hi], label=arm, color=colors[arm], capsize=1.5,
                error_kw={"elinewidth": 0.8})
    ax.set_yticks(range(len(chains)))
    labels = [("★ " if weak and c in weak else "") + _short_leaf(c) for c in chains]
    ax.set_yticklabels(labels, fontsize=9)
    for tick, c in zip(ax.get_yticklabels(), chains, strict=True):
        if weak and c in weak:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("accuracy (mean over seeds; whiskers: std, clipped to [0, 1])")
    title = "per-skill accuracy"
    if weak:
        title += " (★ = weak leaf)"
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _is_leaf(chain: str, skills: dict[str, Any]) -> bool:
    prefix = chain + "->"
    return not any(other.startswith(prefix) for other in skills)


def plot_loss(arms: dict[str, ArmRuns], path: Path, *, styles: dict[str, str] | None = None) -> Path | None:
    """Training loss: one colour per arm, one line style per seed."""
    curves = [(a.name, s, c) for a in arms.values() for s, c in sorted(a.loss.items())]
    if not curves:
        return None
    plt = _plt()
    names = _arm_order({a for a, _, _ in curves})
    colors = _colors(names)
    seeds = sorted({s for _, s, _ in curves}, key=lambda s: int(s[4:]) if s[4:].isdigit() else 0)
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for arm, seed, curve in curves:
        steps, losses = zip(*curve, strict=True)
        style = _LINESTYLES[seeds.index(seed) % len(_LINESTYLES)]
        ax.plot(steps, losses, color=colors[arm], linestyle=style, alpha=0.9, lw=1.2, label=f"{arm} {seed}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    note = ""
    if styles and len(set(styles.values())) > 1:
        note = "\nplain and skill-aware arms train on different targets (the plan adds tokens): compare within a style"
    ax.set_title("training loss per arm (colour) and seed (line style)" + note, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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


def plot_selection(dists: dict[str, dict[str, float]], path: Path, *, weak: set[str] | None = None) -> Path | None:
    if not dists:
        return None
    plt = _plt()
    chains = sorted({c for d in dists.values() for c in d})
    arms = _arm_order(list(dists))
    colors = _colors(arms)
    n = len(arms)
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(9.5, min(40.0, 1.2 + 0.22 * len(chains) * n)))
    for i, arm in enumerate(arms):
        ys = [j + (i - (n - 1) / 2) * height for j in range(len(chains))]
        ax.barh(ys, [dists[arm].get(c, 0.0) for c in chains], height, label=arm, color=colors[arm])
    ax.set_yticks(range(len(chains)))
    ax.set_yticklabels([("★ " if weak and c in weak else "") + _short_leaf(c) for c in chains], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("share of the selected items under the leaf (mean over seeds; multi-skill items count under each)")
    ax.set_title("selected items per leaf skill" + (" (★ = weak leaf)" if weak else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_emphasis(emph: dict[str, Any], path: Path, *, weak: set[str] | None = None) -> Path | None:
    pairs = {a: e for a, e in emph.get("pairs", {}).items() if e.get("points")}
    if not pairs:
        return None
    plt = _plt()
    colors = _colors(_arm_order(list(pairs)))
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    for arm, entry in pairs.items():
        xs = [p["emphasis"] for p in entry["points"]]
        ys = [100 * p["gain"] for p in entry["points"]]
        corr = entry.get("correlation")
        label = f"{arm} vs {entry['against']}"
        if corr and all(corr[k] is not None for k in ("r", "low", "high")):
            label += f": r = {corr['r']:+.2f} [{corr['low']:+.2f}, {corr['high']:+.2f}]"
        ax.scatter(xs, ys, color=colors[arm], label=label, s=28, zorder=3)
        for p, x, y in zip(entry["points"], xs, ys, strict=True):
            if weak and p["leaf"] in weak:
                ax.scatter([x], [y], s=90, facecolors="none", edgecolors=colors[arm], zorder=2)
            ax.annotate(_short_leaf(p["leaf"]), (x, y), fontsize=6.5, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.axhline(0, color="#999", lw=0.8)
    ax.axvline(1, color="#999", lw=0.8)
    ax.set_xlabel("emphasis: leaf's share in the skill arm ÷ its share in the random arm (log scale)")
    ax.set_ylabel("gain on the leaf: skill arm − random arm (pp)")
    ax.set_title("where the budget went vs where the accuracy went" + (" (circled: weak leaves)" if weak else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------
def _ci_text(ci: dict[str, Any] | None) -> str:
    if not ci:
        return ""
    return f" [{_pp(ci['low'])}, {_pp(ci['high'])}]"


def _fmt(cell: dict[str, Any] | None, pct: bool = True) -> str:
    if not cell or cell.get("mean") is None:
        return "–"
    scale = 100 if pct else 1
    s = f"{cell['mean'] * scale:.1f}"
    if cell.get("n_seeds", 1) > 1 and cell.get("std") is not None:
        s += f" ± {cell['std'] * scale:.1f}"
    if cell.get("delta") is not None:
        s += f" ({cell['delta'] * scale:+.1f}{_ci_text(cell.get('ci'))})"
    return s


def strip_backend_defaults(obj: Any) -> Any:
    """A recipe dump without the fields of backend kinds it does not use (a transformers
    student does not need vLLM's or an API server's settings shown)."""
    from .llm.base import BACKEND_KIND_FIELDS

    if isinstance(obj, list):
        return [strip_backend_defaults(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: strip_backend_defaults(v) for k, v in obj.items()}
    kind = out.get("kind")
    if kind in BACKEND_KIND_FIELDS and "model" in out:
        unused = set().union(*(f for k, f in BACKEND_KIND_FIELDS.items() if k != kind)) - BACKEND_KIND_FIELDS[kind]
        out = {k: v for k, v in out.items() if k not in unused}
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(seconds, 60)
    return f"{int(m)} min {s:04.1f} s"


def build_report(run_dir: str | Path, *, baseline: str | None = None, out_dir: str | Path | None = None,
                 title: str | None = None, extra_sections: list[tuple[str, str]] | None = None,
                 method: str | None = None, target_se: float = DEFAULT_TARGET_SE,
                 sections_from_summary: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None) -> dict[str, Any]:
    """Collect, tabulate, plot; write report.md / report.html / summary.json.

    ``sections_from_summary(summary)`` returns more (heading, Markdown) sections computed
    from the summary (the demo's target checks); they go first, after the weak-leaf table.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    arms, ctx = collect(run_dir)
    recipe = ctx.get("recipe") or {}
    bench = benchmark_table(arms, baseline)
    method = method or method_arm(list(bench["arms"]), recipe, baseline)
    head = verdict(bench, method)
    skills = per_skill_table(arms)
    weak = weak_skill_gains(arms, skills, ctx.get("skill_profile"), ctx.get("world_weak_leaves"))
    weak_set = set(weak.get("weak_leaves") or [])
    dists = selection_distributions(arms)
    emph = emphasis_vs_gain(arms, skills, dists, recipe)
    needed = n_needed(arms, target_se)
    loop = closed_loop_summary(run_dir, arms, skills, recipe, weak_set)
    times = stage_times(ctx.get("pipeline_state"))
    styles = {n: s["style"] for n, s in _recipe_arm_settings(recipe).items() if s.get("style")}
    images = {
        "per-skill accuracy": plot_per_skill(skills, out / "per_skill.png", weak=weak_set),
        "selection distribution": plot_selection(dists, out / "selection.png", weak=weak_set),
        "emphasis against gain": plot_emphasis(emph, out / "emphasis.png", weak=weak_set),
        "training loss": plot_loss(arms, out / "loss.png", styles=styles),
    }
    summary = {"verdict": head, "benchmarks": bench, "per_skill": skills, "weak_skill_gains": weak,
               "selection": dists, "emphasis": emph, "n_needed": needed, "stage_times": times}
    if loop:
        summary["closed_loop"] = loop
    write_json(out / "summary.json", summary)

    title = title or f"skilldistill report: {run_dir.resolve().name}"
    md: list[str] = [f"# {title}", ""]
    if head:
        md += [f"**Verdict:** {head['text']}.", ""]
    md += _md_bench(bench)
    if weak:
        md += _md_weak(weak)
    sections = (sections_from_summary(summary) if sections_from_summary else []) + list(extra_sections or [])
    for heading, body in sections:
        md += [f"## {heading}", "", body, ""]
    if skills:
        arms_order = _arm_order({a for per in skills.values() for a in per})
        md += ["## Per-skill accuracy (%)", "",
               "Mean ± std over seeds" + ("; ★ marks the weak leaves." if weak_set else "."), "",
               "| skill | " + " | ".join(arms_order) + " |", "|---|" + "---|" * len(arms_order)]
        for chain, per in skills.items():
            mark = "★ " if chain in weak_set else ""
            md.append(f"| {mark}{chain} | " + " | ".join(_fmt(per.get(a)) for a in arms_order) + " |")
        md.append("")
    captions = {
        "per-skill accuracy": "Accuracy per leaf skill, by arm.",
        "selection distribution": "Where each arm's budget went (share of its selected items per leaf).",
        "emphasis against gain": ("Each point is a leaf: how much more of the budget the skill-selection arm gave it "
                                  "than the random arm of the same format (x), and how much more it gained there (y). "
                                  "The method's claim predicts a positive correlation (interval: bootstrap over leaves)."),
        "training loss": "Training loss of every fine-tune.",
    }
    for label, img in images.items():
        if img:
            md += [f"## {label.capitalize()}", "", captions[label], "", f"![{label}]({img.name})", ""]
    md += _md_emphasis(emph)
    md += _md_closed_loop(loop)
    md += _md_needed(needed)
    md += _md_settings(ctx, times)
    md_text = "\n".join(md) + "\n"
    write_text(out / "report.md", md_text)
    write_text(out / "report.html", _html(title, md_text, out))
    return summary


def _md_bench(bench: dict[str, Any]) -> list[str]:
    if not bench["arms"]:
        return ["No evaluation results yet.", ""]
    names = bench["benchmarks"]
    cols = names + (["average"] if len(names) > 1 else [])
    lines = ["## Accuracy by benchmark (%)", ""]
    if bench["baseline"]:
        lines += [f"Mean ± std over seeds; in brackets the difference to `{bench['baseline']}` in percentage points "
                  "with its 95% paired-bootstrap interval (over problems, and over seeds when both arms ran several).", ""]
    lines += ["| arm | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    order = sorted(bench["arms"], key=lambda a: (a != BASE, a != bench["baseline"], a))
    for arm in order:
        row = bench["arms"][arm]
        lines.append(f"| {arm} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return lines + [""]


def _md_weak(weak: dict[str, Any]) -> list[str]:
    lines = ["## Gains on the weak skills", "",
             f"Weak leaves: {weak['definition']}: " + ", ".join(f"`{c}`" for c in weak["weak_leaves"]) + ".",
             "Mean per-leaf accuracy change against `base` (percentage points); in brackets the 95% "
             "paired-bootstrap interval of the accuracy change on the problems under those leaves.", "",
             "| arm | weak leaves | other leaves |", "|---|---|---|"]
    for arm, g in weak["by_arm"].items():
        lines.append(f"| {arm} | {_pp(g['weak'])}{_ci_text(g.get('weak_ci'))} | {_pp(g['strong'])}{_ci_text(g.get('strong_ci'))} |")
    return lines + [""]


def _md_emphasis(emph: dict[str, Any]) -> list[str]:
    rows = [(a, e) for a, e in emph.get("pairs", {}).items() if e.get("correlation")]
    if not rows:
        return []
    lines = ["Correlation of log₂(emphasis) with the gain, per skill-selection arm:", "",
             "| arm | against | leaves | r | 95% interval |", "|---|---|---|---|---|"]
    for arm, e in rows:
        c = e["correlation"]
        if any(c[k] is None for k in ("r", "low", "high")):
            # every leaf with the same emphasis (or the same gain): no correlation to speak of
            lines.append(f"| {arm} | {e['against']} | {c['n']} | undefined | (constant emphasis or gain) |")
            continue
        lines.append(f"| {arm} | {e['against']} | {c['n']} | {c['r']:+.2f} | [{c['low']:+.2f}, {c['high']:+.2f}] |")
    return lines + [""]


def _md_needed(needed: dict[str, Any]) -> list[str]:
    if not needed.get("benchmarks"):
        return []
    t = needed["target_se"]
    lines = ["## Samples needed", "",
             f"Samples per problem (avg@n) that bring the sampling standard error of a benchmark's accuracy to "
             f"{100 * t:.1f} pp, from the observed per-problem accuracies (each problem's per-sample variance "
             "estimated within each seed, n/(n-1) p(1-p), then averaged over seeds). The problem SE is the "
             "part no number of samples removes: which problems the benchmark happens to hold.", "",
             "| benchmark | arm | problems | samples now | sampling SE now (pp) | samples needed | problem SE (pp) |",
             "|---|---|---|---|---|---|---|"]
    notes: dict[str, None] = {}
    for bench, per_arm in needed["benchmarks"].items():
        for arm, r in per_arm.items():
            se = "–" if r["sampling_se"] is None else f"{100 * r['sampling_se']:.2f}"
            k = "–" if r["samples_needed"] is None else str(r["samples_needed"])
            if r.get("note"):
                notes[r["note"]] = None
            lines.append(f"| {bench} | {arm} | {r['n_problems']} | {r['n_samples']} | {se} | {k} | "
                         f"{100 * r['problem_se']:.2f} |")
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return lines + [""]


def _md_settings(ctx: dict[str, Any], times: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if times:
        total = sum(t["wall_time_s"] or 0 for t in times)
        lines += ["## Stage times", "", f"Every stage of the pipeline in order, as last run ({_duration(total)} in all; "
                  "stages found up to date took no time in the run that skipped them).", "",
                  "| stage | wall time |", "|---|---|"]
        lines += [f"| {t['stage']} | {_duration(t['wall_time_s'])} |" for t in times]
        lines.append("")
    if ctx.get("recipe"):
        shown = strip_backend_defaults(ctx["recipe"])
        text = yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).rstrip()
        lines += ["## Settings", "", "<details><summary>Recipe as run (settings of unused backends left out)</summary>",
                  "", "```yaml", text, "```", "", "</details>", ""]
    if ctx.get("manifests"):
        lines += ["<details><summary>Stage manifests: counts</summary>", "",
                  "| stage | counts |", "|---|---|"]
        for stage, m in ctx["manifests"].items():
            counts = ", ".join(f"{k}={v}" for k, v in (m.get("counts") or {}).items() if not isinstance(v, dict | list))
            lines.append(f"| {stage} | {counts} |")
        lines += ["", "</details>", ""]
    return lines


def _html(title: str, md_text: str, img_dir: Path) -> str:
    """Self-contained HTML from our own Markdown subset (headings, tables, code, images,
    bold, and raw ``<details>``/``<summary>`` lines)."""
    body: list[str] = []
    lines = md_text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body.append("<pre>" + html.escape("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
            continue
        if line.startswith("|"):
            j = i
            rows = []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip("|").split("|")])
                j += 1
            head, data = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            t = ["<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"]
            t += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in data]
            body.append("\n".join(t) + "</tbody></table>")
            i = j
            continue
        m = re.match(r"(#+) (.*)", line)
        if m:
            level = len(m.group(1))
            body.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif re.fullmatch(r"</?details>|<details><summary>[^<]*</summary>", line.strip()):
            body.append(line.strip())  # our own fixed markup, never user text
        elif (m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line)):
            p = img_dir / m.group(2)
            if p.exists():
                data = base64.b64encode(p.read_bytes()).decode()
                body.append(f'<img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">')
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto}"
        "img{max-width:100%}code{background:#f0f0f0;padding:0 3px}summary{cursor:pointer;margin:.5em 0}"
    )
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
