"""``skilldistill select``: choose the SFT budget from an attributed pool, weighting weak skills.

``run_select`` reads top to bottom as its steps: check the request, skip if up to date, load the
loss or less strategy's model, read the pool, weigh its leaves, measure the pool (the field's baselines), draw,
write the selection, the report and the manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..artifacts import (
    locked_stage,
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
    write_text,
)
from ..errors import ConfigError, InputError
from ..tree import CHAIN_SEP
from .config import (
    EMBEDDINGS,
    ITEM_GRADIENTS,
    ITEM_LOSSES,
    LEAF_TABLE,
    PLOT,
    REPORT,
    SELECTION,
    SelectConfig,
)
from .length import length_check
from .plot import plot_distribution
from .pool import filter_pool, read_exclusions, scan_pool, take_rows
from .report import build_report, leaf_csv, shortfall_messages
from .state import DrawnPart, SelectRun
from .strategies.all_items import AllItems
from .strategies.correct_portion import BudgetPart, balance_leaves, split_budget
from .strategies.diversity import Diversity, check_embedding_model, prepare_diversity
from .strategies.draw import Draw
from .strategies.forced import draw_forced
from .strategies.length_first import LengthFirst, measure_lengths
from .strategies.less import LessRequest, LessSelection, prepare_less
from .strategies.loss import LossSelection, prepare_loss
from .strategies.quota import draw_quota
from .strategies.random import draw_random
from .strategies.skill import draw_skill
from .weights import leaf_accuracies, leaf_weights, profile_order, read_profile

log = logging.getLogger(__name__)

# Strategies drawn from the leaf weights: they need the skill profile.
_WEIGHTED = ("skill", "skill-quota", "forced")
# The field's baselines: they ignore the profile; each is an object measuring the pool once, then drawing each part.
_BASELINES = ("all", "length", "diversity", "loss", "less")
Baseline = AllItems | LengthFirst | Diversity | LossSelection | LessSelection


@dataclass
class SelectResult:
    out_dir: Path
    n_selected: int
    budget: int
    report: dict[str, Any]
    skipped: bool = False


@locked_stage("select")
def run_select(
    skills_parquet: str | Path,
    out_dir: str | Path,
    config: SelectConfig | None = None,
    *,
    profile_json: str | Path | None = None,
    item_profile: str | Path | None = None,
    tokenizer: Any = None,
    force: bool = False,
    progress: bool = True,
    plot: bool = True,
) -> SelectResult:
    """Select ``config.budget`` items of ``skills_parquet`` into ``out_dir``.

    ``profile_json``: the skill profile (needed by ``skill`` and ``skill-quota``);
    ``item_profile``: per-item ``profile.parquet`` (needed by ``correct_portion``);
    ``tokenizer``: a loaded student tokenizer for ``max_tokens`` (else ``config.tokenizer``).
    Skips the work when ``out_dir`` holds a matching manifest, unless ``force``.
    """
    started = time.perf_counter()
    run = _start(skills_parquet, out_dir, config or SelectConfig(), profile_json, item_profile, tokenizer)
    if not force and (earlier := _up_to_date(run)) is not None:
        return earlier
    scorer = _load_loss_model(run.config)
    _read_pool(run, item_profile, progress)
    _weigh_leaves(run, profile_json)
    run.length_check = length_check(run.src, run.columns, run.config, tokenizer)
    baseline = _prepare_baseline(run, tokenizer, progress, scorer)
    _draw(run, baseline, progress)
    _write_selection(run, baseline)
    report = build_report(run, _baseline_report(run, baseline))
    _write_report(run, report, plot)
    return _finish(run, report, started)


def _start(skills_parquet: str | Path, out_dir: str | Path, config: SelectConfig, profile_json: str | Path | None,
           item_profile: str | Path | None, tokenizer: Any) -> SelectRun:
    """The request checked, the exclusions read, the inputs hashed for the manifest."""
    src = Path(skills_parquet)
    if src.is_dir():
        src = src / "skills.parquet"
    if not src.exists():
        raise InputError("skills table not found", file=src)
    _check_config(config, profile_json, item_profile, tokenizer)
    profile = read_profile(profile_json) if profile_json is not None else None
    if item_profile is not None and not Path(item_profile).is_file():
        raise InputError("item profile not found", file=item_profile)
    exclusions = read_exclusions(config)
    inputs = {"skills": sha256_file(src)}
    if profile_json is not None:
        inputs["profile"] = sha256_file(profile_json)
    if item_profile is not None:
        inputs["item_profile"] = sha256_file(item_profile)
    for f in exclusions.files:
        inputs[f"exclude:{f}"] = sha256_file(f) if f.is_file() else "dir"
    for f in exclusions.earlier:
        inputs[f"earlier_selection:{f}"] = sha256_file(f)
    if config.strategy == "less" and config.less_target == "dev" and config.less_target_file is not None:
        inputs["less_target_file"] = sha256_file(config.less_target_file)
    return SelectRun(config, src, Path(out_dir), exclusions, inputs, profile)


def _check_config(config: SelectConfig, profile_json: str | Path | None, item_profile: str | Path | None,
                  tokenizer: Any) -> None:
    """What a strategy or option needs besides the pool, and the checks pydantic cannot make."""
    if config.strategy in _WEIGHTED and profile_json is None:
        raise ConfigError(f"strategy {config.strategy!r} needs the skill profile (--profile skill_profile.json)")
    if config.correct_portion is not None and item_profile is None:
        raise ConfigError("correct_portion needs the per-item profile (--item-profile profile.parquet)")
    if config.correct_portion is not None and config.correct_portion_scope == "leaf" and config.strategy not in ("skill", "skill-quota"):
        raise ConfigError(f"correct_portion_scope 'leaf' balances each leaf before a skill draw; strategy "
                          f"{config.strategy!r} takes the share over the budget (correct_portion_scope: budget)")
    lo, hi = config.difficulty_range
    if not 0 <= lo <= hi <= 1:
        raise ConfigError(f"difficulty_range must be 0 <= low <= high <= 1, got {list(config.difficulty_range)}")
    if config.max_tokens is not None and tokenizer is None and config.tokenizer is None:
        raise ConfigError("max_tokens needs the student tokenizer (--tokenizer)")
    if config.strategy == "all" and config.correct_portion is not None:
        raise ConfigError("strategy 'all' takes every eligible item: correct_portion does not apply (drop it, or "
                          "select only solved items with another strategy)")
    if config.strategy == "length" and config.length_unit == "tokens" and tokenizer is None and config.tokenizer is None:
        raise ConfigError("length_unit 'tokens' needs the student tokenizer (--tokenizer)")
    if config.strategy == "diversity":
        check_embedding_model()
    if config.strategy == "loss" and config.loss_scorer()[0] is None:
        raise ConfigError("strategy 'loss' needs the model that scores the items: --loss-model (default: the student "
                          "tokenizer's model, --tokenizer)")
    if config.strategy == "less":
        _check_less(config, profile_json)


def _check_less(config: SelectConfig, profile_json: str | Path | None) -> None:
    """The less strategy's model and target set, before anything is loaded."""
    if config.less_scorer()[0] is None:
        raise ConfigError("strategy 'less' needs the model whose gradients make the features: --less-model (default: "
                          "the student tokenizer's model, --tokenizer)")
    if config.less_target == "weak_skills" and profile_json is None:
        raise ConfigError("strategy 'less' with less_target 'weak_skills' needs the skill profile (--profile "
                          "skill_profile.json), or less_target 'dev' with --less-target-file")
    if config.less_target == "dev" and config.less_target_file is not None and not Path(config.less_target_file).is_file():
        raise InputError("development items (less_target_file) not found", file=config.less_target_file)


