"""Cost preflight: ``skilldistill plan RECIPE``, what a run would do and cost, before it runs.

For every stage a run of the recipe would go through (the pipeline walks its stages with
nothing run, :meth:`Pipeline.plan`), in order:

- **status**: done / to run / stale, and why (settings changed, an input stage changed, its
  done-marker is missing, ``--from``);
- **items** the stage handles;
- **LLM calls** (attribution): measured calls per item on a small sample of the corpus with
  the recipe's own backend (``sample_items``, default 20; ``--no-sample``: none), else from
  the tree's shape (one chain per item: a call per inner node on the way to a leaf, the mean
  over leaves) with that assumption stated; the embedding backend makes none;
- **prompt and generated tokens** (profiling, evaluation): problems x samples; generated =
  the mean answer length measured by an earlier run of the same stage when there is one,
  else the token cap (an upper bound, stated); evaluation also gives the truncation share
  an earlier run saw;
- **training tokens**: examples x epochs x mean example length (measured by the format
  stage when it ran, else the pool's mean text length at ``chars_per_token``); the ``less``
  selection's gradient pass (pool items x mean length, a forward and a backward pass each) is
  counted as training tokens too (``stage_costs.LESS_TRAINING_TOKENS_PER_TOKEN``, from
  ``bench/less_cost.py``);
- **GPU-hours** per stage and in total, given throughputs (tokens/s per GPU) in the recipe's
  ``plan`` section (:class:`~skilldistill.orchestration.plan_config.PlanSettings`) or on the
  command line.

Everything is an estimate of work, never a run: the only thing executed is the attribution
sample (a few LLM calls), into a temporary folder. Each stage's estimate is in
:mod:`skilldistill.orchestration.stage_costs`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..tree import SkillTree
from .pipeline import Pipeline
from .plan_config import PlanSettings
from .stage_costs import (
    BENCHMARK_SIZES,
    Estimator,
    StageCost,
    annotate_cost,
    demo_cost,
    evaluate_cost,
    format_cost,
    profile_cost,
    seed_labels_cost,
    select_cost,
    train_cost,
)


@dataclass
class Plan:
    recipe: str
    run_dir: str
    stages: list[StageCost]
    totals: dict[str, float | None]
    assumptions: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "run_dir": self.run_dir, "stages": [asdict(s) for s in self.stages],
                "totals": self.totals, "assumptions": self.assumptions}


def plan_recipe(recipe: Any, *, run_dir: str | Path | None = None, force_from: str | None = None,
                settings: PlanSettings | None = None, sample: bool = True) -> Plan:
    """The stages a run of ``recipe`` would go through, their status and estimated cost."""
    settings = settings or recipe.plan
    pipe = Pipeline(recipe, run_dir=run_dir, force_from=force_from, show_progress=False)
    planned = pipe.plan()
    est = Estimator(pipe, settings, sample=sample)
    tree = SkillTree.resolve(recipe.tree, on_duplicate=recipe.on_duplicate)
    stages = [stage_cost(st, planned, pipe, est, tree) for st in planned]

    def total(attr: str, only_to_run: bool = False) -> float | None:
        vals = [getattr(s, attr) for s in stages if getattr(s, attr) is not None and (not only_to_run or s.status != "done")]
        return sum(vals) if vals else None

    totals = {k: total(k) for k in ("llm_calls", "prompt_tokens", "generated_tokens", "training_tokens", "gpu_hours")}
    totals["gpu_hours_to_run"] = total("gpu_hours", only_to_run=True)
    totals.update(_profiling_both_ways(stages, totals))
    pool = est.pool_items()
    over = [s.items for s in stages if s.kind == "select" and s.items and pool and s.items > pool]
    if over:  # the estimates follow the budget: say what they then are
        est.assumptions.append(f"select budget {max(over):,} is above the pool's {pool:,} items: a selection holds "
                               "at most the pool, so the items, examples and training tokens after it are upper bounds")
    if not (settings.generation_tokens_per_s and settings.training_tokens_per_s):
        est.assumptions.append("GPU-hours need throughputs: plan.generation_tokens_per_s / plan.training_tokens_per_s "
                               "in the recipe, or --gen-tokens-per-s / --train-tokens-per-s")
    return Plan(recipe.name, str(pipe.run_dir), stages, totals, est.assumptions)


def stage_cost(st: dict[str, Any], planned: list[dict[str, Any]], pipe: Pipeline, est: Estimator,
               tree: SkillTree) -> StageCost:
    """One planned stage's estimated cost (GPU-hours when the throughputs are known)."""
    c = StageCost(st["key"], st["kind"], st["status"], st["reason"])
    folder = pipe.path(st["key"])
    kind, cfg = st["kind"], st["config"]
    gen_tps, train_tps = est.settings.generation_tokens_per_s, est.settings.training_tokens_per_s
    corpus = est.corpus_of_stage(st["key"])  # an arm's own pool or attribution (None: the recipe's)
    if kind == "corpus":
        c.items = est.pool_items(corpus)
    elif kind == "demo" and st["key"] == "demo":
        demo_cost(c, pipe.recipe, tree)
    elif kind == "demo":
        seed_labels_cost(c, pipe.recipe, est)
    elif kind == "annotate":
        annotate_cost(c, est, tree, gen_tps, corpus)
    elif kind == "profile" and corpus is not None:
        c.items = est.pool_items()
        c.notes.append("the recipe's profile rolled up by this attribution's chains: no generation")
    elif kind == "profile":
        profile_cost(c, cfg, folder, est, pipe, tree)
    elif kind == "select":
        select_cost(c, cfg, folder, est, est.pool_items(corpus))
    elif kind == "format":
        format_cost(c, st, folder, planned, est.items_of_stage_pool)
    elif kind == "train":
        train_cost(c, st, planned, est, pipe)
    elif kind == "evaluate":
        evaluate_cost(c, cfg, folder, pipe)
    if kind in ("annotate", "profile", "evaluate") and gen_tps and c.generated_tokens:
        c.gpu_hours = c.generated_tokens / gen_tps / 3600
    if kind in ("train", "select") and train_tps and c.training_tokens:  # select: the less gradient pass
        c.gpu_hours = c.training_tokens / train_tps / 3600
    return c


def _profiling_both_ways(stages: list[StageCost], totals: dict[str, float | None]) -> dict[str, float | None]:
    """Profiling's GPU-hours as planned and the other way (full pool <-> adaptive), and the run's total both ways."""
    profiles = [s for s in stages if s.kind == "profile"]
    if not profiles or totals.get("gpu_hours") is None or any(s.gpu_hours is None for s in profiles):
        return {}
    planned = sum(s.gpu_hours or 0.0 for s in profiles)
    other = sum((s.profiling_alternative or {}).get("gpu_hours") or (s.gpu_hours or 0.0) for s in profiles)
    return {"profile_gpu_hours": planned, "profile_gpu_hours_other_way": other,
            "gpu_hours_other_way": (totals["gpu_hours"] or 0.0) - planned + other}


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, ensure_ascii=False)


__all__ = ["BENCHMARK_SIZES", "Plan", "PlanSettings", "StageCost", "plan_json", "plan_recipe", "stage_cost"]
