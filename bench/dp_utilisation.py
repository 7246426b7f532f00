"""Data-parallel vLLM: do all engines stay busy? Wall time against total work / engines.

    python bench/dp_utilisation.py                       # fake engines of fixed per-token latency
    .venv-engines/bin/python bench/dp_utilisation.py --real --engines 2   # vLLM's CPU build, 2 engines

Target (issue 16): wall time <= 1.25 x (total work / engines) on every workload.

Fake part: each engine is a real engine process of the backend (``skilldistill.llm.
vllm_engine``) running a stand-in ``vllm`` whose ``LLM.chat`` sleeps ``tokens x latency``
per request, one request after another (fixed per-token latency, lengths drawn from a
long-tailed distribution as reasoning traces are). Total work is the sum of those sleeps;
the ideal wall time is total / engines. Printed side by side with the previous scheme,
fixed chunks of 512 conversations with the n samples of a conversation inside one request
(simulated on the same request costs): a 30-problem benchmark with 8 samples is one chunk,
so one engine of 8 does all of it.

Real part (``--real``): the demo student on vLLM's CPU build with ``--engines`` engines,
each pinned to its own cores; total work is the sum of the engines' busy time
(``VLLMBackend.busy_s``), against the wall time of the same batch.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FAKE = textwrap.dedent(
    '''
    import os, time
    from dataclasses import dataclass, field
    __version__ = "bench-fake"
    LATENCY = float(os.environ["BENCH_TOKEN_LATENCY"])

    class SamplingParams:
        def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None, stop=None, **kw):
            self.max_tokens, self.seed = max_tokens, seed

    @dataclass
    class Out:
        index: int
        text: str
        token_ids: list
        finish_reason: str

    @dataclass
    class Req:
        prompt_token_ids: list
        outputs: list = field(default_factory=list)

    class _C:
        def __init__(self, **kw): self.__dict__.update(kw)

    class LLM:
        def __init__(self, model, **kw):
            self.llm_engine = _C(vllm_config=_C(scheduler_config=_C(enable_chunked_prefill=False)),
                                 model_config=_C(max_model_len=4096), engine_core=_C(shutdown=lambda: None))

        def chat(self, messages, sampling_params=None, use_tqdm=False, chat_template_kwargs=None, **kw):
            outs = []
            for conv, p in zip(messages, sampling_params):
                n_tok = int(conv[-1]["content"].split()[p.seed % 8 + 1])  # this sample's length
                time.sleep(n_tok * LATENCY)
                outs.append(Req([0], [Out(0, "x", list(range(n_tok)), "stop")]))
            return outs
    '''
)


def workload(name: str) -> tuple[int, int]:
    return {"aime (30 x 8)": (30, 8), "math500 (500 x 1)": (500, 1), "amc (40 x 8)": (40, 8),
            "profile (2000 x 1)": (2000, 1)}[name]


def lengths(problems: int, n: int, rng: random.Random) -> list[list[int]]:
    # long-tailed lengths in tokens (lognormal, as reasoning traces)
    return [[max(1, int(rng.lognormvariate(4.0, 0.8))) for _ in range(n)] for _ in range(problems)]


def old_scheme_wall(lens: list[list[int]], engines: int, latency: float, chunk: int = 512) -> float:
    """Fixed chunks of `chunk` conversations (n samples each inside), greedy to free engines."""
    chunks = [lens[i:i + chunk] for i in range(0, len(lens), chunk)]
    free = [0.0] * engines
    for c in chunks:
        e = min(range(engines), key=free.__getitem__)
        free[e] += sum(sum(x) for x in c) * latency
    return max(free)


def run_fake(engines: int, latency: float, seed: int) -> int:
    from skilldistill.llm.base import BackendConfig, SamplingParams
    from skilldistill.llm.vllm_backend import VLLMBackend

    tmp = Path(tempfile.mkdtemp(prefix="dp_bench_"))
    (tmp / "vllm").mkdir()
    (tmp / "vllm" / "__init__.py").write_text(FAKE)
    sys.path.insert(0, str(tmp))
    os.environ["BENCH_TOKEN_LATENCY"] = str(latency)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(engines))
    rng = random.Random(seed)
    backend = VLLMBackend(BackendConfig(kind="vllm", model="fake", data_parallel_size=engines))
    print(f"fake engines: {engines}, {1000 * latency:.1f} ms per token (sequential per engine)\n")
    print(f"{'workload':20s} {'requests':>8s} {'work s':>8s} {'ideal s':>8s} {'wall s':>8s} {'wall/ideal':>10s} "
          f"{'old scheme':>10s} {'target':>7s}")
    ok = True
    try:
        for name in ("aime (30 x 8)", "amc (40 x 8)", "math500 (500 x 1)", "profile (2000 x 1)"):
            problems, n = workload(name)
            lens = lengths(problems, n, rng)
            # the fake reads sample k's length from the prompt: word k + 1 (seed % 8 == k here)
            convs = [[{"role": "user", "content": "q " + " ".join(str(x) for x in (row + [1] * 8)[:8])}] for row in lens]
            seeds = [[k for k in range(n)] for _ in lens]
            work = sum(sum(r) for r in lens) * latency
            ideal = work / engines
            backend.busy_s = [0.0] * engines
            t0 = time.perf_counter()
            backend.chat(convs, SamplingParams(n=n, max_tokens=10_000), seeds=seeds)
            wall = time.perf_counter() - t0
            old = old_scheme_wall(lens, engines, latency)
            passed = wall <= 1.25 * ideal
            ok &= passed
            print(f"{name:20s} {problems * n:8d} {work:8.2f} {ideal:8.2f} {wall:8.2f} {wall / ideal:10.2f} "
                  f"{old / ideal:10.2f} {'ok' if passed else 'MISSED':>7s}")
    finally:
        backend.close()
    print("\nwall/ideal: 1.00 is every engine busy all the time; old scheme: the same requests in fixed "
          "512-conversation chunks (simulated on the same costs).")
    return 0 if ok else 1


def run_real(engines: int, seed: int) -> int:
    from skilldistill.demo.generator import generate_eval_set
    from skilldistill.demo.student import (
        make_model,
        shipped_student,
        tokenizer_corpus,
        train_tokenizer,
    )
    from skilldistill.demo.student_config import StudentConfig
    from skilldistill.llm.base import BackendConfig, SamplingParams
    from skilldistill.llm.vllm_backend import VLLMBackend

    model = shipped_student(StudentConfig(plan_share=0.3))
    if model is None:  # a random-init student of the same shape
        model = Path(tempfile.mkdtemp(prefix="dp_bench_model_"))
        cfg = StudentConfig()
        tok = train_tokenizer(tokenizer_corpus(300, 0), cfg.vocab_size)
        m = make_model(tok, cfg)
        m.save_pretrained(model)
        tok.save_pretrained(model)
    rows = generate_eval_set(20, seed=seed, as_table=False)
    convs = [[{"role": "user", "content": r["question"]}] for r in rows]
    params = SamplingParams(n=4, temperature=0.8, top_p=1.0, max_tokens=96, seed=seed)
    cfg = BackendConfig(kind="vllm", model=str(model), dtype="float32", max_model_len=512, enforce_eager=True,
                        kv_cache_memory_gb=1.0, data_parallel_size=engines)
    backend = VLLMBackend(cfg)
    try:
        backend.chat(convs[:8], params)  # warm-up
        backend.busy_s = [0.0] * engines
        t0 = time.perf_counter()
        out = backend.chat(convs, params)
        wall = time.perf_counter() - t0
    finally:
        backend.close()
    work = sum(backend.busy_s)
    tokens = sum(c.completion_tokens or 0 for comps in out for c in comps)
    ideal = work / engines
    print(f"vLLM CPU build, {engines} engines: {len(convs)} prompts x 4 samples, {tokens} tokens")
    print(f"busy per engine: {', '.join(f'{b:.1f}s' for b in backend.busy_s)}; requests per engine: {backend.served}")
    print(f"work {work:.1f}s, ideal {ideal:.1f}s, wall {wall:.1f}s: wall/ideal {wall / ideal:.2f} "
          f"({'ok' if wall <= 1.25 * ideal else 'MISSED'}: target 1.25)")
    return 0 if wall <= 1.25 * ideal else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", type=int, default=8)
    ap.add_argument("--latency-ms", type=float, default=1.0, help="fake: milliseconds per token")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="vLLM's CPU build instead of fake engines")
    args = ap.parse_args()
    if args.real:
        return run_real(args.engines, args.seed)
    return run_fake(args.engines, args.latency_ms / 1000, args.seed)


if __name__ == "__main__":
    sys.exit(main())