def _up_to_date(run: SelectRun) -> SelectResult | None:
    """The earlier result, when ``out`` holds a selection made from the same config and inputs."""
    if manifest_matches(run.out, config=run.config_json, inputs=run.inputs) and (run.out / SELECTION).exists():
        report = read_json(run.out / REPORT)
        return SelectResult(run.out, report["selected"], run.config.budget, report, skipped=True)
    return None


def _load_loss_model(config: SelectConfig) -> Any:
    """The loss (or less) strategy's model, loaded before the pool is read: one that cannot be loaded is refused
    at once (and for less, one without the parameters its features take the gradient of)."""
    if config.strategy not in ("loss", "less"):
        return None
    from .item_loss import load_loss_model

    if config.strategy == "loss":
        spec, gguf = config.loss_scorer()
        assert spec is not None
        return load_loss_model(spec, gguf, config.loss_device)
    from .gradient_features import gradient_model

    spec, gguf = config.less_scorer()
    assert spec is not None
    lm = load_loss_model(spec, gguf, config.less_device, field="less_model")
    return gradient_model(lm, config.less_params, rank=config.less_lora_rank, layers=config.less_layers,
                          seed=config.less_seed)


def _read_pool(run: SelectRun, item_profile: str | Path | None, progress: bool) -> None:
    """The pool, streamed by record batch (only small per-item arrays stay in memory), then filtered."""
    config, src = run.config, run.src
    run.columns = pq.read_schema(src).names
    needs_skills = (config.strategy in _WEIGHTED or config.only_skill is not None or _less_weak_skills(config)
                    or (config.strategy == "diversity" and config.diversity_stratify == "top_level"))
    needs_text = {"length": ("response",), "diversity": ("question",), "loss": ("question", "response"),
                  "less": ("question", "response")}.get(config.strategy, ())
    for col in ("id",) + (("skills",) if needs_skills else ()) + (("question",) if run.exclusions.files else ()) + (
            needs_text):
        if col not in run.columns:
            raise InputError(f"missing column {col!r}", file=src, field=col)
    scan = scan_pool(src, run.columns, run.exclusions, item_profile, progress=progress)
    run.pool = filter_pool(scan, src, run.columns, config, run.exclusions, needs_skills=needs_skills)


