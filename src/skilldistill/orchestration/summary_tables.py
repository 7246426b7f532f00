"""The end-of-run summary on the console (``skilldistill run``): accuracy per arm and benchmark,
the weak leaves' gains, the closed loop's rounds, the demo's targets and the verdict, from
the report's ``summary.json``."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# A table's column: its header and rich Column settings (justify, no_wrap, ...).
ColumnSpec = tuple[str, dict[str, Any]]


def print_run_summary(console: Console, recipe: Any, summary: dict[str, Any],
                      attribution_sources: list[dict[str, Any]] | None = None) -> None:
    """Every table of a finished run's summary (nothing when no arm was evaluated), with the demo's
    attribution sources' rows when it has them."""
    s = summary.get("benchmarks", {})
    if not s.get("arms", {}):
        return
    console.print(*benchmark_tables(recipe.name, s, console.width))
    weak = summary.get("weak_skill_gains", {})
    if weak.get("by_arm"):
        console.print(*weak_gain_tables(weak, console.width))
    print_closed_loop(console, summary.get("closed_loop"))
    if recipe.demo is not None:
        console.print(demo_targets_table(summary))
    if attribution_sources:
        from ..demo.attribution_sources import row_cells

        console.print(*fit_tables("what better attribution buys: skill-plain under each source",
                                  attribution_sources_columns(), [[escape(c) for c in row_cells(r)]
                                                                  for r in attribution_sources],
                                  console.width, keys=2))
    if summary.get("verdict"):
        console.print(f"[bold]Verdict:[/bold] {summary['verdict']['text']}", highlight=False)


def benchmark_tables(name: str, s: dict[str, Any], width: int) -> list[Table]:
    """Accuracy per arm and benchmark: mean ± std over seeds, the delta and its interval
    (several tables, each with the arm column, when one does not fit ``width``)."""
    arms = s.get("arms", {})
    names = list(s.get("benchmarks", []))
    cols = names + (["average"] if len(names) > 1 else [])
    title = (f"{name}: accuracy % (mean ± std over seeds; Δ vs {s.get('baseline')} in pp "
             "[95% paired-bootstrap interval])")
    rows = []
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
            cells.append(escape(txt))
        rows.append([arm, *cells])
    return fit_tables(title, [key_column("arm"), *[(c, {}) for c in cols]], rows, width)


def weak_gain_tables(weak: dict[str, Any], width: int) -> list[Table]:
    """Per-arm gain over the base student on the weak leaves and on the others."""
    rows = [[arm, *("–" if g[k] is None else f"{100 * g[k]:+.1f}" for k in ("weak", "strong"))]
            for arm, g in sorted(weak["by_arm"].items())]
    return fit_tables(f"per-leaf gain over base; weak = {escape(str(weak.get('definition', 'lowest-profiled leaves')))}",
                      [key_column("arm"), ("Δ weak leaves (pp)", {}), ("Δ other leaves (pp)", {})], rows, width)


def print_closed_loop(console: Console, loop: dict[str, Any] | None) -> None:
    """Per closed-loop arm: accuracy and items per round and leaf, and the comparison with the one-shot arm."""
    if not loop:
        return
    for name, e in loop.get("arms", {}).items():
        k = e["rounds"]
        heads = [*[f"acc r{r + 1}" for r in range(k)], "held-out", *[f"items r{r + 1}" for r in range(k)]]
        rows = [[escape(("* " if row["weak"] else "") + row["leaf"].split("->")[-1]),
                 *("–" if a is None else f"{100 * a:.0f}" for a in row["accuracy"]),
                 "–" if row["held_out"] is None else f"{100 * row['held_out']:.0f}",
                 *("–" if b is None else f"{b:.0f}" for b in row["budget"])] for row in e["leaves"]]
        console.print(*fit_tables(f"closed loop {name}: accuracy the rounds selected from, final held-out accuracy, "
                                  "items per round (means over seeds; * weak leaf)",
                                  [("leaf", {}), *[(h, {"no_wrap": True}) for h in heads]], rows, console.width))
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
        tt.add_row(str(i), escape(c.name), f"[{style}]{c.mark}[/{style}]", escape(c.detail))
    return tt


