"""Building TRL's ``SFTTrainer`` for a dataset: the checked settings, the student and its
training chat template, the tokenized examples, and the trainer class whose
``batch_rebalance`` sampler follows the run's seed."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..progress import library_bars_off
from .callbacks import use_rich_progress
from .checkpoints import checkpoint_marker_callback
from .config import TrainConfig, build_sft_config
from .data import dataset_hash, load_conversations, prepare_examples, resolve_dataset
from .distributed import check_launch, join_cpu_process_group, world_size
from .outputs import guard_output_dir
from .student import load_tokenizer, student_path
from .templates import (
    implicit_system_prompt,
    inference_chat_template,
    resolve_chat_template,
    with_implicit_system,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainSetup:
    """Everything :func:`run_train` trains with: the TRL trainer and what was decided for it."""

    trainer: Any
    args: Any
    tokenizer: Any
    chat_template_name: str
    data_stats: dict[str, Any]
    dataset_file: Path
    inputs: dict[str, str]
    is_main: bool
    model_path: str
    inference_chat_template: str | None = None  # saved with final/


def build_trainer(
    dataset_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    label: str | None = None,
) -> TrainSetup:
    """Load, check and tokenize the data, then build TRL's ``SFTTrainer`` (no training yet)."""
    if not config.model:
        raise ConfigError("train: no student model given (model / --model)")
    check_launch()
    join_cpu_process_group(config.ddp_timeout)
    out_dir = Path(out_dir)
    src, kind = resolve_dataset(dataset_path)
    inputs = {"dataset": dataset_hash(src, kind)}
    rows = load_conversations(src)
    args = training_arguments(config, out_dir)  # bad settings fail before anything heavy loads
    is_main = args.process_index == 0
    _claim_output_dir(out_dir, {"config": config.fingerprint_dict(), "inputs": inputs},
                      overwrite=overwrite, is_main=is_main)

    model_path = student_path(config, out_dir, is_main=is_main)
    tokenizer = load_tokenizer(model_path, config)
    own_template = tokenizer.chat_template
    template, template_name = resolve_chat_template(tokenizer, config.chat_template)
    if template_name == "chatml":
        # Train on the text the model's own template renders (its default system turn
        # included), so final/ can keep that template: the base and the trained model are
        # then prompted identically at evaluation, and as in training.
        system = implicit_system_prompt(tokenizer)
        rows = [{**r, "messages": with_implicit_system(r["messages"], system)} for r in rows]
    tokenizer.chat_template = template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kept, data_stats = _tokenized_examples(rows, tokenizer, template, config, src, progress=progress and is_main)

    trainer = _sft_trainer(model_path, args, kept, tokenizer, config)
    trainer.add_callback(checkpoint_marker_callback(checkpoints_kept(config)))
    use_rich_progress(trainer, enabled=progress and is_main, description=f"train {label}" if label else "train")
    return TrainSetup(trainer, args, tokenizer, template_name, data_stats, src, inputs, is_main, model_path,
                      inference_chat_template(own_template, template, template_name))


def training_arguments(config: TrainConfig, out_dir: Path) -> Any:
    """TRL's ``SFTConfig`` for this run (the world size read from ``WORLD_SIZE``)."""
    sft_kwargs = config.sft_kwargs(out_dir, world_size=world_size())
    if config.padding_free and not config.packing:
        if not config.drop_overlong and config.max_length is not None:
            raise ConfigError("padding_free without packing cannot truncate: keep drop_overlong on")
        # Over-long examples are dropped before TRL sees them, so it has nothing left to truncate.
        sft_kwargs["max_length"] = None
    # Old checkpoints are removed by the certifying callback, after the new one is complete.
    sft_kwargs["save_total_limit"] = None
    return build_sft_config(sft_kwargs)


def checkpoints_kept(config: TrainConfig) -> int | None:
    """How many certified checkpoints stay (``save_total_limit``, or its SFT override)."""
    return config.sft_overrides.get("save_total_limit", config.save_total_limit)


def _claim_output_dir(out_dir: Path, run_record: dict[str, Any], *, overwrite: bool, is_main: bool) -> None:
    """The main process checks and records the run in ``out_dir``; every process waits for it."""
    from accelerate import PartialState

    if is_main:
        guard_output_dir(out_dir, run_record, overwrite=overwrite)
    PartialState().wait_for_everyone()


def _tokenized_examples(rows: list[dict[str, Any]], tokenizer: Any, template: str, config: TrainConfig,
                        src: Path, *, progress: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The examples that fit ``max_length`` and their statistics; none left is an error."""
    kept, data_stats = prepare_examples(
        rows, tokenizer, template, max_length=config.max_length, drop_overlong=config.drop_overlong,
        assistant_only_loss=config.assistant_only_loss, progress=progress,
    )
    if not kept:
        raise InputError(
            f"every example is longer than max_length {config.max_length} tokens", file=src, field="messages"
        )
    if data_stats["dropped_overlong"]:
        log.warning("train: dropped %d of %d examples over %s tokens", data_stats["dropped_overlong"],
                    data_stats["examples_read"], config.max_length)
    return kept, data_stats


def _sft_trainer(model_path: str, args: Any, kept: list[dict[str, Any]], tokenizer: Any,
                 config: TrainConfig) -> Any:
    """TRL's trainer over the kept conversations (it loads the student's weights)."""
    from datasets import Dataset

    train_dataset = Dataset.from_list([{"messages": r["messages"]} for r in kept])
    # prepare_examples' bar already covered tokenizing; TRL's pass and the weight loading stay quiet.
    quiet = library_bars_off() if Path(str(model_path)).is_dir() else contextlib.nullcontext()
    with quiet:
        return sft_trainer_class()(
            model=model_path,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=config.lora_config(),
        )


def sft_trainer_class() -> type:
    """TRL's ``SFTTrainer``, with ``batch_rebalance`` shuffling by the run's seed.

    transformers builds its ``BatchRebalanceSampler`` with the sampler's default seed (42)
    whatever ``args.seed`` says (its ``RandomSampler`` follows ``args.seed``), so runs that
    differ only in their seed would see their examples in one order. The sampler gets
    ``args.data_seed`` (else ``args.seed``), as the random sampler's order does.
    """
    from trl import SFTTrainer

    try:
        from transformers.trainer_pt_utils import BatchRebalanceSampler
    except ImportError:  # a transformers without it has no batch_rebalance to seed
        BatchRebalanceSampler = None

    class SeededSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if BatchRebalanceSampler is not None and isinstance(sampler, BatchRebalanceSampler):
                sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return sampler

    return SeededSFTTrainer