def _weigh_leaves(run: SelectRun, profile_json: str | Path | None) -> None:
    """The leaves drawn from: eligible items only, in the profile's order, weighted by its accuracies."""
    config, pool, profile = run.config, run.pool, run.profile
    if pool.index is None:
        return
    index = pool.index
    if profile is not None:
        index = index.reorder(profile_order(index.keys, profile))
    run.index = index = index.restrict(pool.eligible)
    if profile is None or (config.strategy in _BASELINES and not _less_weak_skills(config)):
        return
    run.accuracy = leaf_accuracies(index.keys, profile, config.accuracy, file=profile_json)
    _check_profile_overlap(run, profile_json)
    if config.strategy in _BASELINES:  # less on the weak skills: the accuracies name the target, no weights
        return
    run.weights = leaf_weights(run.accuracy.accuracy, config.temperature, config.w_max)
    if config.unprofiled_leaves == "exclude":
        no_verdict = run.accuracy.graded == 0
        run.weights = np.where(no_verdict, 0.0, run.weights)
        pool.summary["leaves_without_verdict_excluded"] = int(np.sum(no_verdict & (index.sizes() > 0)))


def _less_weak_skills(config: SelectConfig) -> bool:
    return config.strategy == "less" and config.less_target == "weak_skills"


def _check_profile_overlap(run: SelectRun, profile_json: str | Path | None) -> None:
    """How many leaves with eligible items the profile has (themselves or through an ancestor): a profile
    of another tree would silently give every leaf the global mean; below ``min_profile_overlap`` it is refused."""
    assert run.index is not None and run.accuracy is not None
    nonempty = run.index.sizes() > 0
    n, m = int(nonempty.sum()), int((run.accuracy.matched & nonempty).sum())
    fraction = m / n if n else None
    least = run.config.min_profile_overlap
    run.profile_overlap = {"leaves": n, "matched": m, "fraction": None if fraction is None else round(fraction, 6),
                           "min": least}
    if fraction is not None and fraction < least:
        raise InputError(f"the profile has {m} of {n} leaves of the pool ({fraction:.0%}; a leaf counts when it or an "
                         f"ancestor is a node of the profile), below min_profile_overlap {least}: a profile made on "
                         f"another skill tree?", file=profile_json, field="nodes")


