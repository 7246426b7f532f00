"""The recipe: one YAML file describing the whole pipeline, validated with pydantic.

Each section is the config model of its stage (``IngestConfig``, ``AnnotateConfig``,
``ProfileConfig``, ``SelectConfig``, ``FormatConfig``, ``TrainConfig``,
``EvaluateConfig``), so a recipe key means exactly what the stage's own CLI option
means. Unknown keys are errors that name the key. The student model is given once
(``student``) and filled into profiling, training and evaluation.

Only config modules are imported here, never stage code: loading a recipe does not
import torch, transformers or TRL.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..attribution.config import AnnotateConfig
from ..config_types import BOOL_FOR_NUMBER, bools_read_as_numbers
from ..corpus.config import IngestConfig
from ..corpus.presets import PRESETS
from ..demo.attribution_config import AttributionSource, source_annotate
from ..demo.student_config import StudentConfig
from ..errors import ConfigError
from ..evaluate.config import EvaluateConfig
from ..format.config import FormatConfig
from ..generate.config import GenerationConfig
from ..keyvalue import parse_yaml_value, split_key_value
from ..llm.base import BackendConfig
from ..profile.config import ProfileConfig
from ..report.config import ReportConfig
from ..select.config import SelectConfig
from ..textutil import check_safe_name
from ..train.config import TrainConfig
from .loop_config import LoopConfig
from .plan_config import PlanSettings

DEMO_STUDENT = "demo:student"  # placeholder the pipeline replaces by the built demo student
DEMO_EVAL = "demo_eval"  # the benchmark name of the demo's own held-out set


class DemoSection(BaseModel):
    """The demo world: a generated corpus with true skills, a held-out set, a tiny student."""

    model_config = ConfigDict(extra="forbid")

    pool_size: int = Field(3000, ge=10, description="Generated training-pool problems.")
    pool_weak_weight: float = Field(
        1.0, gt=0, description="A weak leaf's share of the pool relative to a strong one: below 1, the skills the "
        "student rarely saw are rare in the teacher corpus too (as in real corpora); 1 is a uniform pool.")
    eval_per_leaf: int = Field(20, ge=1, description="Held-out problems per leaf skill.")
    seed: int = 0
    student: StudentConfig = Field(default_factory=StudentConfig)
    attribution: AttributionSource = Field(
        "embedding", description="Where the recipe's skills come from: embedding (the offline attributor), "
        "seed-labels (classifiers learnt from the true skills of seed_label_share of the pool) or true (the "
        "generator's skills). Set, it replaces the annotate section's backend; `skilldistill demo` adds "
        "skill-plain under each other source.")
    seed_label_share: float = Field(0.1, gt=0, le=1, description="seed-labels: the share of the pool whose true "
                                    "skills stand in for hand labels (drawn with the demo's seed).")


    @field_validator("attribution", mode="before")
    @classmethod
    def _true_unquoted(cls, v: Any) -> Any:
        return source_name(v)


def source_name(v: Any) -> Any:
    """``attribution: true`` unquoted is YAML's boolean: the source named ``true``."""
    return "true" if v is True else v


# Demo settings that change no generated file: left out of the corpus and demo stages' fingerprints.
DEMO_ATTRIBUTION_FIELDS = {"attribution", "seed_label_share"}


class ArmConfig(BaseModel):
    """One comparison arm: overrides of the recipe's select/format sections."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        return check_safe_name(v, "arm name")

    name: str = Field(..., description="Arm name: a folder name under select/, format/, train/, evaluate/.")
    corpus: IngestConfig | None = Field(
        None, description="The arm's own pool (absent: the recipe's): an ingest section, or the name of a preset "
        "whose Hugging Face dataset is the source (`corpus: limo`). It is ingested, decontaminated with the "
        "recipe's corpus settings unless it sets its own, and attributed with the recipe's tree and annotate "
        "section under pools/; the arm selects from it with the recipe's profile.")
    annotate: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the recipe's annotate section: the arm's pool (its own, or "
        "the recipe's) attributed so, under pools/; on the recipe's pool, the recipe's profile is rolled up by "
        "these chains (no second generation pass).")
    select: dict[str, Any] = Field(default_factory=dict)
    format: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    rounds: int | None = Field(None, ge=1, le=100, description="Closed-loop rounds of this arm (default: the "
                               "recipe's rounds); see skilldistill.orchestration.closed_loop.")
    loop: dict[str, Any] = Field(default_factory=dict, description="Overrides of the recipe's loop section.")

    @field_validator("corpus", mode="before")
    @classmethod
    def _preset_source(cls, v: Any) -> Any:
        """``corpus: limo`` or ``{preset: limo}`` without a source: the preset's Hugging Face dataset."""
        return preset_corpus(v)


