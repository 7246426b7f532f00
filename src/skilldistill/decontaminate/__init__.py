"""Decontamination: find corpus problems that are copies, or near-copies, of benchmark problems.

Three tests, each as the field runs it, applied in this order (the first that fires names
the match):

- ``exact``: the normalised question (:func:`~skilldistill.textutil.normalize_question`:
  case, whitespace, ``$`` and ``\\(\\)`` folded) equals a benchmark problem's.
- ``ngram``: word n-gram overlap (open-r1 and s1 use 8-grams). A corpus item matches a
  benchmark problem when it holds at least ``ngram_min_overlap`` of that problem's
  distinct n-grams. ``0`` means any shared n-gram, which is open-r1's rule; the default
  0.5 also catches a one-word edit (it breaks at most n of the n-grams) while keeping
  problems that merely share a stock phrase ("Find the number of ordered pairs of
  positive integers ..."). Problems shorter than n words are left to the other tests.
- ``fuzzy``: rapidfuzz's ``fuzz.ratio`` (normalised Indel similarity, 0-100) of the
  normalised texts at least ``fuzzy_threshold`` (OpenThoughts: 95), computed for every
  corpus item against every benchmark problem with ``rapidfuzz.process.cdist`` (C++,
  all cores), in chunks so memory stays bounded.

Benchmarks are given as registered names (``aime24``, ``math500``, ...; read from
``data_dir/<name>/`` or the Hugging Face hub, as ``evaluate`` reads them) or as files and
folders of ``.jsonl``/``.json``/``.parquet`` with a ``problem``/``question`` field.
bench/decontamination.py measures 100K items against the five evaluation benchmarks.

Modules: ``config`` (DecontaminationConfig; light), ``problems`` (the benchmark problems),
``matcher`` (the three tests), ``report`` (decontamination.json, and ``decontaminate``).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Method": ".config",
    "METHODS": ".config",
    "PAPER_DECONTAMINATION": ".config",
    "DecontaminationConfig": ".config",
    "QUESTION_FIELDS": ".problems",
    "BenchmarkProblems": ".problems",
    "load_benchmark_problems": ".problems",
    "load_question_set": ".problems",
    "Match": ".matcher",
    "Decontaminator": ".matcher",
    "contamination_report": ".report",
    "decontaminate": ".report",
})
