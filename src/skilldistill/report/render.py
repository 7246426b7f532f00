"""The report as Markdown (``report.md``) and as one self-contained HTML page
(``report.html``, figures embedded), from the summary the report computed."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import yaml

from .comparison import format_pp
from .run_folder import BASE, arm_order

_FIGURE_CAPTIONS = {
    "per-skill accuracy": "Accuracy per leaf skill, by arm.",
    "selection distribution": "Where each arm's budget went (share of its selected items per leaf).",
    "emphasis against gain": ("Each point is a leaf: how much more of the budget the skill-selection arm gave it "
                              "than the random arm of the same format (x), and how much more it gained there (y). "
                              "The method's claim predicts a positive correlation (interval: bootstrap over leaves)."),
    "training loss": "Training loss of every fine-tune.",
}


def report_markdown(title: str, summary: dict[str, Any], context: dict[str, Any], figures: dict[str, Path | None],
                    sections: list[tuple[str, str]]) -> str:
    """The whole report.md: verdict, tables, the given (heading, Markdown) sections after the
    weak-leaf table, figures, closed loop, samples needed, stage times and settings."""
    head, weak, skills = summary["verdict"], summary["weak_skill_gains"], summary["per_skill"]
    md: list[str] = [f"# {title}", ""]
    if head:
        md += [f"**Verdict:** {head['text']}.", ""]
    md += _md_incomplete(summary.get("incomplete") or {})
    md += _md_bench(summary["benchmarks"])
    if weak:
        md += _md_weak(weak)
    for heading, body in sections:
        md += [f"## {heading}", "", body, ""]
    if skills:
        md += _md_per_skill(skills, set(weak.get("weak_leaves") or []))
    for label, img in figures.items():
        if img:
            md += [f"## {label.capitalize()}", "", _FIGURE_CAPTIONS[label], "", f"![{label}]({img.name})", ""]
    md += md_emphasis(summary["emphasis"])
    md += _md_closed_loop(summary.get("closed_loop"))
    md += _md_needed(summary["n_needed"])
    md += _md_settings(context, summary["stage_times"])
    return "\n".join(md) + "\n"


# ----------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------
def _ci_text(ci: dict[str, Any] | None) -> str:
    if not ci:
        return ""
    return f" [{format_pp(ci['low'])}, {format_pp(ci['high'])}]"


def _format_cell(cell: dict[str, Any] | None, pct: bool = True) -> str:
    """``mean ± std (delta [low, high])`` of a table cell, "–" when it has no mean."""
    if not cell or cell.get("mean") is None:
        return "–"
    scale = 100 if pct else 1
    s = f"{cell['mean'] * scale:.1f}"
    if cell.get("n_seeds", 1) > 1 and cell.get("std") is not None:
        s += f" ± {cell['std'] * scale:.1f}"
    if cell.get("delta") is not None:
        s += f" ({cell['delta'] * scale:+.1f}{_ci_text(cell.get('ci'))})"
    return s


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(seconds, 60)
    return f"{int(m)} min {s:04.1f} s"


def strip_backend_defaults(obj: Any) -> Any:
    """A recipe dump without the fields of backend kinds it does not use (a transformers
    student does not need vLLM's or an API server's settings shown)."""
    from ..llm.base import BACKEND_KIND_FIELDS

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


# ----------------------------------------------------------------------------------
# Markdown sections
# ----------------------------------------------------------------------------------
def _md_incomplete(incomplete: dict[str, list[str]]) -> list[str]:
    """The arms left out of every table, figure and interval, each with its files at fault."""
    if not incomplete:
        return []
    lines = ["## Incomplete arms", "", "Left out of every table, figure and interval below: each has an "
             "evaluation missing or a file that cannot be used. Rerun the stage that writes the file.", ""]
    for arm, reasons in incomplete.items():
        lines += [f"- {arm}: " + "; ".join(f"`{r}`" for r in reasons)]
    return lines + [""]


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
        lines.append(f"| {arm} | " + " | ".join(_format_cell(row.get(c)) for c in cols) + " |")
    return lines + [""]


def _md_weak(weak: dict[str, Any]) -> list[str]:
    lines = ["## Gains on the weak skills", "",
             f"Weak leaves: {weak['definition']}: " + ", ".join(f"`{c}`" for c in weak["weak_leaves"]) + ".",
             "Mean per-leaf accuracy change against `base` (percentage points); in brackets the 95% "
             "paired-bootstrap interval of the accuracy change on the problems under those leaves.", "",
             "| arm | weak leaves | other leaves |", "|---|---|---|"]
    for arm, g in weak["by_arm"].items():
        lines.append(f"| {arm} | {format_pp(g['weak'])}{_ci_text(g.get('weak_ci'))} | "
                     f"{format_pp(g['strong'])}{_ci_text(g.get('strong_ci'))} |")
    return lines + [""]


def _md_per_skill(skills: dict[str, dict[str, dict[str, Any]]], weak_set: set[str]) -> list[str]:
    arms_order = arm_order({a for per in skills.values() for a in per})
    lines = ["## Per-skill accuracy (%)", "",
             "Mean ± std over seeds" + ("; ★ marks the weak leaves." if weak_set else "."), "",
             "| skill | " + " | ".join(arms_order) + " |", "|---|" + "---|" * len(arms_order)]
    for chain, per in skills.items():
        mark = "★ " if chain in weak_set else ""
        lines.append(f"| {mark}{chain} | " + " | ".join(_format_cell(per.get(a)) for a in arms_order) + " |")
    return lines + [""]


def md_emphasis(emph: dict[str, Any]) -> list[str]:
    """The emphasis-against-gain correlations as a Markdown table ([] without any)."""
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


def _md_closed_loop(loop: dict[str, Any] | None) -> list[str]:
    if not loop or not loop.get("arms"):
        return []
    md = ["## Closed loop", ""]
    for name, entry in loop["arms"].items():
        k = entry["rounds"]
        md += [f"**{name}**: {k} rounds; items selected per round (mean over seeds): "
               + ", ".join(f"{b:.0f}" for b in entry["selected_per_round"]) + ".", ""]
        vs = entry.get("vs_one_shot")
        if vs:
            vs_weak = entry.get("vs_one_shot_weak")
            md += [f"Against the one-shot arm {loop['one_shot']} at the same budget: {format_pp(vs['delta'])} pp"
                   f"{_ci_text(vs)} (95% paired-bootstrap interval over {vs.get('n_problems', '?')} problems)"
                   + (f"; on the weak leaves {format_pp(vs_weak['delta'])} pp{_ci_text(vs_weak)}" if vs_weak else "")
                   + ".", ""]
        heads = [f"acc. profiled before round {r + 1}" for r in range(k)] + ["held-out (final)"]
        heads += [f"items round {r + 1}" for r in range(k)]
        md += ["Per leaf: the accuracy each round selected from (round 1: the base student on the pool; round r: "
               "the round r-1 student on a sample of items not yet trained on), the final model's held-out "
               "accuracy, and the items each round spent under the leaf (means over seeds; ★ weak leaf).", "",
               "| leaf | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for row in entry["leaves"]:
            cells = [("–" if a is None else f"{100 * a:.1f}") for a in row["accuracy"]]
            cells.append("–" if row["held_out"] is None else f"{100 * row['held_out']:.1f}")
            cells += [("–" if b is None else f"{b:.1f}") for b in row["budget"]]
            md.append(f"| {'★ ' if row['weak'] else ''}{row['leaf']} | " + " | ".join(cells) + " |")
        md.append("")
    return md


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
        lines += ["## Stage times", "", f"Every stage of the pipeline in order, as last run ({_duration_text(total)} in all; "
                  "stages found up to date took no time in the run that skipped them).", "",
                  "| stage | wall time |", "|---|---|"]
        lines += [f"| {t['stage']} | {_duration_text(t['wall_time_s'])} |" for t in times]
        lines.append("")
    if ctx.get("recipe"):
        shown = strip_backend_defaults(ctx["recipe"])
        text = yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).rstrip()
        lines += ["## Settings", "", "<details><summary>Recipe as run (settings of unused backends left out)</summary>",
                  "", "```yaml", text, "```", "", "</details>", ""]
    if ctx.get("manifests"):
        lines += ["<details><summary>Stage manifests: counts</summary>", "",
                  "| stage | counts |", "|---|---|"]
        for stage, manifest in ctx["manifests"].items():
            counts = ", ".join(f"{k}={v}" for k, v in (manifest.get("counts") or {}).items()
                               if not isinstance(v, dict | list))
            lines.append(f"| {stage} | {counts} |")
        lines += ["", "</details>", ""]
    return lines


# ----------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------
_HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto}"
    "img{max-width:100%}code{background:#f0f0f0;padding:0 3px}summary{cursor:pointer;margin:.5em 0}"
)


def report_html(title: str, md_text: str, img_dir: Path) -> str:
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
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            body.append(_html_table(lines[i:j]))
            i = j
            continue
        block = _html_line(line, img_dir)
        if block is not None:
            body.append(block)
        i += 1
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_HTML_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _html_table(table_lines: list[str]) -> str:
    """A Markdown table (header row, separator, rows) as an HTML table."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table_lines]
    head, data = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
    t = ["<table><thead><tr>" + "".join(f"<th>{_inline_html(c)}</th>" for c in head) + "</tr></thead><tbody>"]
    t += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>" for r in data]
    return "\n".join(t) + "</tbody></table>"


def _html_line(line: str, img_dir: Path) -> str | None:
    """One line outside code blocks and tables: heading, details markup, image (embedded;
    None when its file is missing), paragraph, or None when blank."""
    m = re.match(r"(#+) (.*)", line)
    if m:
        level = len(m.group(1))
        return f"<h{level}>{_inline_html(m.group(2))}</h{level}>"
    if re.fullmatch(r"</?details>|<details><summary>[^<]*</summary>", line.strip()):
        return line.strip()  # our own fixed markup, never user text
    if (m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line)):
        img = img_dir / m.group(2)
        if img.exists():
            data = base64.b64encode(img.read_bytes()).decode()
            return f'<img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">'
        return None
    if line.strip():
        return f"<p>{_inline_html(line)}</p>"
    return None


def _inline_html(text: str) -> str:
    """Escaped text with ``**bold**`` and `` `code` `` spans."""
    t = html.escape(text)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
