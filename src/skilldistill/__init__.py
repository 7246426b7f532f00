"""skilldistill: skill-aware data selection and fine-tuning for reasoning distillation.

The public API, one function per stage (``run_<stage>``) and the recipe that runs them all::

    import skilldistill as sd

    recipe = sd.load_recipe("recipes/demo-quick.yaml", ["select.budget=128"])
    sd.run_recipe(recipe, run_dir="runs/demo-quick")

    sd.run_select("runs/x/annotate", "runs/x/select/skill", sd.SelectConfig(budget=1000),
                  profile_json="runs/x/profile/skill_profile.json")

Names are imported on first use, so ``import skilldistill`` loads no stage code.
"""

from importlib.metadata import PackageNotFoundError, version

from .lazy import lazy_exports

try:
    __version__ = version("skilldistill")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    # the recipe
    "load_recipe": ".orchestration.recipe",
    "run_recipe": ".orchestration.pipeline",
    "plan_recipe": ".orchestration.plan",
    "Recipe": ".orchestration.recipe",
    # the stages, in the order a recipe runs them
    "run_ingest": ".corpus.stage",
    "run_annotate": ".attribution.stage",
    "run_profile": ".profile.stage",
    "run_select": ".select.stage",
    "run_format": ".format.stage",
    "run_train": ".train.stage",
    "run_evaluate": ".evaluate.stage",
    "run_report": ".report.stage",
    "run_tree_build": ".tree_build.stage",
    # their configs
    "IngestConfig": ".corpus.config",
    "AnnotateConfig": ".attribution.config",
    "ProfileConfig": ".profile.config",
    "SelectConfig": ".select.config",
    "FormatConfig": ".format.config",
    "TrainConfig": ".train.config",
    "EvaluateConfig": ".evaluate.config",
    "ReportConfig": ".report.config",
    "GenerationConfig": ".generate.config",
    # the skill tree
    "SkillTree": ".tree",
})
__all__ = [*__all__, "__version__"]
