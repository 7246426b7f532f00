r"""Corpus ingestion: teacher-solution datasets -> one normalised Parquet table.

    skilldistill ingest nvidia/OpenMathReasoning --preset openmathreasoning --split cot \
        --limit 100000 --exclude benchmarks/*.jsonl --out runs/omr/corpus

Sources are a Hugging Face dataset id (loaded with ``datasets.load_dataset`` when you are
online) or local ``.jsonl``/``.json``/``.parquet`` files and folders of them. A *preset*
maps a published schema onto the normalised record; presets are rows of the
:data:`PRESETS` table (:mod:`.presets`), not code branches, and explicit ``--question-field`` /
``--response-field`` / ``--answer-field`` mappings cover any other schema.

Normalised record (``corpus.parquet``):

=========  ==================================================================
id         stable id: the source's id when it has one, else a content hash of
           the normalised question
question   the problem statement
response   the teacher solution, ``<think>`` block kept intact
answer     gold final answer (the answer field, or extracted from ``\boxed{}``
           or GSM8K's ``####`` when the source has no separate field)
source     where the row came from (the row's own source field, else the
           dataset id or file name)
meta       JSON object with the remaining fields (level, subject, ...)
=========  ==================================================================

Modules: ``config`` (IngestConfig; light), ``presets`` (the schema table), ``mapping``
(preset + options -> the field mapping; one row -> one record), ``source`` (local files or
a hub dataset, with row locations), ``dedup`` (repeated questions, benchmark copies),
``table`` (schema, file names, :func:`read_corpus`), ``stage`` (:func:`run_ingest`).
Reading rows and their values is :mod:`skilldistill.rows`, shared with decontamination.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "IngestConfig": ".config",
    "Preset": ".presets",
    "PRESETS": ".presets",
    "RESPONSE_BUILDERS": ".presets",
    "detect_preset": ".presets",
    "FieldMapping": ".mapping",
    "resolve_mapping": ".mapping",
    "normalise_row": ".mapping",
    "CorpusSource": ".source",
    "open_source": ".source",
    "CORPUS_FILE": ".table",
    "CORPUS_MANIFEST": ".table",
    "CORPUS_SCHEMA": ".table",
    "DECONTAMINATION_FILE": ".table",
    "read_corpus": ".table",
    "IngestReport": ".stage",
    "run_ingest": ".stage",
    "ingest": ".stage",
    # reading rows and benchmark problems live in skilldistill.rows and .decontaminate
    "ANSWER_EXTRACTORS": "skilldistill.rows",
    "iter_local_rows": "skilldistill.rows",
    "list_local_files": "skilldistill.rows",
    "local_columns": "skilldistill.rows",
    "is_local_source": "skilldistill.rows",
    "load_question_set": "skilldistill.decontaminate.problems",
})
