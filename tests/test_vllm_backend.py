"""VLLMBackend glue. vLLM is not installed here (no GPU): these tests put a small fake
``vllm`` package (``LLM``, ``SamplingParams``, ``RequestOutput``-shaped results, written
against vLLM's documented offline API) first on ``sys.path``, so the backend's real code
runs against it - including the data-parallel path, whose spawned engine processes
import the same fake. What they cannot show is vLLM itself generating on a GPU."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from skilldistill.errors import ConfigError
from skilldistill.llm.base import BackendConfig, SamplingParams

FAKE_VLLM = textwrap.dedent(
    '''
    """Test double of vllm's offline API: LLM(**engine_args).chat(...) -> RequestOutput-like."""
    import json
    import os
    from dataclasses import dataclass, field

    CALLS = []  # in-process record of every call, for assertions


    class SamplingParams:
        def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None, stop=None, **kw):
            self.n, self.temperature, self.top_p, self.max_tokens, self.seed, self.stop = n, temperature, top_p, max_tokens, seed, stop
            self.extra = kw


    @dataclass
    class CompletionOutput:
        index: int
        text: str
        token_ids: list
        finish_reason: str


    @dataclass
    class RequestOutput:
        prompt_token_ids: list
        outputs: list = field(default_factory=list)


    class LLM:
        def __init__(self, model, **kwargs):
            if model.startswith("missing/"):
                raise OSError(f"{model} is not a local folder or a hub repo")
            self.model, self.kwargs = model, kwargs
            CALLS.append(("init", model, kwargs))

        def chat(self, messages, sampling_params=None, use_tqdm=True, chat_template_kwargs=None, **kw):
            CALLS.append(("chat", len(messages), chat_template_kwargs))
            outs = []
            for conv in messages:
                words = conv[-1]["content"].split()
                prompt_ids = list(range(len(words) + 3))
                samples = []
                # listed in reverse on purpose: the backend must order samples by index
                for k in reversed(range(sampling_params.n)):
                    n_tok = min(len(words), sampling_params.max_tokens)
                    reason = "length" if len(words) > sampling_params.max_tokens else "stop"
                    info = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "seed": sampling_params.seed,
                            "tk": chat_template_kwargs, "sample": k}
                    text = " ".join(words[:n_tok]) + " | " + json.dumps(info, sort_keys=True)
                    samples.append(CompletionOutput(k, text, list(range(n_tok)), reason))
                outs.append(RequestOutput(prompt_ids, samples))
            return outs
    '''
)


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    pkg = tmp_path / "fakevllm" / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_VLLM)
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    import vllm

    yield vllm
    sys.modules.pop("vllm", None)


def _cfg(**kw):
    return BackendConfig(kind="vllm", model="Qwen/Qwen3-4B", **kw)


def test_engine_arguments_come_from_the_config(fake_vllm):
    from skilldistill.llm.factory import make_backend
    from skilldistill.llm.vllm_backend import VLLMBackend

    b = make_backend(_cfg(tensor_parallel_size=2, gpu_memory_utilization=0.8, enable_prefix_caching=False,
                          max_model_len=20480, dtype="bfloat16", model_kwargs={"enforce_eager": True}))
    assert isinstance(b, VLLMBackend) and b.name == "vllm"
    kind, model, kwargs = fake_vllm.CALLS[0]
    assert (kind, model) == ("init", "Qwen/Qwen3-4B")
    assert kwargs == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8, "enable_prefix_caching": False,
                      "dtype": "bfloat16", "trust_remote_code": False, "max_model_len": 20480, "enforce_eager": True}


def test_chat_maps_sampling_outputs_and_finish_reasons(fake_vllm):
    from skilldistill.llm.vllm_backend import VLLMBackend

    b = VLLMBackend(_cfg(), chunk_size=2)
    convs = [[{"role": "user", "content": " ".join(["w"] * k)}] for k in (3, 10, 5)]
    seen, done = [], []
    params = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=6, n=2, seed=7, chat_template_kwargs={"enable_thinking": True})
    out = b.chat(convs, params, on_result=lambda i, c: seen.append(i), progress=done.append)
    # two chunks: results delivered as each finishes
    assert [c for c in fake_vllm.CALLS if c[0] == "chat"] == [("chat", 2, {"enable_thinking": True}), ("chat", 1, {"enable_thinking": True})]
    assert seen == [0, 1, 2] and done == [2, 1]
    assert [len(c) for c in out] == [2, 2, 2]
    first = out[0][0]
    assert first.finish_reason == "stop" and first.completion_tokens == 3 and first.prompt_tokens == 6
    assert json.loads(first.text.split(" | ")[1]) == {"gpus": None, "seed": 7, "tk": {"enable_thinking": True}, "sample": 0}
    assert [json.loads(c.text.split(" | ")[1])["sample"] for c in out[1]] == [0, 1]
    assert out[1][0].finish_reason == "length" and out[1][0].completion_tokens == 6


def test_sampling_params_translation(fake_vllm):
    from skilldistill.llm.vllm_backend import vllm_sampling_params

    sp = vllm_sampling_params(fake_vllm, SamplingParams(temperature=0.6, top_p=0.95, max_tokens=8192, n=8, seed=3, stop=("</s>",)))
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.seed, sp.stop) == (8, 0.6, 0.95, 8192, 3, ["</s>"])


def test_missing_vllm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    from skilldistill.llm.vllm_backend import VLLMBackend

    with pytest.raises(ConfigError, match=r"pip install 'skilldistill\[vllm\]'"):
        VLLMBackend(_cfg())


def test_unloadable_student_is_a_config_error(fake_vllm):
    from skilldistill.llm.vllm_backend import VLLMBackend

    with pytest.raises(ConfigError, match="cannot load student model 'missing/model'"):
        VLLMBackend(BackendConfig(kind="vllm", model="missing/model"))


def test_data_parallel_engines_each_get_their_own_gpus(fake_vllm, monkeypatch):
    from skilldistill.llm.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    b = VLLMBackend(_cfg(data_parallel_size=2, tensor_parallel_size=2), chunk_size=1)
    try:
        convs = [[{"role": "user", "content": f"question number {i}"}] for i in range(5)]
        seen = []
        out = b.chat(convs, SamplingParams(max_tokens=2, n=1, seed=1), on_result=lambda i, c: seen.append(i))
    finally:
        b.close()
    assert sorted(seen) == list(range(5))
    gpus = [json.loads(c[0].text.split(" | ")[1])["gpus"] for c in out]
    assert set(gpus) == {"0,1", "2,3"}  # both engines served chunks, each on its own pair
    assert [c[0].text.split(" | ")[0] for c in out] == ["question number"] * 5
    assert all(c[0].finish_reason == "length" for c in out)


def test_data_parallel_needs_enough_gpus(fake_vllm, monkeypatch):
    from skilldistill.llm.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ConfigError, match="needs 4 GPUs; 2 visible"):
        VLLMBackend(_cfg(data_parallel_size=2, tensor_parallel_size=2))
