"""The recipe: one YAML file describing the whole pipeline, validated with pydantic.

Each section is the config model of its stage (``IngestConfig``, ``AnnotateConfig``,
``ProfileConfig``, ``SelectConfig``, ``FormatConfig``, ``TrainConfig``,
``EvaluateConfig``), so a recipe key means exactly what the stage's own CLI option
means. Unknown keys are errors that name the key. The student model is given once
(``student``) and filled into profiling, training and evaluation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .annotate import AnnotateConfig
from .closed_loop import LoopConfig
from .corpus import IngestConfig
from .demo.student import StudentConfig
from .errors import ConfigError
from .evaluate import EvaluateConfig
from .format import FormatConfig
from .generate import GenerationConfig
from .llm.base import BackendConfig
from .plan import PlanSettings
from .profile import ProfileConfig
from .select import SelectConfig
from .textutil import check_safe_name
from .train import TrainConfig

DEMO_STUDENT = "demo:student"  # placeholder the pipeline replaces by the built demo student


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


class ArmConfig(BaseModel):
    """One comparison arm: overrides of the recipe's select/format sections."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        return check_safe_name(v, "arm name")

    name: str = Field(..., description="Arm name: a folder name under select/, format/, train/, evaluate/.")
    select: dict[str, Any] = Field(default_factory=dict)
    format: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    rounds: int | None = Field(None, ge=1, le=100, description="Closed-loop rounds of this arm (default: the "
                               "recipe's rounds); see skilldistill.closed_loop.")
    loop: dict[str, Any] = Field(default_factory=dict, description="Overrides of the recipe's loop section.")


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


class ReportSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baseline: str | None = Field(None, description="Arm the deltas are taken against (default: the first arm).")
    method: str | None = Field(None, description="Arm the report's verdict is about (default: the last arm).")
    one_shot: str | None = Field(None, description="One-round arm each closed-loop arm is compared against at the "
                                 "same budget (default: the verdict's arm when it runs one round).")


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
                        "once); an arm's own rounds wins. See skilldistill.closed_loop and docs/closed_loop.md.")
    loop: LoopConfig = Field(default_factory=LoopConfig, description="How closed-loop rounds split the budget, "
                             "train and re-profile.")
    launcher: LauncherSection = Field(default_factory=LauncherSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    report: ReportSection = Field(default_factory=ReportSection)
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
        if isinstance(profile, dict):
            gen = profile.setdefault("generation", {})
            if isinstance(gen, dict):
                gen.setdefault("backend", student)
        return data

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.corpus is None and self.demo is None:
            raise ValueError("a recipe needs a 'corpus' section (or a 'demo' section that generates one)")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if "base" in names:
            raise ValueError("'base' is reserved for the untrained student")
        if self.student.model == DEMO_STUDENT and self.demo is None:
            raise ValueError("'student' is required unless the recipe has a 'demo' section")
        if self.report.baseline and self.report.baseline not in names + ["base"]:
            raise ValueError(f"report.baseline {self.report.baseline!r} is not an arm ({names})")
        if self.report.method and self.report.method not in names:
            raise ValueError(f"report.method {self.report.method!r} is not an arm ({names})")
        if self.report.one_shot and self.report.one_shot not in names:
            raise ValueError(f"report.one_shot {self.report.one_shot!r} is not an arm ({names})")
        if self.report.one_shot and self.arm_rounds(self.arm(self.report.one_shot)) > 1:
            raise ValueError(f"report.one_shot {self.report.one_shot!r} runs more than one round")
        # arm overrides must be valid stage configs, found now rather than when the arm runs
        for arm in self.arms:
            self.arm_select(arm, self.seeds[0])
            self.arm_format(arm)
            self.arm_train(arm, self.seeds[0], self.student.model)
            if self.arm_rounds(arm) > 1:
                self.arm_loop(arm).round_budgets(self.arm_select(arm, self.seeds[0]).budget, self.arm_rounds(arm))
        for name in self.evaluate.benchmarks:
            check_safe_name(name, "benchmark name")
        if self.demo is not None and "demo_eval" in self.evaluate.files:
            raise ValueError("evaluate.files.demo_eval: demo_eval is the demo's own held-out set "
                             "(demo/eval.parquet); give your own file another benchmark name")
        return self

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
        return LoopConfig.model_validate(_merge(self.loop.model_dump(), arm.loop))

    @property
    def one_shot(self) -> str | None:
        """The one-round arm closed-loop arms are compared against (None: no closed-loop arm, or none fits)."""
        if not any(self.arm_rounds(a) > 1 for a in self.arms):
            return None
        if self.report.one_shot:
            return self.report.one_shot
        method = self.report.method or self.arms[-1].name
        return method if self.arm_rounds(self.arm(method)) == 1 else None

    def arm_select(self, arm: ArmConfig, seed: int) -> SelectConfig:
        return SelectConfig.model_validate(_merge(self.select.model_dump(), arm.select) | {"seed": seed})

    def arm_format(self, arm: ArmConfig) -> FormatConfig:
        return FormatConfig.model_validate(_merge(self.format.model_dump(), arm.format))

    def arm_train(self, arm: ArmConfig, seed: int, model: str) -> TrainConfig:
        return TrainConfig.model_validate(_merge(self.train.model_dump(), arm.train) | {"seed": seed, "model": model})

    def generation_for_eval(self, model: str) -> GenerationConfig:
        base = self.profile.generation.model_dump()
        base["backend"] = self.student.model_dump() | {"model": model}
        return GenerationConfig.model_validate(_merge(base, self.evaluate.generation))

    def evaluate_config(self) -> EvaluateConfig:
        return EvaluateConfig.model_validate(self.evaluate.model_dump(exclude={"generation", "base"}))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (override wins)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` (value parsed as YAML; list indices as numbers: ``arms.0.name=x``; ``+``
    appends to a list: ``arms.+={name: x, select: {strategy: skill}}``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
        parts = key.strip().split(".")
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
    return data


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
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{loc}: {msg}")
        raise ConfigError(f"{source}: invalid recipe:\n  " + "\n  ".join(lines)) from None
