"""The model to evaluate, as a folder every backend can load: a LoRA adapter is merged first."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..artifacts import read_json, sha256_file, write_json
from ..errors import InputError
from ..train.lora import merge_lora

log = logging.getLogger(__name__)


def evaluable_model(model: str) -> str:
    """A model folder every backend can load. A LoRA adapter folder (``adapter_config.json``,
    no ``config.json``; what ``train`` leaves in final/ with ``merge_lora: false``) is merged
    into its base once, into a sibling ``<name>-merged`` folder, which is returned."""
    path = Path(model)
    if not (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
        return model
    weights = next((path / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (path / n).exists()), None)
    if weights is None:
        raise InputError("LoRA adapter folder without adapter weights", file=path)
    stamp = {"adapter": sha256_file(weights)}
    merged = path.with_name(f"{path.name}-merged")
    if (merged / "merged_from.json").exists() and read_json(merged / "merged_from.json") == stamp:
        return str(merged)
    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise InputError("adapter_config.json names no base model", file=path, field="base_model_name_or_path")
    from transformers import AutoTokenizer

    log.info("evaluate: %s is a LoRA adapter of %s: merging it into %s", path, base, merged)
    merge_lora(base, path, merged, AutoTokenizer.from_pretrained(str(path)), dtype="float32", trust_remote_code=False)
    write_json(merged / "merged_from.json", stamp)
    return str(merged)
