"""``skilldistill train``: supervised fine-tuning of the student on a formatted dataset (TRL ``SFTTrainer``).

The loss covers the assistant turn only (skill plan + teacher solution): the chat template
used for training carries ``{% generation %}`` markers, so TRL's ``assistant_only_loss``
masks every system, user and template token. Every training option is an ``SFTConfig``
field (:class:`TrainConfig` maps onto it; ``sft_overrides`` passes anything else through),
so this package is a thin, resumable wrapper around TRL, not a trainer of its own.

Launch (one process: CPU, or one GPU)::

    skilldistill train runs/x/format/skill --model Qwen/Qwen3-4B --out runs/x/train/skill \\
        --preset paper

Several GPUs with accelerate (the same arguments; the configs live in recipes/accelerate)::

    accelerate launch --config_file recipes/accelerate/zero3.yaml -m skilldistill.train \\
        runs/x/format/skill --model Qwen/Qwen3-4B --out runs/x/train/skill --preset paper

    accelerate launch --config_file recipes/accelerate/zero3.yaml $(which skilldistill) train \\
        runs/x/format/skill --model Qwen/Qwen3-4B --out runs/x/train/skill --preset paper

``$(which skilldistill)`` must be the Python console script (under pyenv: ``$(pyenv which
skilldistill)``). ``--num_processes N`` after ``accelerate launch`` changes the GPU count
(the configs say 8); the paper preset keeps the effective batch at 8 by setting the
gradient accumulation to ``8 / (per_device_train_batch_size * N)``. Rerunning the same
command after a crash resumes from the last complete checkpoint in ``--out``; rerunning it
after success does nothing. DeepSpeed configs need ``pip install skilldistill[deepspeed]``.

Outputs in ``--out``: ``checkpoint-<step>/`` (the last ``save_total_limit``), ``final/``
(model + tokenizer, with the training chat template), ``adapter/`` (LoRA only),
``student/`` (a GGUF student, dequantised),
``trainer_state.json``, ``loss.png``, ``metrics.json``, ``train_config.json``,
``manifest.json``.

Modules: ``config`` (TrainConfig, presets, SFTConfig mapping; light), ``data`` (reading and
tokenizing conversations), ``templates`` (training chat templates), ``student`` (the model
and tokenizer to start from), ``callbacks`` (progress bar), ``trainer`` (building the
SFTTrainer), ``outputs`` (the output folder, checkpoints), ``lora`` (adapter merge),
``metrics``, ``plot`` (loss.png), ``stage`` (:func:`run_train`), ``__main__``
(``python -m skilldistill.train``).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    # config (light)
    "LATER_FIELD_DEFAULTS": ".config",
    "PRESETS": ".config",
    "SFT_FIELDS": ".config",
    "TrainConfig": ".config",
    "checkpointing_kwargs": ".config",
    "load_train_config": ".config",
    "validate_train_config": ".config",
    # data
    "ROLES": ".data",
    "dataset_hash": ".data",
    "load_conversations": ".data",
    "prepare_examples": ".data",
    "resolve_dataset": ".data",
    # chat templates
    "CHATML_TRAINING_TEMPLATE": ".templates",
    "has_generation_markers": ".templates",
    "implicit_system_prompt": ".templates",
    "is_chatml": ".templates",
    "resolve_chat_template": ".templates",
    "with_implicit_system": ".templates",
    # the output folder
    "ADAPTER_DIR": ".outputs",
    "FINAL_DIR": ".outputs",
    "LOSS_PNG": ".outputs",
    "METRICS": ".outputs",
    "STUDENT_DIR": ".outputs",
    "TRAINER_STATE": ".outputs",
    "TRAIN_CONFIG": ".outputs",
    "last_complete_checkpoint": ".checkpoints",
    "CHECKPOINT_MARKER": ".checkpoints",
    # trainer, callbacks, results
    "RichProgressCallback": ".callbacks",
    "use_rich_progress": ".callbacks",
    "TrainSetup": ".trainer",
    "build_trainer": ".trainer",
    "merge_lora": ".lora",
    "plot_loss": ".plot",
    # the stage
    "run_train": ".stage",
})
