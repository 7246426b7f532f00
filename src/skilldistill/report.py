"""Report: one Markdown and one self-contained HTML page comparing the runs of a run folder.

    skilldistill report runs/demo --baseline random-plain

Reads only artifacts: ``evaluate/<arm>/<seed>/results.json`` (and ``evaluate/base``),
``select/<arm>/<seed>/report.json``, ``train/<arm>/<seed>/trainer_state.json``,
``profile/skill_profile.json``, ``recipe.yaml`` and stage manifests. Writes
``report/report.md``, ``report/report.html`` (images embedded), ``report/summary.json``
and the PNGs it draws (``per_skill.png``, ``loss.png``, ``selection.png``).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import read_json, write_json, write_text
from .errors import InputError

BASE = "base"


@dataclass
class ArmRuns:
    """Everything the report knows about one arm, across its seeds."""

    name: str
    seeds: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> results.json
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> select report
    loss: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # seed -> (step, loss)


def _seed_dirs(folder: Path) -> list[Path]:
    """``folder/seed*`` subfolders, or ``folder`` itself when it holds results directly."""
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"seed\d+", p.name))
    return subs or [folder]


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
    context: dict[str, Any] = {"run_dir": str(run_dir)}
    if (run_dir / "profile" / "skill_profile.json").exists():
        context["skill_profile"] = read_json(run_dir / "profile" / "skill_profile.json")
    if (run_dir / "recipe.yaml").exists():
        context["recipe"] = (run_dir / "recipe.yaml").read_text()
    if (run_dir / "annotate" / "summary.json").exists():
        context["annotate"] = read_json(run_dir / "annotate" / "summary.json")
    manifests = {}
    for m in sorted(run_dir.glob("**/manifest.json")):
        if "checkpoint-" in str(m):
            continue
        try:
            manifests[str(m.parent.relative_to(run_dir))] = read_json(m)
        except (OSError, json.JSONDecodeError):
            continue
    context["manifests"] = manifests
    return arms, context


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


def benchmark_table(arms: dict[str, ArmRuns], baseline: str | None) -> dict[str, Any]:
    """arm -> benchmark -> {mean, std, n_seeds, delta}; plus the unweighted average."""
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
            for b, cell in row.items():
                base = table[baseline].get(b, {}).get("mean")
                cell["delta"] = None if base is None or cell["mean"] is None else cell["mean"] - base
    return {"benchmarks": names, "arms": table, "baseline": baseline}


def per_skill_table(arms: dict[str, ArmRuns]) -> dict[str, dict[str, dict[str, Any]]]:
    """skill chain -> arm -> {mean, std} of per-skill accuracy across seeds (all benchmarks pooled)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm in arms.values():
        per: dict[str, list[float]] = {}
        for res in arm.results.values():
            for r in _benchmarks_of(res).values():
                for chain, v in (r.get("per_skill") or {}).items():
                    if v.get("accuracy") is not None:
                        per.setdefault(chain, []).append(v["accuracy"])
        for chain, vals in per.items():
            m, sd = _mean_std(vals)
            out.setdefault(chain, {})[arm.name] = {"mean": m, "std": sd, "n_seeds": len(vals)}
    return dict(sorted(out.items()))


