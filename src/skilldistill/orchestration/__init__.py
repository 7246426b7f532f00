"""The orchestration of a whole run: the recipe, the pipeline that runs its stages in order,
the closed loop, the arm workers of a parallel run, and the cost preflight.

- :mod:`.recipe`: the recipe (one YAML file, each section a stage's config), loading and
  ``--set`` overrides; with the light :mod:`.loop_config` and :mod:`.plan_config`.
- :mod:`.stage_state`, :mod:`.stage_runner`: the state file and the step that skips a stage
  finished with the same fingerprint.
- :mod:`.pipeline`: ``skilldistill run``, the stages in order; :mod:`.stage_calls` (each
  stage's call), :mod:`.launcher` (training in process or under ``accelerate launch``),
  :mod:`.arm_runs` (one arm run), :mod:`.loop_rounds` and :mod:`.closed_loop` (closed-loop
  rounds), :mod:`.summary_tables` (the console summary).
- :mod:`.arm_pool`, :mod:`.arm_worker`: the worker processes of a parallel run.
- :mod:`.plan`, :mod:`.stage_costs`: ``skilldistill plan``.

Names are exported lazily: importing the package imports none of its modules.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ArmConfig": ".recipe",
    "LoopConfig": ".loop_config",
    "Pipeline": ".pipeline",
    "Plan": ".plan",
    "PlanSettings": ".plan_config",
    "Recipe": ".recipe",
    "StageCost": ".stage_costs",
    "UpstreamFingerprints": ".stage_runner",
    "apply_overrides": ".recipe",
    "load_recipe": ".recipe",
    "plan_json": ".plan",
    "plan_recipe": ".plan",
    "run_recipe": ".pipeline",
    "validate_recipe": ".recipe",
})
