"""Two training processes against one, on this machine's CPU cores (gloo), side by side.

    python bench/distributed_training.py             # 256 demo problems, 2 epochs
    python bench/distributed_training.py --problems 512 --epochs 1

Runs ``skilldistill.train`` on the same formatted demo data and seed three ways, each with
one thread per process (so two processes use the two cores, one process one core):

  one x 8     one process, batch 8 per optimizer step
  one x 4     one process, batch 4: the per-step compute of each rank below
  two x 4     ``accelerate launch`` (recipes/accelerate/cpu-ddp.yaml), two ranks x batch 4

and prints, per run, the wall time of the whole command (process start, imports, loading,
training, saving) and the trainer's own train_runtime per optimizer step. The cost of
running across processes is read two ways: the per-step time of two x 4 over one x 4 (the
same per-process compute, plus gradient all-reduce and waiting on the slower rank), and a
gloo all-reduce of the student's gradient (its parameter count in float32) timed alone in
two processes. Equivalence of the results is the tests' job (tests/test_train_distributed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_DDP = REPO / "recipes" / "accelerate" / "cpu-ddp.yaml"

ALLREDUCE_SCRIPT = """
import os, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
grad = torch.randn(int(os.environ["BENCH_PARAMS"]))
for _ in range(3):
    dist.all_reduce(grad)
times = []
for _ in range(int(os.environ["BENCH_REPS"])):
    dist.barrier()
    t = time.perf_counter()
    dist.all_reduce(grad)
    times.append(time.perf_counter() - t)
if dist.get_rank() == 0:
    times.sort()
    print(times[len(times) // 2])
dist.destroy_process_group()
"""


def demo_data(work: Path, problems: int) -> Path:
    from skilldistill.demo.generator import generate_corpus, write_corpus
    from skilldistill.format import FormatConfig, run_format

    table = generate_corpus(problems, seed=0)
    table = table.rename_columns(["skills" if c == "true_skills" else c for c in table.column_names])
    write_corpus(table, work / "selection.parquet")
    run_format(work / "selection.parquet", work / "format", FormatConfig(style="skill-aware"), progress=False)
    return work / "format"


def student() -> Path:
    import skilldistill.demo

    return Path(skilldistill.demo.__file__).parent / "base_student"


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train(data: Path, out: Path, batch: int, epochs: int, processes: int) -> dict:
    args = ["-m", "skilldistill.train", str(data), "--model", str(student()), "--out", str(out),
            "--batch-size", str(batch), "--grad-accum", "1", "--epochs", str(epochs), "--lr", "1e-3", "--fp32",
            "--seed", "0", "--sft", "save_strategy=steps", "--sft", "save_steps=1000000"]
    cmd = [sys.executable, *args] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP),
        "--num_processes", str(processes), *args]
    started = time.perf_counter()
    subprocess.run(cmd, env=env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": time.perf_counter() - started, "train_s": metrics["train_runtime"],
            "steps": metrics["global_step"], "step_ms": 1000 * metrics["train_runtime"] / metrics["global_step"]}


def allreduce_ms(params: int, reps: int = 50) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ALLREDUCE_SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29561", f.name],
                         env={**env(), "BENCH_PARAMS": str(params), "BENCH_REPS": str(reps)},
                         capture_output=True, text=True, check=True)
    return 1000 * float(out.stdout.strip().splitlines()[-1])


def parameter_count() -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(student()).parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three runs (medians are printed)")
    args = parser.parse_args()
    runs = {"one x 8": (8, 1), "one x 4": (4, 1), "two x 4": (4, 2)}
    results: dict[str, list[dict]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        data = demo_data(Path(tmp), args.problems)
        for repeat in range(args.repeats):
            for name, (batch, processes) in runs.items():  # interleaved: load spikes hit every run
                out = Path(tmp) / f"{name.replace(' ', '')}-{repeat}"
                results[name].append(train(data, out, batch, args.epochs, processes))
    params = parameter_count()
    comm = allreduce_ms(params)
    print(f"{args.problems} demo problems x {args.epochs} epochs, medians of {args.repeats}; one thread per process")
    print(f"{'run':<9} {'wall s':>7} {'train s':>8} {'steps':>6} {'ms/step':>8}")
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    for name, m in median.items():
        print(f"{name:<9} {m['wall_s']:>7.1f} {m['train_s']:>8.1f} {m['steps']:>6.0f} {m['step_ms']:>8.1f}")
    two, one4, one8 = median["two x 4"], median["one x 4"], median["one x 8"]
    print(f"two x 4 / one x 8, wall time: {two['wall_s'] / one8['wall_s']:.2f}x; train time: "
          f"{two['train_s'] / one8['train_s']:.2f}x")
    overhead = two["step_ms"] - one4["step_ms"]
    print(f"per step, two x 4 over one x 4 (same compute per process): +{overhead:.1f} ms "
          f"({100 * overhead / two['step_ms']:.0f}% of a two-rank step)")
    print(f"gloo all-reduce of {params:,} float32 gradients, alone: {comm:.2f} ms "
          f"({100 * comm / two['step_ms']:.0f}% of a two-rank step)")


if __name__ == "__main__":
    main()
