"""The demo's claims, checked on its own results: does the method work in this world?

The demo world is built so that the paper's mechanism *can* act (docs/demo.md); whether
it does is measured, not assumed. After every demo run these checks are printed and put
in the report, pass or fail, with the numbers behind them:

1. a small fine-tune does not hurt: random-plain's accuracy is at least the base's;
2. skill selection spends the budget where it helps: the skill arms' mean gain on the
   world's weak leaves is at least twice random-plain's;
3. the method wins: skill-skillaware beats random-plain by at least +3 pp, with a 95%
   paired-bootstrap interval above 0.

An arm the recipe does not run (``--quick`` runs two) makes its check "not run".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASELINE = "random-plain"
METHOD = "skill-skillaware"
SKILL_ARMS = ("skill-plain", "skill-skillaware")
MIN_GAIN_PP = 3.0
WEAK_GAIN_RATIO = 2.0


@dataclass(frozen=True)
class TargetCheck:
    name: str
    passed: bool | None  # None: the arms it needs were not run
    detail: str

    @property
    def mark(self) -> str:
        return "not run" if self.passed is None else "pass" if self.passed else "FAIL"


def _pp(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:+.1f} pp"


def _interval(ci: dict[str, Any] | None) -> str:
    return "" if not ci else f" [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"


def check_targets(summary: dict[str, Any]) -> list[TargetCheck]:
    """Targets 1-3 on a demo run's ``report/summary.json``."""
    bench = summary.get("benchmarks") or {}
    arms = bench.get("arms") or {}
    checks: list[TargetCheck] = []

    base = (arms.get("base") or {}).get("average", {}).get("mean")
    rp = (arms.get(BASELINE) or {}).get("average", {}).get("mean")
    if base is None or rp is None:
        checks.append(TargetCheck("random-plain ≥ base", None, "needs the base and random-plain arms"))
    else:
        checks.append(TargetCheck("random-plain ≥ base", rp >= base,
                                  f"random-plain {100 * rp:.1f}% vs base {100 * base:.1f}% ({_pp(rp - base)})"))

    weak = (summary.get("weak_skill_gains") or {}).get("by_arm") or {}
    ran = [a for a in SKILL_ARMS if a in weak and weak[a].get("weak") is not None]
    rp_gain = (weak.get(BASELINE) or {}).get("weak")
    if not ran or rp_gain is None:
        checks.append(TargetCheck("weak-leaf gain of skill arms ≥ 2x random-plain's", None,
                                  "needs random-plain and a skill arm with per-skill results"))
    else:
        mean_gain = sum(weak[a]["weak"] for a in ran) / len(ran)
        ok = mean_gain >= WEAK_GAIN_RATIO * rp_gain and mean_gain > 0
        ratio = f"{mean_gain / rp_gain:.1f}x" if rp_gain > 0 else "random-plain gained nothing"
        checks.append(TargetCheck(
            "weak-leaf gain of skill arms ≥ 2x random-plain's", ok,
            f"{', '.join(ran)}: {_pp(mean_gain)} on the weak leaves vs random-plain {_pp(rp_gain)} ({ratio})"))

    cell = (arms.get(METHOD) or {}).get("average") or {}
    ci = cell.get("ci")
    if ci is None:
        checks.append(TargetCheck(f"{METHOD} − random-plain ≥ +3 pp, CI above 0", None,
                                  f"needs {METHOD} and random-plain"))
    else:
        ok = 100 * ci["delta"] >= MIN_GAIN_PP and ci["low"] > 0
        checks.append(TargetCheck(f"{METHOD} − random-plain ≥ +3 pp, CI above 0", ok,
                                  f"{_pp(ci['delta'])}{_interval(ci)} over {ci['n_problems']} problems x "
                                  f"{ci['n_seeds']} seed(s)"))
    return checks


def targets_markdown(checks: list[TargetCheck]) -> str:
    lines = ["The demo's claims, measured on this run (see docs/demo.md):", "",
             "| # | target | result | numbers |", "|---|---|---|---|"]
    for i, c in enumerate(checks, start=1):
        lines.append(f"| {i} | {c.name} | {c.mark} | {c.detail} |")
    return "\n".join(lines)


__all__ = ["TargetCheck", "check_targets", "targets_markdown"]