def attribution_sources_columns() -> list[ColumnSpec]:
    """The attribution sources' table (:mod:`skilldistill.demo.attribution_sources`): its columns."""
    from ..demo.attribution_sources import HEADER

    return [key_column(HEADER[0]), key_column(HEADER[1])] + [(h, {"justify": "right"}) for h in HEADER[2:]]


def key_column(header: str) -> ColumnSpec:
    """The column that says what a row is (a stage, an arm): never wrapped, never cut to
    "…"; folded only when nothing else can give way."""
    return header, {"no_wrap": True}


def fit_tables(title: str, columns: list[ColumnSpec], rows: list[list[str]], width: int,
               keys: int = 1) -> list[Table]:
    """``rows`` (rich markup) under ``columns`` as one table ``width`` wide at most, or, when
    the columns would be squeezed below ``COMFORT`` (or a cell's longest word), as several:
    each with the first ``keys`` columns (what a row is) and its share of the others. Widths
    are set here, never below a column's longest word; a column folds rather than cutting to
    "…", so no name or number is lost (at a width too narrow for even that, rich folds)."""
    least, natural = zip(*(_widths(head, [r[j] for r in rows], kw.get("no_wrap", False))
                           for j, (head, kw) in enumerate(columns)), strict=True)
    wish = [min(n, max(m, COMFORT)) for m, n in zip(least, natural, strict=True)]
    base = sum(least[:keys]) + keys + 1  # the key columns and the borders of a table
    groups = _groups(list(range(keys, len(columns))), wish, base, width)
    tables = []
    for i, group in enumerate(groups):
        shown = [*range(keys), *group]
        sizes = _shrink([natural[j] for j in shown], [least[j] for j in shown], width - len(shown) - 1)
        t = Table(title=title if i == 0 else "(continued)")
        for j, size in zip(shown, sizes, strict=True):  # no_wrap made the width: past it a cell folds, never crops
            kw = {k: v for k, v in columns[j][1].items() if k != "no_wrap"}
            t.add_column(columns[j][0], **{**kw, "overflow": "fold", "width": max(size - 2, 1)})
        for r in rows:
            t.add_row(*(r[j] for j in shown))
        tables.append(t)
    return tables


COMFORT = 16  # a column's width (padding included) below which a table is split rather than squeezed


def _widths(header: str, cells: list[str], no_wrap: bool) -> tuple[int, int]:
    """The narrowest a column can be without folding a word, and its width unwrapped (padding included)."""
    lines = [line for c in (header, *cells) for line in Text.from_markup(c).plain.splitlines()]
    parts = lines if no_wrap else [w for line in lines for w in line.split()]
    return max((cell_len(p) for p in parts), default=1) + 2, max((cell_len(x) for x in lines), default=1) + 2


def _groups(cols: list[int], wish: list[int], base: int, width: int) -> list[list[int]]:
    """``cols`` in as few runs as fit ``width`` (each beside the key columns), of even length where they fit so."""
    groups: list[list[int]] = [[]]
    used = base
    for j in cols:
        if groups[-1] and used + wish[j] + 1 > width:
            groups.append([])
            used = base
        groups[-1].append(j)
        used += wish[j] + 1
    per = -(-len(cols) // len(groups))
    even = [cols[i:i + per] for i in range(0, len(cols), per)]
    return even if all(base + sum(wish[j] + 1 for j in g) <= width for g in even) else groups


def _shrink(natural: list[int], least: list[int], room: int) -> list[int]:
    """Widths from ``natural`` down to ``room`` in all, the widest first, none below its ``least``."""
    sizes = list(natural)
    while sum(sizes) > room:
        wide = [j for j in range(len(sizes)) if sizes[j] > least[j]]
        if not wide:
            break
        sizes[max(wide, key=lambda j: sizes[j])] -= 1
    return sizes


__all__ = ["ColumnSpec", "benchmark_tables", "demo_targets_table", "fit_tables", "key_column",
           "print_closed_loop", "print_run_summary", "weak_gain_tables"]
