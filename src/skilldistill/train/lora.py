"""Merging a LoRA adapter into its base model: one plain model any inference engine loads."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..progress import library_bars_off


def merge_lora(base_path: str, adapter_dir: Path, final_dir: Path, tokenizer: Any, *, dtype: str,
               trust_remote_code: bool) -> None:
    """Base + adapter -> one plain model in ``final_dir`` (written aside, then renamed into place)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype),
                                                trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = final_dir.with_name(f".{final_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with library_bars_off():
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp.rename(final_dir)
