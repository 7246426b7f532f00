"""``skilldistill report``: the run folder's arms compared, as Markdown and self-contained HTML.

- :mod:`.config`: the recipe's ``report:`` section and the default target standard error (light);
- :mod:`.run_folder`: reading a run folder (arms, seeds, results, samples, selections, loss, context);
- :mod:`.comparison`: arm against baseline with paired-bootstrap intervals, the benchmark table, the verdict;
- :mod:`.analysis`: per-skill accuracy, weak-leaf gains, selection shares, emphasis against gain,
  samples needed, stage times;
- :mod:`.closed_loop`: the closed-loop arms round by round;
- :mod:`.plots`: the figures; :mod:`.render`: Markdown and HTML;
- :mod:`.stage`: :func:`run_report`, the steps in order.

Names are exported lazily: importing the package (or its ``config``) imports no stage code.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DEFAULT_TARGET_SE": ".config",
    "ReportConfig": ".config",
    "BASE": ".run_folder",
    "ArmRuns": ".run_folder",
    "arm_order": ".run_folder",
    "benchmarks_of": ".run_folder",
    "collect_run": ".run_folder",
    "collect": ".run_folder",  # the old name of collect_run
    "run_context": ".run_folder",
    "benchmark_table": ".comparison",
    "compare": ".comparison",
    "format_pp": ".comparison",
    "mean_std": ".comparison",
    "method_arm": ".comparison",
    "problem_matrices": ".comparison",
    "verdict": ".comparison",
    "emphasis_vs_gain": ".analysis",
    "is_leaf": ".analysis",
    "n_needed": ".analysis",
    "per_skill_table": ".analysis",
    "problems_under": ".analysis",
    "recipe_arm_settings": ".analysis",
    "selection_distributions": ".analysis",
    "stage_times": ".analysis",
    "weak_leaf_set": ".analysis",
    "weak_skill_gains": ".analysis",
    "closed_loop_summary": ".closed_loop",
    "arm_colors": ".plots",
    "plot_emphasis": ".plots",
    "plot_loss": ".plots",
    "plot_per_skill": ".plots",
    "plot_selection": ".plots",
    "md_emphasis": ".render",
    "report_html": ".render",
    "report_markdown": ".render",
    "strip_backend_defaults": ".render",
    "ReportRun": ".stage",
    "build_report": ".stage",
    "run_report": ".stage",
})
