"""The selection strategies, one module each (all reproducible from the seed):

- ``random``: uniform without replacement over the eligible pool (the baseline).
- ``skill`` (the paper): a leaf by clipped inverse-accuracy weight, then an unused item of it.
- ``quota`` (``skill-quota``): the same target met by largest-remainder quotas.
- ``forced`` (the authors' ``forced_distribution``): greedy projection onto the target.
- ``difficulty`` (the authors' baseline): uniform over a pass-rate range.
- ``all_items`` (``all``): the whole eligible pool, the full-pool baseline.
- ``length_first`` (``length``, Zhao et al. 2024): the longest responses first, ties by the seed.
- ``diversity`` (Sener & Savarese 2018; s1's top-level strata): k-center greedy on question embeddings.
- ``loss`` (loss-based selection; IFD's conditioned answer score, Li et al. 2024): the student's highest
  losses on the teacher's responses first, or uniform inside a band of loss quantiles.
- ``less`` (LESS, Xia et al. 2024): per-item gradient features (LoRA or the last layers, a seeded random
  projection), the items most similar (cosine) to a target set first: the student's weak skills or a dev split.

``correct_portion`` splits the budget (or each leaf) into solved and unsolved items; ``draw``
holds what every strategy returns.
"""

from ...lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Draw": ".draw",
    "LeafPools": ".draw",
    "draw_random": ".random",
    "draw_skill": ".skill",
    "draw_quota": ".quota",
    "largest_remainder": ".quota",
    "draw_forced": ".forced",
    "parse_pass_rate": ".difficulty",
    "pass_rates": ".difficulty",
    "balance_leaves": ".correct_portion",
    "split_budget": ".correct_portion",
    "BudgetPart": ".correct_portion",
    "draw_all": ".all_items",
    "AllItems": ".all_items",
    "draw_length": ".length_first",
    "LengthFirst": ".length_first",
    "measure_lengths": ".length_first",
    "k_center": ".diversity",
    "split_evenly": ".diversity",
    "embed_questions": ".diversity",
    "Diversity": ".diversity",
    "prepare_diversity": ".diversity",
    "draw_loss": ".loss",
    "band_bounds": ".loss",
    "LossSelection": ".loss",
    "prepare_loss": ".loss",
    "draw_less": ".less",
    "weak_leaves": ".less",
    "LessRequest": ".less",
    "LessSelection": ".less",
    "prepare_less": ".less",
})
