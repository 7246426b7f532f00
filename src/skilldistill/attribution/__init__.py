"""`skilldistill annotate`: skill attribution, root-to-leaf skill chains for every corpus item.

    config.py         AnnotateConfig, DistilledConfig, LabelsConfig, AnchorConfig (light: no stage code)
    stage.py          run_annotate (alias annotate): the stage, step by step
    items.py          the corpus rows read and checked, each item's text
    prompt.py         the prompt template and the repair turn
    parsing.py        model answers (untrusted): the listed names, matched to the children
    deciders.py       who decides at a node: a chat model or the embedding scorer
    decision_keys.py  the cache key of a decision
    cache.py          calls.jsonl: record statuses, reading it back
    walk.py           the top-down walk, one tree level at a time
    chains.py         an item's chains, status and decisions, read from the decisions
    summary.py        summary.json
    stats.py          `annotate stats`: per-node counts
    sampling.py, classifiers.py, distilled.py   the distilled backend
    train_labels.py   the distilled backend's classifiers learnt from a labels file
    features.py       the distilled backend's TF-IDF features
    labels.py         the labels backend: chains from a label the corpus carries
    labels_tree.py    `tree from-labels`: the tree those labels live in, with counts
    anchor.py         anchored walks: the top decisions taken from a label the corpus carries

Names are exported lazily: importing this package (or its config) imports no stage code.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    # settings
    "AnnotateConfig": ".config",
    "DistilledConfig": ".config",
    "LabelsConfig": ".config",
    "AnchorConfig": ".config",
    # the stage
    "run_annotate": ".stage",
    "annotate": ".stage",
    "AnnotateResult": ".stage",
    "annotate_stats": ".stats",
    "SKILLS_FILE": ".items",
    "SKILLS_STATUS": ".items",
    "SUMMARY_FILE": ".summary",
    "item_text": ".items",
    # prompts and answers
    "DEFAULT_TEMPLATE": ".prompt",
    "PromptTemplate": ".prompt",
    "repair_message": ".prompt",
    "parse_answer": ".parsing",
    "match_names": ".parsing",
    "read_complete_answer": ".parsing",
    "FUZZY_MARGIN": ".parsing",
    # decisions
    "Question": ".deciders",
    "Decider": ".deciders",
    "ChatDecider": ".deciders",
    "EmbeddingDecider": ".deciders",
    "decision_key": ".decision_keys",
    "children_signature": ".decision_keys",
    "DecisionKeys": ".decision_keys",
    "CALLS_FILE": ".cache",
    "OK": ".cache",
    "NONE": ".cache",
    "UNPARSEABLE": ".cache",
    "PENDING_REPAIR": ".cache",
    "FAILED": ".cache",
    "FINAL": ".cache",
    "RETRYABLE": ".cache",
    "MAX_STORED_ANSWER": ".cache",
    "load_decisions": ".cache",
    "walk_tree": ".walk",
    "RunCounters": ".walk",
    "chains_for": ".chains",
    "item_status": ".chains",
    "decisions_used": ".chains",
    # the distilled backend
    "run_distilled": ".distilled",
    "DistilledRun": ".distilled",
    "DistilledDecider": ".distilled",
    "chain_agreement": ".distilled",
    "FEATURES_FILE": ".sampling",
    "SAMPLE_FILE": ".sampling",
    "item_features": ".sampling",
    "stratified_sample": ".sampling",
    "holdout_split": ".sampling",
    "write_sample": ".sampling",
    "CLASSIFIERS_FILE": ".classifiers",
    "CLASSIFIERS_INDEX": ".classifiers",
    "CLASSIFIER_RULE": ".classifiers",
    "NodeModel": ".classifiers",
    "training_examples": ".classifiers",
    "train_node_models": ".classifiers",
    "training_hash": ".classifiers",
    "save_node_models": ".classifiers",
    "load_node_models": ".classifiers",
    "classifier_only_chains": ".classifiers",
    "prior_models": ".classifiers",
    "read_train_labels": ".train_labels",
    "label_examples": ".train_labels",
    "TrainLabels": ".train_labels",
    "tfidf_features": ".features",
    # the labels backend
    "attribute_labels": ".labels",
    "LabelMap": ".labels",
    "LabelResult": ".labels",
    "load_label_map": ".labels",
    "label_column": ".labels",
    "read_label_column": ".labels",
    "label_values": ".labels",
    "split_label": ".labels",
    "TreeNames": ".labels",
    "tree_from_labels": ".labels_tree",
    "LabelTree": ".labels_tree",
    "write_label_tree": ".labels_tree",
    # anchored walks
    "anchor_items": ".anchor",
    "Anchoring": ".anchor",
    "AnchoredKeys": ".anchor",
})
