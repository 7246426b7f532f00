"""``skilldistill profile``: profile the student per skill (what it gets right, node by node).

    skilldistill profile runs/x/annotate/skills.parquet -o runs/x/profile \\
        --model Qwen/Qwen3-4B --backend vllm --max-new-tokens 8192 --tree skill_mix.json

    from skilldistill.profile import ProfileConfig, run_profile
    result = run_profile("skills.parquet", "runs/x/profile", ProfileConfig(generation=...), tree=tree)

The student answers every pool problem (``n`` samples each, see :mod:`skilldistill.generate`),
each answer is graded against the gold answer (:mod:`skilldistill.grading`), and the
counts are rolled up the skill tree: a node's counts cover every item whose chains pass
through it (an item counts once per node, however many of its chains pass there). Each
node also gets an accuracy smoothed toward its parent's, with a 95% interval
(:mod:`.accuracy`).

One job per module:

- :mod:`.config`: :class:`ProfileConfig` (light).
- :mod:`.pool`: read and check the annotated pool; the tree of its chains.
- :mod:`.stratify`: the stratified sample by leaf (``--sample``).
- :mod:`.adaptive`: adaptive profiling in rounds until the selection distribution is stable (``adaptive``).
- :mod:`.accuracy`: per-node counts, Beta smoothing toward the parent, intervals.
- :mod:`.plot`: ``skill_profile.png``.
- :mod:`.stage`: :func:`run_profile`, the stage function.

Artifacts (in ``out_dir``): ``generations.jsonl`` / ``generations.parquet`` (samples),
``grades.parquet`` (per sample), ``profile.parquet`` (per item), ``skill_profile.json``
(per node), ``skill_profile.png`` (per-leaf plot), ``sample.json`` (with ``sample``), ``adaptive.json`` (with ``adaptive``),
``manifest.json``. See docs/profile.md.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CHAIN_SEP": "skilldistill.tree",
    "ProfileConfig": ".config",
    "AdaptiveConfig": ".config",
    "AdaptivePlan": ".adaptive",
    "selection_distribution": ".adaptive",
    "total_variation": ".adaptive",
    "load_pool": ".pool",
    "has_gold": ".pool",
    "tree_from_chains": ".pool",
    "NO_SKILL": ".stratify",
    "stratified_sample": ".stratify",
    "beta_posterior": ".accuracy",
    "beta_ppf": ".accuracy",
    "betainc": ".accuracy",
    "skill_stats": ".accuracy",
    "plot_skill_profile": ".plot",
    "GRADES_PARQUET": ".stage",
    "PROFILE_PARQUET": ".stage",
    "SAMPLE_JSON": ".stage",
    "ADAPTIVE_JSON": ".stage",
    "item_rows": ".stage",
    "SKILL_PROFILE_JSON": ".stage",
    "SKILL_PROFILE_PNG": ".stage",
    "ProfileResult": ".stage",
    "run_profile": ".stage",
})
