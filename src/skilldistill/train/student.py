"""The student training starts from: the folder or hub id to load (a GGUF file is
dequantised once into ``student/``) and its tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import TrainConfig
from .outputs import STUDENT_DIR

log = logging.getLogger(__name__)


def model_location(config: TrainConfig) -> tuple[str, str | None]:
    """The model folder or hub id, and the GGUF file in it (None for a plain checkpoint)."""
    path = Path(config.model or "")
    if config.gguf_file is None and path.suffix.lower() == ".gguf" and path.is_file():
        return str(path.parent), path.name
    return str(config.model), config.gguf_file


def student_path(config: TrainConfig, out_dir: Path, *, is_main: bool) -> str:
    """The folder or hub id training loads. A GGUF student is dequantised once into ``student/``."""
    spec, gguf = model_location(config)
    if not gguf:
        return spec
    target = out_dir / STUDENT_DIR
    if is_main and not (target / "config.json").is_file():
        from ..llm.gguf import dequantize_to_folder

        log.info("train: converting %s/%s to a plain checkpoint in %s", spec, gguf, target)
        try:
            dequantize_to_folder(spec, gguf, target)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the GGUF student {spec}/{gguf}: {e}") from e
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    return str(target)


def load_tokenizer(model_path: str, config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load the tokenizer of {config.model!r}: {e}") from e
