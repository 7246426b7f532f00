"""Arm against baseline: paired-bootstrap intervals of the accuracy difference (over problems,
and over seeds when both arms ran several; see :mod:`skilldistill.stats`), the benchmark x
arm table that carries them, and the one-line verdict on the method arm."""

from __future__ import annotations

import math
from typing import Any

from ..stats import paired_bootstrap
from .run_folder import BASE, ArmRuns, benchmarks_of

# benchmark -> [seed, problem] accuracies
ProblemMatrix = dict[str, list[list[float]]]


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values that are not None (0 for one value)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def format_pp(v: float | None, signed: bool = True) -> str:
    """A share as percentage points with one decimal (``+3.9``), "–" for None."""
    if v is None:
        return "–"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def problem_matrices(arm: ArmRuns, other: ArmRuns, benches: list[str], *,
                     only: set[tuple[str, str]] | None = None) -> tuple[ProblemMatrix, ProblemMatrix] | None:
    """``[seed, problem]`` accuracy matrices of two arms on the problems both evaluated
    (every seed of each arm), aligned by problem id; ``only`` restricts to those
    ``(benchmark, problem id)`` pairs (ids are only unique within a benchmark)."""
    a_out: ProblemMatrix = {}
    b_out: ProblemMatrix = {}
    for bench in benches:
        ids: set[str] | None = None
        for runs in (arm, other):
            for seed in runs.seeds:
                got = set(runs.problems.get(seed, {}).get(bench, {}))
                ids = got if ids is None else ids & got
        if not ids or (only is not None and not (ids := ids & {pid for b, pid in only if b == bench})):
            continue
        order = sorted(ids)
        a_out[bench] = [[arm.problems[s][bench][pid][0] for pid in order] for s in arm.seeds]
        b_out[bench] = [[other.problems[s][bench][pid][0] for pid in order] for s in other.seeds]
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
        row = _accuracy_row(arm, names)
        if row is not None:
            table[arm.name] = row
    if baseline and baseline in table:
        _add_deltas(table, arms, baseline, names)
    return {"benchmarks": names, "arms": table, "baseline": baseline}


def _accuracy_row(arm: ArmRuns, names: list[str]) -> dict[str, Any] | None:
    """One arm's {mean, std, n_seeds} per benchmark and on the average; adds the benchmarks
    it ran to ``names`` in the order first seen. None when it has no results."""
    per_bench: dict[str, list[float]] = {}
    for res in arm.results.values():
        for b, r in benchmarks_of(res).items():
            per_bench.setdefault(b, []).append(r.get("accuracy"))
            if b not in names:
                names.append(b)
    if not per_bench:
        return None
    row = {}
    for b, vals in per_bench.items():
        m, sd = mean_std(vals)
        row[b] = {"mean": m, "std": sd, "n_seeds": len(vals)}
    # average over benchmarks, per seed, then mean/std over seeds
    seed_avgs = []
    for res in arm.results.values():
        accs = [r.get("accuracy") for r in benchmarks_of(res).values() if r.get("accuracy") is not None]
        if accs:
            seed_avgs.append(sum(accs) / len(accs))
    m, sd = mean_std(seed_avgs)
    row["average"] = {"mean": m, "std": sd, "n_seeds": len(seed_avgs)}
    return row


def _add_deltas(table: dict[str, dict[str, Any]], arms: dict[str, ArmRuns], baseline: str, names: list[str]) -> None:
    """Each other arm's cells get ``delta`` and ``ci`` against the baseline."""
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


def method_arm(arms: list[str], recipe: dict[str, Any] | None, baseline: str | None) -> str | None:
    """The arm the verdict is about: ``report.method`` in the recipe, else the last arm."""
    named = ((recipe or {}).get("report") or {}).get("method")
    if named in arms:
        return named
    order = [a.get("name") for a in (recipe or {}).get("arms") or [] if a.get("name") in arms]
    candidates = [a for a in (order or sorted(arms)) if a not in (BASE, baseline)]
    return candidates[-1] if candidates else None


def verdict(bench: dict[str, Any], method: str | None,
            incomplete: dict[str, list[str]] | None = None) -> dict[str, Any] | None:
    """One line on the method arm against the baseline, on the average over benchmarks.
    ``incomplete`` (arm -> its missing or damaged files) were left out of the table: no
    verdict when it is the method or the baseline, else the line names them."""
    baseline = bench.get("baseline")
    incomplete = incomplete or {}
    stopped = [a for a in (method, baseline) if a and a in incomplete]
    if method and baseline and stopped:
        text = (f"no verdict: {stopped[0]} is incomplete ({incomplete[stopped[0]][0]}) "
                "and left out of every comparison")
        return {"text": text, "method": method, "baseline": baseline, "incomplete": list(incomplete)}
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
    interval = f"{format_pp(ci['delta'])} pp [{format_pp(ci['low'])}, {format_pp(ci['high'])}]"
    if ci["low"] > 0:
        how = f"beats {baseline} by {interval}"
    elif ci["high"] < 0:
        how = f"loses to {baseline} by {interval}"
    else:
        how = f"does not differ significantly from {baseline}: {interval}"
    text = (f"{method} {how} on {scope} (95% paired-bootstrap interval over {ci['n_problems']} problems{seeds})")
    text += _seed_caveat(method, k_arm, baseline, k_base)
    if incomplete:
        text += "; left out as incomplete: " + ", ".join(f"{a} ({why[0]})" for a, why in incomplete.items())
    return {"text": text, "method": method, "baseline": baseline, "scope": scope, **ci}


def _seed_caveat(method: str, k_arm: int, baseline: str, k_base: int) -> str:
    """One training run of an arm: resampling problems says nothing about how much another
    seed's selection and training would move it (in the demo: several pp). The base model
    is not trained: it has no seeds to vary."""
    single = [a for a, k in ((method, k_arm), (baseline, k_base)) if k == 1 and a != BASE]
    if len(single) == 2:
        return "; one seed per arm, so the interval leaves out seed-to-seed variation: run more seeds to include it"
    if single:
        return (f"; one seed of {single[0]}, so the interval leaves out its seed-to-seed variation: "
                "run more seeds to include it")
    return ""
