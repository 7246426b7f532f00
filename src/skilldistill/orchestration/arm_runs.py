"""One arm run of a recipe (select -> format -> train -> evaluate of one arm and seed, or its
closed-loop rounds), and the base student's evaluation.

These are the tasks a parallel run hands to its arm workers
(:mod:`skilldistill.orchestration.arm_worker`); a serial run calls them in its own process.
"""

from __future__ import annotations

from typing import Any

from .arm_corpora import corpus_of_arm
from .launcher import train_stage
from .loop_rounds import run_rounds
from .recipe import ArmConfig
from .stage_calls import evaluate_stage, format_stage, select_stage
from .stage_runner import StageRunner, UpstreamFingerprints


def generation_json(gen: Any) -> dict[str, Any]:
    """A GenerationConfig as fingerprint data, without the backend's API key."""
    d = gen.model_dump(mode="json")
    d.get("backend", {}).pop("api_key", None)
    return d


def evaluate_model(run: StageRunner, key: str, model: str, fp_model: str, fp_demo: str | None, eval_cfg: Any) -> None:
    """The evaluation stage ``key`` of ``model`` (fingerprinted on the model's stage and the demo's)."""
    gen = run.recipe.generation_for_eval(model)
    run.step(key, "evaluate", {"eval": eval_cfg.model_dump(mode="json"), "gen": generation_json(gen)},
             [fp_model, fp_demo or ""], lambda clean: evaluate_stage(run, key, gen, eval_cfg, clean),
             done_marker="results.json")


def evaluate_base(run: StageRunner, upstream: UpstreamFingerprints, eval_cfg: Any) -> None:
    """The untrained student's evaluation (arm ``base``)."""
    evaluate_model(run, "evaluate/base", run.student_model(), upstream.student, upstream.demo, eval_cfg)


def run_arm(run: StageRunner, arm: ArmConfig, seed: int, upstream: UpstreamFingerprints, eval_cfg: Any) -> None:
    """One arm run: select -> format -> train -> evaluate (or the arm's closed-loop rounds, then evaluate)."""
    r = run.recipe
    sub = f"{arm.name}/seed{seed}"
    sel_cfg = arm_select_config(run, arm, seed)
    if r.arm_rounds(arm) > 1:
        fp_train, final = run_rounds(run, arm, seed, sel_cfg, arm_format_config(run, arm), upstream)
        evaluate_model(run, f"evaluate/{sub}", final, fp_train, upstream.demo, eval_cfg)
        return
    fp_sel = select_arm(run, arm, sub, sel_cfg, upstream)
    fmt_cfg = arm_format_config(run, arm)
    fp_fmt = run.step(f"format/{sub}", "format", fmt_cfg.model_dump(mode="json"), [fp_sel, upstream.student],
                      lambda clean: format_stage(run, f"format/{sub}", fmt_cfg,
                                                 run.path("select", sub, "selection.parquet"), clean))
    train_cfg = r.arm_train(arm, seed, run.student_model())
    fp_train = run.step(f"train/{sub}", "train", train_cfg.fingerprint_dict(), [fp_fmt, upstream.student],
                        lambda clean: train_stage(run, f"format/{sub}", f"train/{sub}", train_cfg, clean, label=sub))
    final = str(run.path("train", sub, "final").resolve())
    evaluate_model(run, f"evaluate/{sub}", final, fp_train, upstream.demo, eval_cfg)


def select_arm(run: StageRunner, arm: ArmConfig, sub: str, sel_cfg: Any, upstream: UpstreamFingerprints) -> str:
    """The arm's selection: from the recipe's pool by its profile, or from the arm's pool (its own corpus, by
    the recipe's profile; the recipe's corpus attributed otherwise, by the profile rolled up so)."""
    profile = run.path("profile", "skill_profile.json")
    corpus = corpus_of_arm(run.recipe, arm)
    if corpus is None:
        return run.step(f"select/{sub}", "select", sel_cfg.fingerprint_dict(), [upstream.annotate, upstream.profile],
                        lambda clean: select_stage(run, f"select/{sub}", sel_cfg, profile,
                                                   run.path("profile", "profile.parquet"), clean))
    skills, profiled = corpus.skills_path(run.run_dir), corpus.profile_dir(run.run_dir)
    item_profile = profiled / "profile.parquet" if corpus.config is None else None  # an own corpus was not profiled
    return run.step(f"select/{sub}", "select", sel_cfg.fingerprint_dict(), [upstream.pools[corpus.name], upstream.profile],
                    lambda clean: select_stage(run, f"select/{sub}", sel_cfg, profiled / "skill_profile.json",
                                               item_profile, clean, skills=skills))


def arm_select_config(run: StageRunner, arm: ArmConfig, seed: int) -> Any:
    """The arm's selection settings; a token cap measures lengths as the arm trains on them."""
    r = run.recipe
    sel_cfg = r.arm_select(arm, seed)
    if sel_cfg.max_tokens is not None:
        # Lengths are measured in the arm's own format (a skill plan adds tokens) with the
        # student's tokenizer, so the items kept are the ones that arm trains on in full.
        update: dict[str, Any] = {"example": r.arm_format(arm).example_format()}
        if sel_cfg.tokenizer is None:
            update["tokenizer"] = run.student_model()
        sel_cfg = sel_cfg.model_copy(update=update)
    return sel_cfg


def arm_format_config(run: StageRunner, arm: ArmConfig) -> Any:
    """The arm's format settings, with the student's tokenizer unless the recipe names one."""
    fmt_cfg = run.recipe.arm_format(arm)
    if fmt_cfg.tokenizer is None:
        fmt_cfg = fmt_cfg.model_copy(update={"tokenizer": run.student_model()})
    return fmt_cfg


__all__ = ["arm_format_config", "arm_select_config", "evaluate_base", "evaluate_model", "generation_json", "run_arm",
           "select_arm"]