def _prepare_baseline(run: SelectRun, tokenizer: Any, progress: bool, scorer: Any = None) -> Baseline | None:
    """For the field's baselines: the pool checked non-empty, then measured once (response lengths,
    question embeddings, the student's losses with ``scorer``) before the parts are drawn; None for the
    skill strategies."""
    config, pool = run.config, run.pool
    if config.strategy not in _BASELINES:
        return None
    if pool.summary["eligible"] == 0:
        raise InputError(f"no eligible item for strategy {config.strategy!r} ({_pool_counts(pool.summary)})",
                         file=run.src)
    if config.strategy == "all":
        return AllItems()
    if config.strategy == "length":
        tok = None
        if config.length_unit == "tokens":
            from ..format.tokens import load_tokenizer

            tok = (tokenizer if tokenizer is not None else run.length_check.tok if run.length_check is not None
                   else load_tokenizer(config.tokenizer or "", config.gguf_file))
        return measure_lengths(run.src, pool.eligible, config.length_unit, tok, config.tokenizer, progress=progress)
    if config.strategy == "loss":
        return prepare_loss(run.src, pool.eligible, scorer, run.out / ITEM_LOSSES, fmt=config.example,
                            max_length=config.loss_length(), batch_size=config.loss_batch_size,
                            band=config.loss_band, progress=progress)
    if config.strategy == "less":
        return prepare_less(run.src, pool.eligible, scorer, run.out / ITEM_GRADIENTS, _less_request(run),
                            progress=progress)
    return prepare_diversity(run.src, pool.eligible, config.diversity_stratify, run.out / EMBEDDINGS,
                             progress=progress)


def _less_request(run: SelectRun) -> LessRequest:
    from .item_gradients import GradientSettings

    c = run.config
    settings = GradientSettings(c.less_params, c.less_lora_rank, c.less_layers, c.less_dim, c.less_seed, c.less_length())
    return LessRequest(settings, c.less_batch_size, c.example, c.less_target, c.less_target_file, c.less_weak_share,
                       c.less_weak_accuracy, run.index, run.accuracy)


def _pool_counts(summary: dict[str, Any]) -> str:
    """The pool section's counts in words: why nothing is left."""
    words = [f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)]
    for key in ("only_skill", "difficulty"):
        if isinstance(summary.get(key), dict):
            got = summary[key].get("items", summary[key].get("in_range"))
            words.insert(-1, f"{key.replace('_', ' ')} {got}")
    return ", ".join(words)


def _baseline_report(run: SelectRun, baseline: Baseline | None) -> dict[str, Any] | None:
    """The report's ``strategy_detail``: what a baseline did (None for the skill strategies)."""
    if baseline is None:
        return None
    ids = run.rows.column("id").to_pylist()
    position = {int(item): k for k, item in enumerate(run.items.tolist())}
    return baseline.report(run.pool.eligible, run.items, lambda item: ids[position[item]])


def _draw(run: SelectRun, baseline: Baseline | None, progress: bool) -> None:
    """Each part of the budget drawn by the strategy, from one generator seeded by ``config.seed``."""
    from ..progress import StageProgress

    config, pool = run.config, run.pool
    rng = np.random.default_rng(config.seed)
    per_leaf = config.correct_portion is not None and config.correct_portion_scope == "leaf"
    if per_leaf:
        assert run.index is not None and pool.solved is not None and config.correct_portion is not None
        run.index, balance = balance_leaves(run.index, pool.solved, config.correct_portion, rng)
        pool.summary["balanced_per_leaf"] = balance
    # The forced projection takes its solved share itself; a per-leaf balance has taken it already.
    portion = None if per_leaf or config.strategy == "forced" else config.correct_portion
    budget = baseline.budget(pool.eligible, config.budget) if baseline is not None else config.budget
    parts = split_budget(pool.eligible, budget, pool.solved, portion)
    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"selecting ({config.strategy})", total=budget)

        def advance(k: int) -> None:
            bar.advance(task, k)

        run.drawn = [_draw_part(run, part, rng, advance, baseline) for part in parts]
    run.items = np.array([i for part in run.drawn for i in part.draw.items], dtype=np.int64)
    run.leaves = np.array([lf for part in run.drawn for lf in part.draw.leaves], dtype=np.int64)
    run.messages = shortfall_messages(run.drawn, config, pool.summary)
    for m in run.messages:
        log.warning(m)