def preset_corpus(v: Any) -> Any:
    """A corpus section given as a preset name, or as a preset without a source, with the preset's
    Hugging Face dataset as its source (anything else unchanged, for validation to judge)."""
    if isinstance(v, str):
        v = {"preset": v}
    if isinstance(v, dict) and "source" not in v and isinstance(v.get("preset"), str):
        preset = PRESETS.get(v["preset"])
        if preset is None:
            raise ValueError(f"unknown preset {v['preset']!r}; presets: {', '.join(sorted(PRESETS))}")
        if preset.hf_id is None:
            raise ValueError(f"preset {v['preset']!r} names no dataset: give corpus.source")
        v = {**v, "source": preset.hf_id}
    return v


class EvaluateSection(EvaluateConfig):
    """Evaluation settings plus how to sample (GenerationConfig fields but the backend)."""

    generation: dict[str, Any] = Field(default_factory=dict, description="Overrides of profile.generation for evaluation.")
    base: bool = Field(True, description="Also evaluate the untrained student (arm 'base').")


class LauncherSection(BaseModel):
    """How the train stage runs: in this process, or under ``accelerate launch``."""

    model_config = ConfigDict(extra="forbid")

    accelerate_config: str | None = Field(
        None, description="accelerate config file (e.g. recipes/accelerate/zero3.yaml): train in a subprocess "
        "`accelerate launch --config_file ... -m skilldistill.train`; null trains in this process.")
    extra_args: list[str] = Field(default_factory=list, description="More `accelerate launch` arguments.")


