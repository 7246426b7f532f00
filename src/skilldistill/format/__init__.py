"""``skilldistill format``: turn selected items into chat examples for SFT, plain or skill-aware.

Launch::

    skilldistill format runs/x/select/skill/selection.parquet --out runs/x/format/skill \\
        --style skill-aware --tokenizer Qwen/Qwen3-4B --max-length 8192

Each example is ``[system?, user, assistant]``. The user turn is the problem followed by
the same instruction the student saw when it was profiled and will see at evaluation.
The assistant turn is the teacher response unchanged (``plain``) or prefixed with the
skill plan (``skill-aware``, the paper's form)::

    Skills:
    Algebra->solving equations
    Pre-Algebra->fractions
    <think>...</think> final solution

Exports: ``train.jsonl`` (``messages`` rows, what TRL's ``SFTTrainer`` takes), ``hf/``
(``datasets.Dataset.save_to_disk``) and ``llamafactory/`` (sharegpt JSON plus its
``dataset_info.json`` entry). Over-long examples (student tokenizer, chat template
applied) are dropped by default and listed in ``report.json``, never truncated.

One job per module:

- :mod:`.config`: :class:`ExampleFormat` and :class:`FormatConfig` (light).
- :mod:`.examples`: one item as a chat example (user turn, skill plan, assistant turn).
- :mod:`.tokens`: the student's tokenizer and token counts under the training chat template.
- :mod:`.exporters`: TRL JSONL, ``datasets`` folder, LLaMA-Factory.
- :mod:`.stage`: :func:`run_format`, the stage function.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DEFAULT_INSTRUCTION": "skilldistill.generate.config",
    "ExampleFormat": ".config",
    "FormatConfig": ".config",
    "SKILLS_HEADER": ".examples",
    "THINK_OPEN": ".examples",
    "assistant_target": ".examples",
    "build_messages": ".examples",
    "build_user_prompt": ".examples",
    "chain_window": ".examples",
    "load_name_map": ".examples",
    "plan_chains_shown": ".examples",
    "plan_lines": ".examples",
    "skill_plan_lines": ".examples",
    "count_tokens": ".tokens",
    "load_tokenizer": ".tokens",
    "HF_DIR": ".exporters",
    "LF_DIR": ".exporters",
    "TRAIN_JSONL": ".exporters",
    "llamafactory_dataset_info": ".exporters",
    "llamafactory_record": ".exporters",
    "LENGTHS": ".stage",
    "REPORT": ".stage",
    "FormatResult": ".stage",
    "run_format": ".stage",
})
