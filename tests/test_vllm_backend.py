"""VLLMBackend glue against a fake ``vllm`` package (unit tests of the backend's own logic).

The fake (``LLM``, ``SamplingParams``, ``RequestOutput``-shaped results, written against
vLLM's offline API) goes first on the import path, which the engine processes inherit, so
the backend's real code runs: engine subprocesses, chunking, seeds, data parallelism,
engine death. It records every call in a JSONL file. vLLM itself generating is tested in
``tests/real_engines`` (vLLM's CPU build, ``scripts/test-real-engines``); a fake is never
the only test of a code path.
"""

from __future__ import annotations

import json
import subprocess
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

    __version__ = "0.0-fake"


    def _log(record):
        with open(os.environ["FAKE_VLLM_LOG"], "a") as f:
            f.write(json.dumps(record) + "\\n")


    class SamplingParams:
        def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None, stop=None, **kw):
            self.n, self.temperature, self.top_p, self.max_tokens, self.seed, self.stop = n, temperature, top_p, max_tokens, seed, stop


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


    class _Cfg:
        def __init__(self, **kw):
            self.__dict__.update(kw)


    class LLM:
        def __init__(self, model, **kwargs):
            if model.startswith("missing/"):
                raise OSError(f"{model} is not a local folder or a hub repo")
            self.model, self.kwargs = model, kwargs
            self.llm_engine = _Cfg(
                vllm_config=_Cfg(scheduler_config=_Cfg(enable_chunked_prefill=kwargs.get("enable_chunked_prefill", True))),
                model_config=_Cfg(max_model_len=kwargs.get("max_model_len", 4096)),
                engine_core=_Cfg(shutdown=lambda: _log({"kind": "shutdown", "pid": os.getpid()})),
            )
            if os.environ.get("FAKE_VLLM_FORK_CORE"):
                # vLLM forks its engine core, which keeps the engine's pipes and outlives it
                if os.fork() == 0:
                    import time
                    time.sleep(float(os.environ["FAKE_VLLM_FORK_CORE"]))
                    os._exit(0)
            _log({"kind": "init", "model": model, "kwargs": kwargs, "pid": os.getpid(),
                  "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "cores": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")})

        def chat(self, messages, sampling_params=None, use_tqdm=True, chat_template_kwargs=None, **kw):
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(messages)
            _log({"kind": "chat", "n_requests": len(messages), "pid": os.getpid(), "tk": chat_template_kwargs,
                  "seeds": [p.seed for p in params], "n": [p.n for p in params]})
            outs = []
            for conv, p in zip(messages, params):
                text = conv[-1]["content"]
                if text == "DIE":
                    os._exit(3)
                if text == "KILLED":
                    import signal
                    os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer
                if text == "BUSY":
                    import time
                    time.sleep(120)  # a long batch: reads no stop message until it ends
                words = text.split()
                n_tok = min(len(words), p.max_tokens)
                reason = "length" if len(words) > p.max_tokens else "stop"
                info = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "seed": p.seed, "tk": chat_template_kwargs,
                        "pid": os.getpid()}
                out = CompletionOutput(0, " ".join(words[:n_tok]) + " | " + json.dumps(info, sort_keys=True),
                                       list(range(n_tok)), reason)
                outs.append(RequestOutput(list(range(len(words) + 3)), [out]))
            return outs
    '''
)


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    pkg = tmp_path / "fakevllm" / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_VLLM)
    log = tmp_path / "vllm_calls.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)

    def calls(kind=None):
        if not log.exists():
            return []
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        return [r for r in rows if kind is None or r["kind"] == kind]

    yield calls
    sys.modules.pop("vllm", None)


def _cfg(**kw):
    return BackendConfig(kind="vllm", model="Qwen/Qwen3-4B", **kw)


def _info(c):
    return json.loads(c.text.split(" | ")[1])


def test_engine_arguments_come_from_the_config(fake_vllm):
    from skilldistill.llm.factory import make_backend
    from skilldistill.llm.vllm_backend import VLLMBackend

    b = make_backend(_cfg(tensor_parallel_size=2, gpu_memory_utilization=0.8, enable_prefix_caching=False,
                          max_model_len=20480, dtype="bfloat16", kv_cache_memory_gb=2, model_kwargs={"seed": 1}))
    try:
        assert isinstance(b, VLLMBackend) and b.name == "vllm"
        [init] = fake_vllm("init")
        assert init["model"] == "Qwen/Qwen3-4B"
        assert init["kwargs"] == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8,
                                  "enable_prefix_caching": False, "dtype": "bfloat16", "trust_remote_code": False,
                                  "enforce_eager": False, "max_model_len": 20480, "kv_cache_memory_bytes": 2 << 30,
                                  "seed": 1}
        assert b.info[0]["vllm"] == "0.0-fake"
    finally:
        b.close()
    assert fake_vllm("shutdown")  # close() shuts the engine core down and ends the process


def test_cpu_build_turns_chunked_prefill_off_for_seeded_sampling():
    from skilldistill.llm.vllm_backend import llm_kwargs

    cpu = llm_kwargs(_cfg(max_model_len=8192), cpu=True)
    assert cpu["enable_chunked_prefill"] is False and cpu["max_num_batched_tokens"] == 8192
    gpu = llm_kwargs(_cfg(max_model_len=8192), cpu=False)
    assert "enable_chunked_prefill" not in gpu  # vLLM's own default on GPUs
    assert llm_kwargs(_cfg(enable_chunked_prefill=True), cpu=True)["enable_chunked_prefill"] is True


def test_one_request_per_sample_with_its_own_seed(fake_vllm):
    from skilldistill.llm.vllm_backend import VLLMBackend

    b = VLLMBackend(_cfg(), chunk_size=3)
    try:
        convs = [[{"role": "user", "content": " ".join(["w"] * k)}] for k in (3, 10, 5)]
        seen, done = [], []
        params = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=6, n=2, seed=7,
                                chat_template_kwargs={"enable_thinking": True})
        out = b.chat(convs, params, on_result=lambda i, c: seen.append(i), progress=done.append)
    finally:
        b.close()
    chats = fake_vllm("chat")
    assert [c["n_requests"] for c in chats] == [3, 3]  # 6 requests, chunks of 3
    assert all(n == 1 for c in chats for n in c["n"])  # n samples = n requests
    assert [s for c in chats for s in c["seeds"]] == [7, 8, 7, 8, 7, 8]  # seed + k without explicit seeds
    assert all(c["tk"] == {"enable_thinking": True} for c in chats)
    assert seen == [0, 1, 2] and done == [1, 2]  # conversation 1's 2nd sample came with the 2nd chunk
    assert [len(c) for c in out] == [2, 2, 2]
    first = out[0][0]
    assert first.finish_reason == "stop" and first.completion_tokens == 3 and first.prompt_tokens == 6
    assert out[1][0].finish_reason == "length" and out[1][0].completion_tokens == 6


def test_explicit_seeds_reach_each_request(fake_vllm):
    from skilldistill.llm.vllm_backend import VLLMBackend

    b = VLLMBackend(_cfg())
    try:
        convs = [[{"role": "user", "content": f"q {i}"}] for i in range(2)]
        out = b.chat(convs, SamplingParams(n=3, max_tokens=4), seeds=[[11, 12, 13], [21, 22, 23]])
        with pytest.raises(ValueError, match="3 seed"):
            b.chat(convs, SamplingParams(n=3, max_tokens=4), seeds=[[1, 2], [3, 4]])
    finally:
        b.close()
    assert [[_info(c)["seed"] for c in comps] for comps in out] == [[11, 12, 13], [21, 22, 23]]


def test_missing_vllm_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    from skilldistill.llm.vllm_backend import VLLMBackend

    with pytest.raises(ConfigError, match=r"pip install 'skilldistill\[vllm\]'"):
        VLLMBackend(_cfg())


def test_unloadable_student_is_a_config_error(fake_vllm):
    from skilldistill.llm.vllm_backend import VLLMBackend

    with pytest.raises(ConfigError, match="cannot load student model 'missing/model'.*not a local folder"):
        VLLMBackend(BackendConfig(kind="vllm", model="missing/model"))


def test_data_parallel_engines_each_get_their_own_gpus(fake_vllm, monkeypatch):
    from skilldistill.llm.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    b = VLLMBackend(_cfg(data_parallel_size=2, tensor_parallel_size=2))
    try:
        convs = [[{"role": "user", "content": f"question number {i}"}] for i in range(5)]
        seen = []
        out = b.chat(convs, SamplingParams(max_tokens=2, n=1, seed=1), on_result=lambda i, c: seen.append(i))
    finally:
        b.close()
    assert sorted(seen) == list(range(5))
    assert {i["gpus"] for i in fake_vllm("init")} == {"0,1", "2,3"}
    assert {_info(c[0])["gpus"] for c in out} == {"0,1", "2,3"}  # both engines served requests
    assert [c[0].text.split(" | ")[0] for c in out] == ["question number"] * 5  # input order
    assert all(c[0].finish_reason == "length" for c in out)


def test_a_small_benchmark_keeps_every_engine_busy(fake_vllm, monkeypatch):
    # 3 problems x 8 samples with 4 engines: the samples of one problem are spread out,
    # instead of one 512-conversation chunk landing on a single engine.
    from skilldistill.llm.vllm_backend import VLLMBackend, chunk_size_for

    assert chunk_size_for(240, 8, 1024) == 4 and chunk_size_for(10_000, 8, 1024) == 157
    assert chunk_size_for(100, 1, 1024) == 100 and chunk_size_for(5000, 1, 1024) == 1024
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    b = VLLMBackend(_cfg(data_parallel_size=4))
    try:
        out = b.chat([[{"role": "user", "content": f"p{i}"}] for i in range(3)], SamplingParams(n=8, max_tokens=2, seed=0))
    finally:
        b.close()
    chats = fake_vllm("chat")
    assert len({c["pid"] for c in chats}) == 4
    assert sum(c["n_requests"] for c in chats) == 24
    assert [[_info(c)["seed"] for c in comps] for comps in out] == [list(range(8))] * 3


def test_cpu_engines_are_pinned_to_their_own_cores(fake_vllm, monkeypatch):
    import os

    from skilldistill.llm import vllm_backend

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    monkeypatch.setattr(vllm_backend, "_is_cpu_build", lambda: True)
    b = vllm_backend.VLLMBackend(_cfg(data_parallel_size=2))
    b.close()
    cores = [i["cores"] for i in fake_vllm("init")]
    assert len(cores) == 2 and len(set(cores)) == 2 and all(cores)


def test_a_dead_engine_is_a_clear_error_and_stops_the_others(fake_vllm, monkeypatch):
    from skilldistill.llm.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    b = VLLMBackend(_cfg(data_parallel_size=2), chunk_size=1)
    procs = [w.proc for w in b.engines]
    convs = [[{"role": "user", "content": "DIE"}]] + [[{"role": "user", "content": f"ok {i}"}] for i in range(5)]
    with pytest.raises(RuntimeError, match=r"vLLM engine \d of 2 died .*exited with code 3.*other engines were stopped"):
        b.chat(convs, SamplingParams(n=1, max_tokens=2))
    assert all(p.poll() is not None for p in procs)  # no engine left running
    assert b.engines == []
    with pytest.raises(RuntimeError, match="closed"):
        b.chat(convs[1:], SamplingParams(n=1, max_tokens=2))


def test_a_killed_engine_whose_forked_core_holds_its_pipe_is_noticed_and_a_busy_one_stopped_fast(
        fake_vllm, monkeypatch):
    import time

    from skilldistill.llm.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("FAKE_VLLM_FORK_CORE", "60")  # each engine's "core" keeps its pipes for a minute
    b = VLLMBackend(_cfg(data_parallel_size=2), chunk_size=1)
    procs = [w.proc for w in b.engines]
    convs = [[{"role": "user", "content": "BUSY"}], [{"role": "user", "content": "KILLED"}]]
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"vLLM engine 1 of 2 died \(worker vllm-engine-1 was killed by signal 9\); the other engines were stopped"):
        b.chat(convs, SamplingParams(n=1, max_tokens=2))
    # noticed by polling (the pipe never closed), and the busy engine stopped without its 60 s wait
    assert time.monotonic() - t0 < 20
    assert all(p.poll() is not None for p in procs) and b.engines == []


def test_works_from_a_plain_script_without_a_main_guard(fake_vllm, tmp_path):
    # spawn-based children would re-run this script's top level and die; ours do not
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent('''
        from skilldistill.llm.base import BackendConfig, SamplingParams
        from skilldistill.llm.vllm_backend import VLLMBackend
        b = VLLMBackend(BackendConfig(kind="vllm", model="m"))
        out = b.chat([[{"role": "user", "content": "a b c"}]], SamplingParams(n=2, max_tokens=5, seed=0))
        b.close()
        print("SAMPLES", len(out[0]))
    '''))
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SAMPLES 2" in r.stdout


def test_data_parallel_needs_enough_gpus(fake_vllm, monkeypatch):
    from skilldistill.llm.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ConfigError, match="needs 4 GPUs; 2 visible"):
        VLLMBackend(_cfg(data_parallel_size=2, tensor_parallel_size=2))