def _draw_part(run: SelectRun, part: BudgetPart, rng: np.random.Generator, advance: Callable[[int], None],
               baseline: Baseline | None) -> DrawnPart:
    config, accept = run.config, run.length_check
    if part.budget == 0:
        return DrawnPart(part.name, Draw(), 0)
    if baseline is not None:
        draw = baseline.draw(part.eligible, part.budget, rng, accept=accept, progress=advance, part=part.name)
    elif config.strategy in ("random", "difficulty"):
        draw = draw_random(part.eligible, part.budget, rng, accept=accept, progress=advance)
    elif config.strategy == "forced":
        assert run.index is not None and run.weights is not None
        draw = draw_forced(run.index, run.weights, part.budget, solved=run.pool.solved,
                           correct_portion=config.correct_portion, accept=accept, progress=advance)
    else:
        assert run.index is not None and run.weights is not None
        index = run.index.restrict(part.eligible) if part.name != "all" else run.index
        draw_leaves = draw_skill if config.strategy == "skill" else draw_quota
        draw = draw_leaves(index, run.weights, part.budget, rng, accept=accept, progress=advance)
    return DrawnPart(part.name, draw, part.budget)


def _write_selection(run: SelectRun, baseline: Baseline | None) -> None:
    """``selection.parquet``: the selected rows in draw order, with what the draw knows of each."""
    run.out.mkdir(parents=True, exist_ok=True)
    rows = take_rows(run.src, run.items)
    columns = _draw_columns(run)
    if isinstance(baseline, LossSelection):
        columns["student_loss"] = pa.array(baseline.losses[run.items], pa.float64())
    if isinstance(baseline, LessSelection):
        columns["less_score"] = pa.array(baseline.scores[run.items], pa.float64())
    for name, values in columns.items():
        if name in rows.column_names:
            rows = rows.drop_columns([name])
        rows = rows.append_column(name, values)
    write_parquet(run.out / SELECTION, rows)
    run.rows = rows


def _draw_columns(run: SelectRun) -> dict[str, pa.Array]:
    """The leaf each item was drawn for, its draw order, and where known: solved, token count."""
    items = run.items
    leaf_names = [CHAIN_SEP.join(k) for k in run.index.keys] if run.index is not None else []
    columns = {
        "selected_leaf": pa.array([leaf_names[lf] if lf >= 0 else None for lf in run.leaves.tolist()], pa.string()),
        "draw_order": pa.array(np.arange(len(items), dtype=np.int64)),
    }
    solved = run.pool.solved
    if solved is not None:
        s = solved[items] if len(items) else np.array([], dtype=np.int8)
        columns["student_solved"] = pa.array([None if v < 0 else bool(v) for v in s.tolist()], pa.bool_())
    if run.length_check is not None:
        columns["n_tokens"] = pa.array([run.length_check.lengths.get(int(i)) for i in items], pa.int64())
    return columns


def _write_report(run: SelectRun, report: dict[str, Any], plot: bool) -> None:
    write_json(run.out / REPORT, report)
    write_text(run.out / LEAF_TABLE, leaf_csv(report["leaf_table"]))
    if plot:
        plot_distribution(report["leaf_table"], run.out / PLOT, title=f"{run.config.strategy}: {report['selected']} items")


def _finish(run: SelectRun, report: dict[str, Any], started: float) -> SelectResult:
    wall = time.perf_counter() - started
    write_manifest(
        run.out, config=run.config_json, inputs=run.inputs, wall_time_s=round(wall, 3),
        counts={"selected": report["selected"], "budget": run.config.budget, "eligible": run.pool.summary["eligible"]},
    )
    of = "" if report.get("budget_ignored") else f" of {run.config.budget}"
    log.info("selected %d%s (%s) in %.2fs", report["selected"], of, report["stop_reason"], wall)
    return SelectResult(run.out, report["selected"], run.config.budget, report)