class Recipe(BaseModel):
    """The whole pipeline. See recipes/*.yaml and docs/run.md."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Run name (default run folder: runs/<name>).")
    run_dir: str | None = Field(None, description="Default: runs/<name>.")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="Each arm is run once per seed.")
    jobs: int = Field(1, ge=1, le=64, description="Arm runs (select -> format -> train -> evaluate of one arm and "
                      "seed) going at once, each in its own worker process. CPU: one per core, with threads: 1.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads of every process of the run (None: "
                                "torch's default in this process, the cores shared out among arm workers).")
    demo: DemoSection | None = None
    corpus: IngestConfig | None = Field(None, description="Where the pool comes from (absent: the demo generates it).")
    tree: str = Field("math", description="Skill tree file or bundled name.")
    on_duplicate: Literal["merge", "rename", "error"] = Field(
        "merge", description="Siblings with the same name in the tree file (EvalTree has 15): merge them (the "
        "authors' code does, in effect), rename the later ones ' (2)', or refuse the file.")
    student: BackendConfig = Field(default_factory=lambda: BackendConfig(model=DEMO_STUDENT))
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    profile: ProfileConfig
    select: SelectConfig = Field(default_factory=SelectConfig)
    format: FormatConfig = Field(default_factory=FormatConfig)
    arms: list[ArmConfig] = Field(..., min_length=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    rounds: int = Field(1, ge=1, le=100, description="Closed-loop rounds of every arm (1: profile once, select "
                        "once); an arm's own rounds wins. See skilldistill.orchestration.closed_loop and docs/closed_loop.md.")
    loop: LoopConfig = Field(default_factory=LoopConfig, description="How closed-loop rounds split the budget, "
                             "train and re-profile.")
    launcher: LauncherSection = Field(default_factory=LauncherSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    report: ReportConfig = Field(default_factory=ReportConfig)
    plan: PlanSettings = Field(default_factory=PlanSettings, description="Throughputs and estimation settings of "
                               "`skilldistill plan` (cost preflight); not part of any stage's fingerprint.")

    @model_validator(mode="before")
    @classmethod
    def _fill_student(cls, data: Any) -> Any:
        """Put the one student into profile.generation.backend before validation."""
        if not isinstance(data, dict):
            return data
        data = copy.deepcopy(data)
        student = data.get("student") or {"model": DEMO_STUDENT}
        profile = data.setdefault("profile", {})
        select = data.get("select") if isinstance(data.get("select"), dict) else {}
        if isinstance(profile, dict) and isinstance(profile.get("adaptive"), dict):
            # adaptive profiling aims at the selection the recipe makes: its settings unless given
            for key in ("temperature", "w_max", "accuracy"):
                if key in select:
                    profile["adaptive"].setdefault(key, select[key])
        if isinstance(profile, dict):
            gen = profile.setdefault("generation", {})
            if isinstance(gen, dict):
                gen.setdefault("backend", student)
        demo = data.get("demo")
        source = source_name(demo.get("attribution")) if isinstance(demo, dict) else None
        if isinstance(source, str) and isinstance(data.get("annotate", {}), dict):
            try:  # the demo's attribution source, when given, is the annotate section's backend
                data["annotate"] = deep_merge(data.get("annotate") or {}, source_annotate(source))
            except ValueError:
                pass  # an unknown source: named by the demo section's own validation
        return data

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.corpus is None and self.demo is None:
            raise ValueError("a recipe needs a 'corpus' section (or a 'demo' section that generates one)")
        self._check_arm_names()
        if self.student.model == DEMO_STUDENT and self.demo is None:
            raise ValueError("'student' is required unless the recipe has a 'demo' section")
        self._check_report_arms()
        self._check_arm_overrides()
        self._check_adaptive_profiling()
        self._check_arm_corpora()
        try:  # evaluate.generation's overrides, checked now rather than when evaluation starts
            self.generation_for_eval(self.student.model)
        except ValidationError as e:
            err = e.errors()[0]
            raise ValueError(f"evaluate.generation.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
        for name in self.evaluate.benchmarks:
            check_safe_name(name, "benchmark name")
        if self.demo is not None and DEMO_EVAL in self.evaluate.files:
            raise ValueError(f"evaluate.files.{DEMO_EVAL}: {DEMO_EVAL} is the demo's own held-out set "
                             "(demo/eval.parquet); give your own file another benchmark name")
        return self

    def _check_arm_overrides(self) -> None:
        """Arm overrides must be valid stage configs, found now rather than when the arm runs;
        an invalid one is named with its arm (``arms.1 (skill-plain).select.budget``)."""
        for i, arm in enumerate(self.arms):
            # format first: the loss strategy's select settings take the arm's format
            checks = (("annotate", lambda arm=arm: self.arm_annotate(arm)),
                      ("format", lambda arm=arm: self.arm_format(arm)),
                      ("select", lambda arm=arm: self.arm_select(arm, self.seeds[0])),
                      ("train", lambda arm=arm: self.arm_train(arm, self.seeds[0], self.student.model)),
                      ("loop", lambda arm=arm: self.arm_loop(arm)))
            for part, check in checks:
                try:
                    check()
                except ValidationError as e:
                    err = e.errors()[0]
                    loc = "".join(f".{p}" for p in err["loc"])  # none for a whole-section check
                    raise ValueError(f"arms.{i} ({arm.name}).{part}{loc}: {err['msg']}") from None
            if self.arm_rounds(arm) > 1:
                try:
                    self.arm_loop(arm).round_budgets(self.arm_select(arm, self.seeds[0]).budget, self.arm_rounds(arm))
                except ValueError as e:
                    raise ValueError(f"arms.{i} ({arm.name}): {e}") from None

    def _check_adaptive_profiling(self) -> None:
        """Adaptive profiling profiles part of the pool: a selection that reads every item's
        correctness (correct_portion) cannot run on it."""
        if self.profile.adaptive is None:
            return
        for arm in self.arms:
            if self.arm_select(arm, self.seeds[0]).correct_portion is not None:
                raise ValueError(f"profile.adaptive: arm {arm.name!r} sets select.correct_portion, which needs the "
                                 "correctness of every item it draws from; adaptive profiling grades only the items "
                                 "it needs for the leaf accuracies (remove profile.adaptive, or correct_portion)")

    def _check_arm_corpora(self) -> None:
        """An arm with its own pool (or attribution) selects from it once: closed-loop rounds re-profile the
        recipe's attributed pool; its own corpus has no per-item profile (correct_portion)."""
        for i, arm in enumerate(self.arms):
            if arm.corpus is None and not arm.annotate:
                continue
            where = f"arms.{i} ({arm.name})"
            if self.arm_rounds(arm) > 1:
                own = "corpus" if arm.corpus is not None else "annotate section"
                raise ValueError(f"{where}.rounds: an arm with its own {own} runs one round (closed-loop rounds "
                                 "re-profile the student on the recipe's attributed pool)")
            if arm.corpus is not None and self.arm_select(arm, self.seeds[0]).correct_portion is not None:
                raise ValueError(f"{where}.select.correct_portion: needs the student's answer on every item of the "
                                 "arm's pool, and the profile covers the recipe's pool only")

    def _check_arm_names(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if "base" in names:
            raise ValueError("'base' is reserved for the untrained student")

    def _check_report_arms(self) -> None:
        """The report section names arms the recipe runs (its one-shot arm runs one round)."""
        names = [a.name for a in self.arms]
        if self.report.baseline and self.report.baseline not in names + ["base"]:
            raise ValueError(f"report.baseline {self.report.baseline!r} is not an arm ({names})")
        if self.report.method and self.report.method not in names:
            raise ValueError(f"report.method {self.report.method!r} is not an arm ({names})")
        if self.report.one_shot and self.report.one_shot not in names:
            raise ValueError(f"report.one_shot {self.report.one_shot!r} is not an arm ({names})")
        if self.report.one_shot and self.arm_rounds(self.arm(self.report.one_shot)) > 1:
            raise ValueError(f"report.one_shot {self.report.one_shot!r} runs more than one round")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return check_safe_name(v, "recipe name")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v

    # -- derived per-stage configs ------------------------------------------------
    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    @property
    def baseline(self) -> str:
        return self.report.baseline or self.arms[0].name

    def arm(self, name: str) -> ArmConfig:
        return next(a for a in self.arms if a.name == name)

    def arm_rounds(self, arm: ArmConfig) -> int:
        return arm.rounds if arm.rounds is not None else self.rounds

    def arm_loop(self, arm: ArmConfig) -> LoopConfig:
        return LoopConfig.model_validate(deep_merge(self.loop.model_dump(), arm.loop))

    @property
    def one_shot(self) -> str | None:
        """The one-round arm closed-loop arms are compared against (None: no closed-loop arm, or none fits)."""
        if not any(self.arm_rounds(a) > 1 for a in self.arms):
            return None
        if self.report.one_shot:
            return self.report.one_shot
        method = self.report.method or self.arms[-1].name
        return method if self.arm_rounds(self.arm(method)) == 1 else None

    def arm_corpus(self, arm: ArmConfig) -> IngestConfig | None:
        """The arm's own pool (None: the recipe's), decontaminated as the recipe's corpus is unless the
        arm's section sets its own ``exclude`` or ``decontamination``."""
        if arm.corpus is None:
            return None
        if self.corpus is None:
            return arm.corpus
        inherited = {k: getattr(self.corpus, k) for k in ("exclude", "decontamination")
                     if k not in arm.corpus.model_fields_set}
        return arm.corpus.model_copy(update=copy.deepcopy(inherited))

    def arm_annotate(self, arm: ArmConfig) -> AnnotateConfig | None:
        """The arm's own attribution settings (None: it has no annotate overrides)."""
        if not arm.annotate:
            return None
        return AnnotateConfig.model_validate(deep_merge(self.annotate.model_dump(), arm.annotate))

    def arm_select(self, arm: ArmConfig, seed: int) -> SelectConfig:
        """The arm's selection settings. The loss and less strategies score the examples the arm trains on
        (its format) with the recipe's student unless ``loss_model`` / ``less_model`` names another model
        (``demo:student`` is resolved when the stage runs, as for training)."""
        cfg = SelectConfig.model_validate(deep_merge(self.select.model_dump(), arm.select) | {"seed": seed})
        if cfg.strategy not in ("loss", "less"):
            return cfg
        update: dict[str, Any] = {"example": self.arm_format(arm).example_format()}
        if cfg.strategy == "loss" and cfg.loss_model is None:
            update |= {"loss_model": self.student.model, "loss_gguf_file": self.student.gguf_file}
        if cfg.strategy == "less" and cfg.less_model is None:
            update |= {"less_model": self.student.model, "less_gguf_file": self.student.gguf_file}
        return cfg.model_copy(update=update)

    def arm_format(self, arm: ArmConfig) -> FormatConfig:
        return FormatConfig.model_validate(deep_merge(self.format.model_dump(), arm.format))

    def arm_train(self, arm: ArmConfig, seed: int, model: str) -> TrainConfig:
        return TrainConfig.model_validate(deep_merge(self.train.model_dump(), arm.train) | {"seed": seed, "model": model})

    def generation_for_eval(self, model: str) -> GenerationConfig:
        base = self.profile.generation.model_dump()
        base["backend"] = self.student.model_dump() | {"model": model}
        return GenerationConfig.model_validate(deep_merge(base, self.evaluate.generation))

    def evaluate_config(self) -> EvaluateConfig:
        return EvaluateConfig.model_validate(self.evaluate.model_dump(exclude={"generation", "base"}))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (override wins); neither input is changed."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` (value parsed as YAML; list indices as numbers: ``arms.0.name=x``; ``+``
    appends to a list: ``arms.+={name: x, select: {strategy: skill}}``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, raw = split_key_value(item, "override")
        set_path(data, key, parse_yaml_value(raw, option="override", key=repr(item)))
    return data


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``value`` at the dotted ``key`` of nested dicts and lists (``+`` appends to a list)."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if part == "+" and last:
                node.append(value)
                continue
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key!r}: {part!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])} is not a section")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections")
    data = apply_overrides(data, overrides or [])
    recipe = validate_recipe(data, source=str(path))
    return _resolve_recipe_paths(recipe, path)


