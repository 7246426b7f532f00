"""The rounds of a closed-loop arm run (see :mod:`skilldistill.orchestration.closed_loop`):
``rounds`` x (profile -> select -> format -> train), each step a stage of its own under
``rounds/<arm>/seed<k>/round<r>/``. Round 1 selects from the base student's profile;
each later round first profiles the model the round before trained."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tree import SkillTree
from .closed_loop import REPLAY_SELECTION, round_dir, write_replay_selection
from .launcher import train_stage
from .loop_config import LoopConfig
from .recipe import ArmConfig
from .stage_calls import format_stage, profile_stage, select_stage
from .stage_runner import StageRunner, UpstreamFingerprints


@dataclass
class LoopState:
    """What a round hands the next: the model it trained, the profile to select from, the
    selections so far (left out of later profiles and selections) and their fingerprints."""

    model: str
    fp_model: str
    profile_json: Path
    item_profile: Path
    fp_profile: str
    earlier: list[Path] = field(default_factory=list)
    fp_earlier: list[str] = field(default_factory=list)


def run_rounds(run: StageRunner, arm: ArmConfig, seed: int, sel_cfg: Any, fmt_cfg: Any,
               upstream: UpstreamFingerprints) -> tuple[str, str]:
    """Every round of the arm run; returns the last training stage's fingerprint and the
    final model's path."""
    rounds = run.recipe.arm_rounds(arm)
    loop = run.recipe.arm_loop(arm)
    budgets = loop.round_budgets(sel_cfg.budget, rounds)
    state = LoopState(model=run.student_model(), fp_model=upstream.student,
                      profile_json=run.path("profile", "skill_profile.json"),
                      item_profile=run.path("profile", "profile.parquet"), fp_profile=upstream.profile)
    for k in range(1, rounds + 1):
        rd = round_dir(arm.name, seed, k)
        if k > 1:
            profile_round(run, rd, loop, state, upstream)
        cfg = sel_cfg.model_copy(update={"budget": budgets[k - 1],
                                         "exclude_selections": [*sel_cfg.exclude_selections, *map(str, state.earlier)]})
        fp_sel = select_round(run, rd, cfg, state, upstream)
        selection = run.path(rd, "select", "selection.parquet")
        slices = [*state.earlier, selection] if loop.replay else [selection]
        fp_fmt = run.step(f"{rd}/format", "format", {"format": fmt_cfg.model_dump(mode="json"), "slices": len(slices)},
                          [*state.fp_earlier, fp_sel, upstream.student],
                          lambda clean, rd=rd, sl=slices: format_round(run, rd, fmt_cfg, sl, clean))
        train_cfg = run.recipe.arm_train(arm, seed, state.model)
        train_cfg = train_cfg.model_copy(update={"learning_rate": loop.round_learning_rate(train_cfg.learning_rate, k)})
        train_round(run, rd, train_cfg, fp_fmt, state)
        state.earlier.append(selection)
        state.fp_earlier.append(fp_sel)
    return state.fp_model, state.model


def round_profile_config(run: StageRunner, model: str, loop: LoopConfig, earlier: list[Path]) -> Any:
    """The profile settings of a later round: ``model`` on a sample of the items not trained on."""
    cfg = run.profile_config()
    gen = cfg.generation
    backend = gen.backend.model_copy(update={"model": model})
    return cfg.model_copy(update={"generation": gen.model_copy(update={"backend": backend}),
                                  "sample": loop.profile_sample, "sample_seed": loop.profile_sample_seed,
                                  "exclude_selections": [str(p) for p in earlier]})


def profile_round(run: StageRunner, rd: str, loop: LoopConfig, state: LoopState, upstream: UpstreamFingerprints) -> None:
    """Profile the round before's model; later steps of this round select from that profile."""
    prof_cfg = round_profile_config(run, state.model, loop, state.earlier)
    state.fp_profile = run.step(f"{rd}/profile", "profile", prof_cfg.fingerprint_dict(),
                                [upstream.annotate, state.fp_model, *state.fp_earlier],
                                lambda clean: profile_trained_model(run, rd, prof_cfg, clean))
    state.profile_json, state.item_profile = run.path(rd, "profile", "skill_profile.json"), run.path(rd, "profile", "profile.parquet")


def profile_trained_model(run: StageRunner, rd: str, cfg: Any, clean: bool) -> None:
    from ..evaluate import evaluable_model

    gen = cfg.generation  # the model of the round before, merged once if it is a LoRA adapter
    cfg = cfg.model_copy(update={"generation": gen.model_copy(update={
        "backend": gen.backend.model_copy(update={"model": evaluable_model(gen.backend.model)})})})
    tree = SkillTree.resolve(run.recipe.tree, on_duplicate=run.recipe.on_duplicate)
    profile_stage(run, f"{rd}/profile", cfg, tree, clean)


def select_round(run: StageRunner, rd: str, cfg: Any, state: LoopState, upstream: UpstreamFingerprints) -> str:
    """The round's slice of the budget, selected from the latest profile; returns its fingerprint."""
    profile_json, item_profile = state.profile_json, state.item_profile
    return run.step(f"{rd}/select", "select", cfg.fingerprint_dict(),
                    [upstream.annotate, state.fp_profile, *state.fp_earlier],
                    lambda clean: select_stage(run, f"{rd}/select", cfg, profile_json, item_profile, clean))


def format_round(run: StageRunner, rd: str, cfg: Any, slices: list[Path], clean: bool) -> None:
    src = slices[0]
    if len(slices) > 1:  # replay: every slice so far, as one selection file beside the format output
        src = write_replay_selection(slices, run.path(rd, REPLAY_SELECTION))
    format_stage(run, f"{rd}/format", cfg, src, clean)


def train_round(run: StageRunner, rd: str, train_cfg: Any, fp_fmt: str, state: LoopState) -> None:
    """Continue training the round before's model on the round's data; it becomes the model."""
    state.fp_model = run.step(f"{rd}/train", "train", train_cfg.fingerprint_dict(), [fp_fmt, state.fp_model],
                              lambda clean: train_trained_model(run, rd, train_cfg, clean))
    state.model = str(run.path(rd, "train", "final").resolve())


def train_trained_model(run: StageRunner, rd: str, cfg: Any, clean: bool) -> None:
    from ..evaluate import evaluable_model

    # an unmerged LoRA final/ of the round before (merge_lora: false) is merged once first
    train_stage(run, f"{rd}/format", f"{rd}/train", cfg.model_copy(update={"model": evaluable_model(cfg.model)}),
                clean, label=rd)


__all__ = ["LoopState", "round_profile_config", "run_rounds"]
