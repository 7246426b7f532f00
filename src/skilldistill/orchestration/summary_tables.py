"""The end-of-run summary on the console (``skilldistill run``): accuracy per arm and benchmark,
the weak leaves' gains, the closed loop's rounds, the demo's targets and the verdict, from
the report's ``summary.json``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_run_summary(console: Console, recipe: Any, summary: dict[str, Any]) -> None:
    """Every table of a finished run's summary (nothing when no arm was evaluated)."""
    s = summary.get("benchmarks", {})
    if not s.get("arms", {}):
        return
    console.print(benchmark_table(recipe.name, s))
    weak = summary.get("weak_skill_gains", {})
    if weak.get("by_arm"):
        console.print(weak_gain_table(weak))
    print_closed_loop(console, summary.get("closed_loop"))
    if recipe.demo is not None:
        console.print(demo_targets_table(summary))
    if summary.get("verdict"):
        console.print(f"[bold]Verdict:[/bold] {summary['verdict']['text']}", highlight=False)


def benchmark_table(name: str, s: dict[str, Any]) -> Table:
    """Accuracy per arm and benchmark: mean ± std over seeds, the delta and its interval."""
    arms = s.get("arms", {})
    names = list(s.get("benchmarks", []))
    cols = names + (["average"] if len(names) > 1 else [])
    table = Table("arm", *cols, title=f"{name}: accuracy % (mean ± std over seeds; "
                  f"Δ vs {s.get('baseline')} in pp [95% paired-bootstrap interval])")
    order = sorted(arms, key=lambda a: (a != "base", a != s.get("baseline"), a))
    for arm in order:
        cells = []
        for c in cols:
            cell = arms[arm].get(c) or {}
            if cell.get("mean") is None:
                cells.append("–")
                continue
            txt = f"{100 * cell['mean']:.1f}"
            if cell.get("n_seeds", 1) > 1:
                txt += f" ± {100 * cell['std']:.1f}"
            if cell.get("delta") is not None and arm != s.get("baseline"):
                ci = cell.get("ci")
                txt += f" ({100 * cell['delta']:+.1f}" + (f" [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]" if ci else "") + ")"
            cells.append(txt)
        table.add_row(arm, *cells)
    return table


def weak_gain_table(weak: dict[str, Any]) -> Table:
    """Per-arm gain over the base student on the weak leaves and on the others."""
    wt = Table("arm", "Δ weak leaves (pp)", "Δ other leaves (pp)",
               title=f"per-leaf gain over base; weak = {weak.get('definition', 'lowest-profiled leaves')}")
    for arm, g in sorted(weak["by_arm"].items()):
        wt.add_row(arm, *("–" if g[k] is None else f"{100 * g[k]:+.1f}" for k in ("weak", "strong")))
    return wt


def print_closed_loop(console: Console, loop: dict[str, Any] | None) -> None:
    """Per closed-loop arm: accuracy and items per round and leaf, and the comparison with the one-shot arm."""
    if not loop:
        return
    for name, e in loop.get("arms", {}).items():
        k = e["rounds"]
        t = Table("leaf", *[f"acc r{r + 1}" for r in range(k)], "held-out", *[f"items r{r + 1}" for r in range(k)],
                  title=f"closed loop {name}: accuracy the rounds selected from, final held-out accuracy, items "
                  "per round (means over seeds; * weak leaf)")
        for row in e["leaves"]:
            t.add_row(("* " if row["weak"] else "") + row["leaf"].split("->")[-1],
                      *("–" if a is None else f"{100 * a:.0f}" for a in row["accuracy"]),
                      "–" if row["held_out"] is None else f"{100 * row['held_out']:.0f}",
                      *("–" if b is None else f"{b:.0f}" for b in row["budget"]))
        console.print(t)
        vs = e.get("vs_one_shot")
        if vs:
            console.print(f"{name} − {loop['one_shot']} (one-shot, same budget): {100 * vs['delta']:+.1f} pp "
                          f"[{100 * vs['low']:+.1f}, {100 * vs['high']:+.1f}] (95% paired-bootstrap interval, "
                          f"{vs.get('n_problems', '?')} problems)", highlight=False)


def demo_targets_table(summary: dict[str, Any]) -> Table:
    """The demo's claims, pass or fail on this run (:mod:`skilldistill.demo.targets`)."""
    from ..demo.targets import check_targets

    tt = Table("#", "demo target", "result", "numbers", title="the demo's claims, measured on this run")
    for i, c in enumerate(check_targets(summary), start=1):
        style = {"pass": "green", "FAIL": "bold red"}.get(c.mark, "dim")
        tt.add_row(str(i), c.name, f"[{style}]{c.mark}[/{style}]", c.detail)
    return tt


__all__ = ["benchmark_table", "demo_targets_table", "print_closed_loop", "print_run_summary", "weak_gain_table"]