def _resolve_recipe_paths(recipe: Recipe, path: Path) -> Recipe:
    """A relative accelerate config is relative to the recipe's folder (else to the
    working directory, where older recipes expected it)."""
    cfg = recipe.launcher.accelerate_config
    if cfg is None or Path(cfg).is_absolute():
        return recipe
    beside = (path.parent / cfg).resolve()
    if beside.exists():
        launcher = recipe.launcher.model_copy(update={"accelerate_config": str(beside)})
        return recipe.model_copy(update={"launcher": launcher})
    if Path(cfg).exists():
        return recipe
    raise ConfigError(f"{path}: launcher.accelerate_config {cfg!r} is neither beside the recipe ({beside}) "
                      "nor in the working directory")


def validate_recipe(data: dict[str, Any], *, source: str = "recipe") -> Recipe:
    """``data`` as a Recipe; a ConfigError listing every invalid key (an unknown one as such)."""
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"]
            if err["type"] == "value_error" and not err["loc"]:  # a whole-recipe check names its own keys
                lines.append(msg.removeprefix("Value error, "))
                continue
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif isinstance(err.get("input"), bool):  # false read as 0 fails a bound: say what was given
                msg += f" (got the boolean {str(err['input']).lower()})"
            lines.append(f"{loc}: {msg}")
        raise ConfigError(f"{source}: invalid recipe:\n  " + "\n  ".join(lines)) from None
    bad = recipe_bools_read_as_numbers(data, recipe)
    if bad:
        raise ConfigError(f"{source}: invalid recipe:\n  " + "\n  ".join(f"{k}: {BOOL_FOR_NUMBER}" for k in bad))
    return recipe


