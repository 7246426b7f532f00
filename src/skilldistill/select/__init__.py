"""``skilldistill select``: choose the SFT budget from an attributed pool, weighting weak skills.

Launch::

    skilldistill select runs/x/annotate/skills.parquet --out runs/x/select/skill \\
        --profile runs/x/profile/skill_profile.json --strategy skill --budget 1000 --seed 0

Strategies (all reproducible from ``seed``; one module each under ``strategies``):

- ``random``: uniform without replacement over the eligible pool (the baseline).
- ``skill`` (the paper): leaf weight ``w = min((1/acc)**T, w_max**T)``, ``acc == 0`` ->
  ``w_max**T``; pick a leaf with ``P = w / sum(w)``, then a uniform item among that leaf's
  items not yet used, until the budget is met. An item already taken through another of
  its leaves is skipped and the next one of the same leaf is drawn; a leaf with no item
  left leaves the distribution (no rejection loop, so it always terminates).
- ``skill-quota``: the same target distribution met deterministically: largest-remainder
  quotas per leaf, a multi-skill item counted once (for the leaf that took it), the
  shortfall of leaves that run dry shared again among the others.
- ``forced`` (the authors' ``forced_distribution``): no sampling; items are added one at a
  time, each time the one whose leaves bring the selected items' leaf distribution closest
  (L2) to the target, ties to the lowest pool index; with ``correct_portion``, quotas of
  solved and unsolved items.
- ``difficulty`` (the authors' difficulty baseline): uniform over the items whose pass rate
  (``difficulty_field`` in the row or its ``meta``, OpenMathReasoning's
  ``pass_rate_72b_tir``) lies in ``difficulty_range`` (default [0.25, 0.625], inclusive).
- ``all`` (the paper's full-pool baseline): every eligible item; the budget is ignored.
- ``length`` ("Long Is More", Zhao et al. 2024): the longest teacher responses first
  (``length_unit``: characters or student tokens), ties in an order drawn from the seed.
- ``diversity`` (k-center greedy, Sener & Savarese 2018): the item farthest from the chosen
  ones, by cosine distance of MiniLM question embeddings (cached in the select folder), the
  first center drawn with the seed; ``diversity_stratify: top_level`` splits the budget
  evenly over the top-level skills first (s1's domain-uniform sampling).
- ``loss`` (loss-based selection, the conditioned answer score of IFD, Li et al. 2024): the student's
  mean per-token loss on the teacher's response given the question, in the example it is trained on
  (``item_loss``, batched and cached in the select folder); the highest losses first, or uniformly
  inside ``loss_band`` (quantiles of the pool's losses).
- ``less`` (LESS, Xia et al. 2024): each item's gradient of the student's loss on its training example
  (LoRA adapters or the last layers, ``gradient_features``), reduced by a seeded random projection
  (``projection``) and cached in the select folder (``item_gradients``); the items with the highest mean
  cosine to a target set first: the items under the student's weakest leaves, or a development file.

The field's baselines (``all``, ``length``, ``diversity``, ``loss``, ``less``) ignore the skill weights; ``less``
reads the profile's leaf accuracies for its ``weak_skills`` target.

Variants the authors' experiments use (docs/select.md lists where each differs from their
scripts): ``max_depth`` (chains cut to this depth before leaves are computed),
``correct_portion`` over the budget or per leaf (``correct_portion_scope``), ``only_skill``
(draw from one leaf), raw accuracy with leaves without a verdict excluded
(``accuracy: raw``, ``unprofiled_leaves: exclude``).

Scale: the pool becomes a CSR index (``ptr``/``items`` numpy arrays, one segment per
leaf). Drawing swaps the chosen item to the end of its leaf's live segment (a partial
Fisher-Yates per leaf), so a draw is O(1), memory is one copy of the index, and nothing
is copied per draw. Item lengths (``max_tokens``) are measured lazily, only for items
drawn, so a 100K pool of long traces is never tokenised in full.

Modules: ``config`` (SelectConfig, light), ``index`` (the leaf -> item index), ``weights``
(leaf accuracies and weights from the profile), ``strategies`` (one module per strategy),
``pool`` (exclusions, the streamed scan, the filters), ``length`` (the max_tokens filter), ``item_loss`` (the
student's per-item loss), ``item_gradients`` (its per-item gradient features, with ``gradient_features`` and
``projection``),
``state`` (what the steps hand on), ``report``, ``plot``, ``stage`` (``run_select``).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "SelectConfig": ".config",
    "Strategy": ".config",
    "SELECTION": ".config",
    "REPORT": ".config",
    "PLOT": ".config",
    "LEAF_TABLE": ".config",
    "LeafIndex": ".index",
    "LeafAccuracy": ".weights",
    "leaf_accuracies": ".weights",
    "leaf_weights": ".weights",
    "Draw": ".strategies.draw",
    "draw_random": ".strategies.random",
    "draw_skill": ".strategies.skill",
    "draw_quota": ".strategies.quota",
    "largest_remainder": ".strategies.quota",
    "draw_forced": ".strategies.forced",
    "parse_pass_rate": ".strategies.difficulty",
    "draw_all": ".strategies.all_items",
    "draw_length": ".strategies.length_first",
    "k_center": ".strategies.diversity",
    "split_evenly": ".strategies.diversity",
    "draw_loss": ".strategies.loss",
    "item_losses": ".item_loss",
    "load_loss_model": ".item_loss",
    "draw_less": ".strategies.less",
    "item_features": ".item_gradients",
    "Projection": ".projection",
    "balance_leaves": ".strategies.correct_portion",
    "read_selected_ids": ".pool",
    "selection_file": ".pool",
    "kl_divergence": ".report",
    "plot_distribution": ".plot",
    "SelectResult": ".stage",
    "run_select": ".stage",
})
