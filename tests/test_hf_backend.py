"""TransformersBackend: real tokenizer and chat template (SmolLM2), tiny random model."""

from __future__ import annotations

import os

import pytest

from conftest import smollm2_gguf
from skilldistill.errors import ConfigError
from skilldistill.llm.base import BackendConfig, ChatBackend, SamplingParams
from skilldistill.llm.factory import make_backend
from skilldistill.llm.hf_backend import TransformersBackend

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONVS = [
    [{"role": "user", "content": "What is 1+1?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime number larger than one hundred, please."}],
    [{"role": "user", "content": "Hi"}],
]


def test_is_a_chat_backend_built_by_the_factory(tiny_chat_model_dir):
    b = make_backend(BackendConfig(kind="transformers", model=str(tiny_chat_model_dir), device="cpu"))
    try:
        assert isinstance(b, TransformersBackend) and isinstance(b, ChatBackend)
        assert b.tokenizer.padding_side == "left" and b.device == "cpu"
    finally:
        b.close()


def test_n_samples_per_conversation_in_input_order_with_token_counts(tiny_transformers_backend):
    b = tiny_transformers_backend
    seen: list[int] = []
    done: list[int] = []
    out = b.chat(CONVS, SamplingParams(max_tokens=6, n=2, seed=0), on_result=lambda i, c: seen.append(i), progress=done.append)
    assert len(out) == 3 and all(len(c) == 2 for c in out)
    assert sorted(seen) == [0, 1, 2] and sum(done) == 3
    for conv, comps in zip(CONVS, out, strict=True):
        prompt_len = len(b.tokenizer(b.render(conv), add_special_tokens=False)["input_ids"])
        for c in comps:
            assert c.prompt_tokens == prompt_len
            assert 1 <= c.completion_tokens <= 6
            assert c.finish_reason in {"stop", "length"}
            if c.finish_reason == "length":
                assert c.completion_tokens == 6


def test_left_padded_batch_matches_one_by_one_greedy(tiny_chat_model_dir, tiny_transformers_backend):
    params = SamplingParams(temperature=0.0, max_tokens=8)
    batched = tiny_transformers_backend.chat(CONVS, params)  # batch_size 4: one padded batch
    single = TransformersBackend(BackendConfig(kind="transformers", model=str(tiny_chat_model_dir), device="cpu", batch_size=1))
    one_by_one = single.chat(CONVS, params)
    assert [c[0].text for c in batched] == [c[0].text for c in one_by_one]


def test_seed_makes_sampling_reproducible(tiny_transformers_backend):
    p = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=4, seed=123)
    a = tiny_transformers_backend.chat(CONVS[:2], p)
    b = tiny_transformers_backend.chat(CONVS[:2], p)
    c = tiny_transformers_backend.chat(CONVS[:2], SamplingParams(temperature=1.0, top_p=0.95, max_tokens=4, seed=124))
    assert [x[0].text for x in a] == [x[0].text for x in b]
    assert [x[0].text for x in a] != [x[0].text for x in c]


def test_finish_reason_from_tokens(tiny_transformers_backend):
    b = tiny_transformers_backend
    eos = b.eos_token_ids[0]
    p = SamplingParams(max_tokens=5)
    stopped = b._completion([11, 12, eos, eos, eos], 7, p)
    assert (stopped.finish_reason, stopped.completion_tokens, stopped.prompt_tokens) == ("stop", 3, 7)
    capped = b._completion([11, 12, 13, 14, 15], 7, p)
    assert (capped.finish_reason, capped.completion_tokens) == ("length", 5)


def test_chat_template_kwargs_reach_the_template(tiny_transformers_backend):
    tok = tiny_transformers_backend.tokenizer
    saved = tok.chat_template
    # The switch Qwen3's template reads: enable_thinking=False pre-fills an empty think block.
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"
        "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    )
    try:
        conv = [{"role": "user", "content": "2+2?"}]
        assert "<think>" in tiny_transformers_backend.render(conv, {"enable_thinking": False})
        assert "<think>" not in tiny_transformers_backend.render(conv, {"enable_thinking": True})
        assert "<think>" not in tiny_transformers_backend.render(conv)
    finally:
        tok.chat_template = saved


def test_unloadable_student_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load the tokenizer of student model"):
        TransformersBackend(BackendConfig(kind="transformers", model=str(tmp_path / "no-such-model"), device="cpu"))


def test_no_cuda_asked_for_on_a_cpu_machine_is_an_error(tiny_chat_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device"):
        TransformersBackend(BackendConfig(kind="transformers", model=str(tiny_chat_model_dir), device="cuda"))


@pytest.mark.slow
def test_real_smollm2_gguf_generates_for_a_chat_prompt():
    folder, gguf = smollm2_gguf()
    b = TransformersBackend(BackendConfig(kind="transformers", model=str(folder), gguf_file=gguf, device="cpu"))
    try:
        [[c]] = b.chat([[{"role": "user", "content": "What is the capital of France?"}]], SamplingParams(temperature=0.0, max_tokens=8))
        assert c.text.strip() and c.completion_tokens <= 8 and c.prompt_tokens > 5
        assert c.finish_reason in {"stop", "length"}
        assert "Paris" in c.text or c.finish_reason == "length"
    finally:
        b.close()


def test_greedy_with_several_samples_repeats_the_greedy_answer(tiny_transformers_backend):
    from skilldistill.llm.base import SamplingParams

    out = tiny_transformers_backend.chat([[{"role": "user", "content": "What is 2 + 2?"}]],
                                         SamplingParams(temperature=0.0, n=3, max_tokens=5))
    assert len(out[0]) == 3 and len({c.text for c in out[0]}) == 1


@pytest.mark.slow
def test_each_sample_has_its_own_stream_whatever_the_batch(tiny_transformers_backend):
    # per-sample seeds: a sample is the same alone or in a batch, and asking for sample k
    # again gives sample k (issue 16 #3: resumed or grown sampling repeated samples)
    p = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, n=2)
    batch = tiny_transformers_backend.chat(CONVS[:3], p, seeds=[[10, 11], [20, 21], [30, 31]])
    alone = tiny_transformers_backend.chat(CONVS[1:2], p, seeds=[[20, 21]])
    assert [c.text for c in alone[0]] == [c.text for c in batch[1]]
    one = tiny_transformers_backend.chat(CONVS[1:2], SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, n=1),
                                         seeds=[[21]])
    assert one[0][0].text == batch[1][1].text
    assert batch[0][0].text != batch[0][1].text or batch[1][0].text != batch[1][1].text