def recipe_bools_read_as_numbers(data: dict[str, Any], recipe: Recipe) -> list[str]:
    """The keys of ``data`` (a recipe as read) where a boolean stands for a number: in the
    sections, and in the overrides of the arms and of evaluation, validated when they apply."""
    bad = bools_read_as_numbers(data, recipe)
    seed = recipe.seeds[0]
    for i, arm in enumerate(recipe.arms):
        for part, cfg in (("select", recipe.arm_select(arm, seed)), ("format", recipe.arm_format(arm)),
                          ("train", recipe.arm_train(arm, seed, recipe.student.model)), ("loop", recipe.arm_loop(arm))):
            bad += bools_read_as_numbers(getattr(arm, part), cfg, ("arms", i, part))
        annotate = recipe.arm_annotate(arm)
        if annotate is not None:
            bad += bools_read_as_numbers(arm.annotate, annotate, ("arms", i, "annotate"))
    bad += bools_read_as_numbers(recipe.evaluate.generation, recipe.generation_for_eval(recipe.student.model),
                                 ("evaluate", "generation"))
    return bad


__all__ = ["DEMO_EVAL", "DEMO_STUDENT", "ArmConfig", "DemoSection", "EvaluateSection", "LauncherSection",
           "Recipe", "apply_overrides", "deep_merge", "load_recipe", "recipe_bools_read_as_numbers",
           "validate_recipe"]