def weak_skill_gains(
    skills: dict[str, dict[str, dict[str, Any]]], profile: dict[str, Any] | None, *, k: int | None = None
) -> dict[str, Any]:
    """Mean per-skill gain over ``base`` on the student's weakest leaves (profile accuracy).

    Weak = leaves of the profile below its median accuracy (or the ``k`` weakest).
    """
    if not profile or not skills:
        return {}
    leaves = [n for n in profile.get("nodes", []) if n.get("is_leaf") and n.get("accuracy") is not None]
    key = "smoothed_accuracy" if leaves and leaves[0].get("smoothed_accuracy") is not None else "accuracy"
    leaves.sort(key=lambda n: n[key])
    if not leaves:
        return {}
    cut = k or max(1, len(leaves) // 2)
    weak = {n["chain"] for n in leaves[:cut]}
    strong = {n["chain"] for n in leaves[cut:]}
    arms = sorted({a for per in skills.values() for a in per} - {BASE})
    out: dict[str, Any] = {"weak_leaves": sorted(weak), "by_arm": {}}
    for arm in arms:
        gains = {"weak": [], "strong": []}
        for chain, per in skills.items():
            if arm in per and BASE in per and per[arm]["mean"] is not None and per[BASE]["mean"] is not None:
                group = "weak" if chain in weak else "strong" if chain in strong else None
                if group:
                    gains[group].append(per[arm]["mean"] - per[BASE]["mean"])
        out["by_arm"][arm] = {g: (sum(v) / len(v) if v else None) for g, v in gains.items()}
    return out


# ----------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_skill(skills: dict[str, dict[str, dict[str, Any]]], path: Path, leaves_only: bool = True) -> Path | None:
    rows = {c: v for c, v in skills.items() if not leaves_only or _is_leaf(c, skills)}
    if not rows:
        return None
    plt = _plt()
    arms = sorted({a for per in rows.values() for a in per}, key=lambda a: (a != BASE, a))
    chains = list(rows)
    width = 0.8 / max(1, len(arms))
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(chains) * max(1, len(arms)) ** 0.5), 4.8))
    for i, arm in enumerate(arms):
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(chains))]
        means = [rows[c].get(arm, {}).get("mean") or 0.0 for c in chains]
        errs = [rows[c].get(arm, {}).get("std") or 0.0 for c in chains]
        ax.bar(xs, means, width, yerr=errs, label=arm, capsize=2)
    ax.set_xticks(range(len(chains)))
    ax.set_xticklabels([c.split("->")[-1] for c in chains], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("per-skill accuracy (mean over seeds; bars: std)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _is_leaf(chain: str, skills: dict[str, Any]) -> bool:
    prefix = chain + "->"
    return not any(other.startswith(prefix) for other in skills)


def plot_loss(arms: dict[str, ArmRuns], path: Path) -> Path | None:
    curves = [(a.name, s, c) for a in arms.values() for s, c in sorted(a.loss.items())]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    colors: dict[str, Any] = {}
    for arm, _seed, curve in curves:
        steps, losses = zip(*curve, strict=True)
        line = ax.plot(steps, losses, color=colors.get(arm), alpha=0.85, label=arm if arm not in colors else None)
        colors.setdefault(arm, line[0].get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss (one line per seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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


def plot_selection(dists: dict[str, dict[str, float]], path: Path) -> Path | None:
    if not dists:
        return None
    plt = _plt()
    chains = sorted({c for d in dists.values() for c in d})
    arms = sorted(dists)
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(chains)), 4.5))
    for i, arm in enumerate(arms):
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(chains))]
        ax.bar(xs, [dists[arm].get(c, 0.0) for c in chains], width, label=arm)
    ax.set_xticks(range(len(chains)))
    ax.set_xticklabels([c.split("->")[-1] for c in chains], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("share of selected items")
    ax.set_title("selected items per leaf skill")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------
def _fmt(cell: dict[str, Any] | None, pct: bool = True) -> str:
    if not cell or cell.get("mean") is None:
        return "–"
    scale = 100 if pct else 1
    s = f"{cell['mean'] * scale:.1f}"
    if cell.get("n_seeds", 1) > 1 and cell.get("std") is not None:
        s += f" ± {cell['std'] * scale:.1f}"
    if cell.get("delta") is not None:
        s += f" ({cell['delta'] * scale:+.1f})"
    return s


def build_report(run_dir: str | Path, *, baseline: str | None = None, out_dir: str | Path | None = None,
                 title: str | None = None, extra_sections: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Collect, tabulate, plot; write report.md / report.html / summary.json."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    arms, ctx = collect(run_dir)
    bench = benchmark_table(arms, baseline)
    skills = per_skill_table(arms)
    weak = weak_skill_gains(skills, ctx.get("skill_profile"))
    dists = selection_distributions(arms)
    images = {
        "per-skill accuracy": plot_per_skill(skills, out / "per_skill.png"),
        "selection distribution": plot_selection(dists, out / "selection.png"),
        "training loss": plot_loss(arms, out / "loss.png"),
    }
    summary = {"benchmarks": bench, "per_skill": skills, "weak_skill_gains": weak, "selection": dists}
    write_json(out / "summary.json", summary)

    title = title or f"skilldistill report: {run_dir.resolve().name}"
    md: list[str] = [f"# {title}", ""]
    md += _md_bench(bench)
    if weak:
        md += ["## Gains on the student's weak skills", "",
               f"Weak leaves: the {len(weak['weak_leaves'])} leaves with the lowest profiled accuracy. "
               "Mean per-leaf accuracy change against `base` (percentage points):", "",
               "| arm | weak leaves | other leaves |", "|---|---|---|"]
        for arm, g in weak["by_arm"].items():
            md.append(f"| {arm} | {_pp(g['weak'])} | {_pp(g['strong'])} |")
        md.append("")
    if skills:
        arms_order = sorted({a for per in skills.values() for a in per}, key=lambda a: (a != BASE, a))
        md += ["## Per-skill accuracy (%)", "", "| skill | " + " | ".join(arms_order) + " |",
               "|---|" + "---|" * len(arms_order)]
        for chain, per in skills.items():
            md.append(f"| {chain} | " + " | ".join(_fmt(per.get(a)) for a in arms_order) + " |")
        md.append("")
    for label, img in images.items():
        if img:
            md += [f"## {label.capitalize()}", "", f"![{label}]({img.name})", ""]
    for heading, body in extra_sections or []:
        md += [f"## {heading}", "", body, ""]
    md += _md_settings(ctx)
    md_text = "\n".join(md) + "\n"
    write_text(out / "report.md", md_text)
    write_text(out / "report.html", _html(title, md_text, out))
    return summary


def _pp(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:+.1f}"


def _md_bench(bench: dict[str, Any]) -> list[str]:
    if not bench["arms"]:
        return ["No evaluation results yet.", ""]
    cols = bench["benchmarks"] + ["average"]
    lines = ["## Accuracy by benchmark (%)", ""]
    if bench["baseline"]:
        lines += [f"Mean ± std over seeds; in brackets the difference to `{bench['baseline']}`.", ""]
    lines += ["| arm | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    order = sorted(bench["arms"], key=lambda a: (a != BASE, a != bench["baseline"], a))
    for arm in order:
        row = bench["arms"][arm]
        lines.append(f"| {arm} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return lines + [""]


def _md_settings(ctx: dict[str, Any]) -> list[str]:
    lines = ["## Settings", ""]
    if ctx.get("recipe"):
        lines += ["Recipe as run:", "", "```yaml", ctx["recipe"].rstrip(), "```", ""]
    if ctx.get("manifests"):
        lines += ["| stage | wall time (s) | counts |", "|---|---|---|"]
        for stage, m in ctx["manifests"].items():
            counts = ", ".join(f"{k}={v}" for k, v in (m.get("counts") or {}).items() if not isinstance(v, dict | list))
            wt = m.get("wall_time_s")
            lines.append(f"| {stage} | {wt if wt is not None else '–'} | {counts} |")
        lines.append("")
    return lines


def _html(title: str, md_text: str, img_dir: Path) -> str:
    """Self-contained HTML from our own Markdown subset (headings, tables, code, images)."""
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
        elif (m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line)):
            p = img_dir / m.group(2)
            if p.exists():
                data = base64.b64encode(p.read_bytes()).decode()
                body.append(f'<img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">')
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto}"
        "img{max-width:100%}code{background:#f0f0f0;padding:0 3px}"
    )
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    t = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
