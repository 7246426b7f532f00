"""GGUF checkpoints as ordinary model folders.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=...)``) by dequantising
it to plain float weights, but it still marks the model as quantized, so ``save_pretrained``
refuses it. :func:`dequantize_to_folder` writes the plain weights and the tokenizer to a
folder every engine loads (vLLM, TRL, transformers without ``gguf``).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def dequantize_to_folder(folder: str | Path, gguf_file: str, out: str | Path, *, dtype: str = "float32") -> Path:
    """``folder/gguf_file`` -> a safetensors model folder ``out`` (written atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=getattr(torch, dtype))
    # The weights are already plain floats; only the GGUF markers stop saving.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
