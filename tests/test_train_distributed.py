"""Training across processes, executed: ``accelerate launch`` with two CPU processes (gloo)
of the demo student, against one process on the same data and seed.

What a CPU can show of the paper's multi-GPU path: DDP and DeepSpeed ZeRO-2/3 run here
(DeepSpeed on its CPU accelerator); FSDP does not (accelerate sets its FSDP mode only for
accelerator devices), so an FSDP config is refused on CPU and its positive test needs GPUs.
Figures measured with these tests are in docs/train.md ("Across processes").
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributed.processes import kill_tree, rank_process, wait_for_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = REPO / "recipes" / "accelerate"
CPU_DDP = ACCELERATE_CONFIGS / "cpu-ddp.yaml"
AUDIT_SITE = Path(__file__).resolve().parent / "distributed" / "site"
BATCHES_SCRIPT = Path(__file__).resolve().parent / "distributed" / "batches_per_step.py"

# The same run everywhere: 64 demo problems, 2 epochs, a checkpoint every 4 steps.
COMMON = ["--epochs", "2", "--lr", "1e-3", "--fp32", "--grad-accum", "1", "--seed", "0",
          "--sft", "save_strategy=steps", "--sft", "save_steps=4", "--sft", "save_total_limit=2",
          "--sft", "gradient_checkpointing=false"]
# Two ranks x 4 against one process x 8 differ only in the order float32 sums run (each
# rank's mean, then the all-reduce): measured max |dw| 1.6e-6 (DDP), 3.7e-6 (LoRA, merged),
# 5.5e-7 / 5.8e-7 (ZeRO-2 / ZeRO-3) after 16 Adam steps at lr 1e-3 (docs/train.md). The bound
# is ten times the largest; a real defect (an example dropped or seen twice, a missing
# all-reduce, ranks drawing their own dropout masks: 2.8e-2) is three orders above it.
LOSS_REL_TOL = 1e-5
WEIGHT_ABS_TOL = 5e-5


def demo_student() -> Path:
    import skilldistill.demo

    return Path(skilldistill.demo.__file__).parent / "base_student"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A format-stage folder: 64 demo problems in the skill-aware style."""
    from skilldistill.demo.generator import generate_corpus, write_corpus
    from skilldistill.format import FormatConfig, run_format

    folder = tmp_path_factory.mktemp("distributed-data")
    table = generate_corpus(64, seed=0)
    table = table.rename_columns(["skills" if c == "true_skills" else c for c in table.column_names])
    write_corpus(table, folder / "selection.parquet")
    run_format(folder / "selection.parquet", folder / "format", FormatConfig(style="skill-aware"), progress=False)
    return folder / "format"


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}
    env.pop("RANK", None)
    return env


def launch_command(config: Path, processes: int, *train_args: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(processes), *extra, "-m", "skilldistill.train", *train_args]


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env or child_env(), capture_output=True, text=True, timeout=timeout)
    return done


def train_args(data: Path, out: Path, batch: int, *more: str) -> list[str]:
    return [str(data), "--model", str(demo_student()), "--out", str(out), "--batch-size", str(batch), *COMMON, *more]


def check_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


def audited_env(root: Path, log: Path) -> dict[str, str]:
    """Every rank but 0 records what it writes under ``root`` (tests/distributed/site)."""
    path = os.pathsep.join([str(AUDIT_SITE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return child_env(PYTHONPATH=path, SKILLDISTILL_AUDIT_ROOT=str(root), SKILLDISTILL_AUDIT_LOG=str(log))


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_abs_diff(a: Path, b: Path) -> float:
    import torch

    wa, wb = weights(a), weights(b)
    for w in (wa, wb):  # DeepSpeed writes the demo student's tied lm_head out: it is the embedding
        if "lm_head.weight" in w and "lm_head.weight" not in (wb if w is wa else wa):
            assert torch.equal(w.pop("lm_head.weight"), w["model.embed_tokens.weight"])
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def losses(out: Path) -> list[tuple[int, float]]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [(h["step"], h["loss"]) for h in history if "loss" in h]


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def one_process(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one-process") / "run"
    check_ok(run([sys.executable, "-m", "skilldistill.train", *train_args(demo_data, out, 8)], env=child_env()))
    return out


@pytest.fixture(scope="module")
def two_ranks(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("two-ranks")
    out, log = root / "run", root / "audit"
    started = time.perf_counter()
    check_ok(run(launch_command(CPU_DDP, 2, *train_args(demo_data, out, 4)), env=audited_env(out, log)))
    return {"out": out, "audit": log, "wall_s": time.perf_counter() - started}


# -- (1) two processes, the documented command ------------------------------------------------
def test_two_ranks_record_world_size_and_effective_batch(two_ranks):
    m = metrics(two_ranks["out"])
    assert m["world_size"] == 2
    assert m["distributed_type"] == "MULTI_CPU"
    assert m["per_device_train_batch_size"] == 4 and m["effective_batch_size"] == 8
    assert m["global_step"] == 16  # 64 examples x 2 epochs / 8 per optimizer step


# -- (3) equivalence ----------------------------------------------------------------------------
def test_two_ranks_match_one_process_with_twice_the_batch(one_process, two_ranks):
    alone, ranks = losses(one_process), losses(two_ranks["out"])
    assert [s for s, _ in alone] == [s for s, _ in ranks] == list(range(1, 17))
    for (_, a), (_, b) in zip(alone, ranks, strict=True):
        assert b == pytest.approx(a, rel=LOSS_REL_TOL)
    diff = max_abs_diff(one_process / "final", two_ranks["out"] / "final")
    print(f"DDP 2x4 vs 1x8: max |dw| = {diff:.3g}")
    assert diff < WEIGHT_ABS_TOL


def test_each_optimizer_step_sees_the_same_examples(demo_data, tmp_path):
    """The seeded sampler draws one permutation on every rank; accelerate deals its batches
    of b out in turn (rank r takes batch k*world + r), so step k of two ranks x b holds the
    2b examples that step k of one process x 2b holds."""
    prefix_two, prefix_one = tmp_path / "two" / "steps", tmp_path / "one" / "steps"
    prefix_two.parent.mkdir()
    prefix_one.parent.mkdir()
    script = [str(BATCHES_SCRIPT), str(demo_data), str(demo_student())]
    check_ok(run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP),
                  "--num_processes", "2", *script, str(prefix_two), "4"]))
    check_ok(run([sys.executable, *script, str(prefix_one), "8"]))
    rank0 = json.loads(Path(f"{prefix_two}-rank0.json").read_text())
    rank1 = json.loads(Path(f"{prefix_two}-rank1.json").read_text())
    alone = json.loads(Path(f"{prefix_one}-rank0.json").read_text())
    assert len(alone) == len(rank0) == len(rank1) == 8
    for step, (a, b, c) in enumerate(zip(rank0, rank1, alone, strict=True)):
        assert not set(a) & set(b), f"step {step}: an example on both ranks"
        assert sorted(a + b) == c, f"step {step}: the two ranks' examples differ from the one process's"


# -- (4) only rank 0 writes; final/ is complete and loads ------------------------------------------
def test_only_rank_0_writes_the_run_files(two_ranks):
    out = two_ranks["out"]
    for name in ("manifest.json", "metrics.json", "loss.png", "trainer_state.json", "train_config.json"):
        assert (out / name).is_file(), name
    written = []
    for log in two_ranks["audit"].parent.glob("audit-*"):
        written += log.read_text().split()
    assert written, "the audit saw nothing: rank 1 writes at least its RNG state into each checkpoint"
    # transformers saves each rank's RNG state into the checkpoint (making its folder if rank 0
    # has not yet); nothing else is rank 1's.
    others = [p for p in written if not (Path(p).name.startswith("rng_state_1")
                                         or (Path(p).parent == out and Path(p).name.startswith("checkpoint-")))]
    assert not others, f"rank 1 wrote {others}"


def test_final_is_complete_and_loads_through_the_evaluation_backend(two_ranks):
    from skilldistill.llm.base import BackendConfig, SamplingParams
    from skilldistill.llm.hf_backend import TransformersBackend

    final = two_ranks["out"] / "final"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (final / name).is_file(), name
    backend = TransformersBackend(BackendConfig(kind="transformers", model=str(final), device="cpu"))
    try:
        answers = backend.chat([[{"role": "user", "content": "A room is 6 by 7. What is its perimeter?"}]],
                               SamplingParams(temperature=0.0, max_tokens=40, seed=0))
    finally:
        backend.close()
    assert answers[0][0].text.strip()


def test_certified_checkpoints_are_kept_and_rotated(two_ranks):
    from skilldistill.train.checkpoints import CHECKPOINT_MARKER, last_complete_checkpoint

    out = two_ranks["out"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-16"]  # save_total_limit 2
    marker = json.loads((out / "checkpoint-16" / CHECKPOINT_MARKER).read_text())
    assert marker["world_size"] == 2 and marker["step"] == 16
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "trainer_state.json"} <= set(marker["files"])
    assert last_complete_checkpoint(out) == out / "checkpoint-16"


# -- (5) a checkpoint cut while it was written is never resumed --------------------------------------
def test_a_checkpoint_cut_while_saving_is_not_resumed(two_ranks, tmp_path):
    """What a kill during saving leaves: a folder without the marker (a rank still saving),
    or a certified folder whose files no longer match (cut after certification)."""
    from skilldistill.train.checkpoints import CHECKPOINT_MARKER, last_complete_checkpoint

    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(two_ranks["out"] / "checkpoint-12", out / "checkpoint-12")
    shutil.copytree(two_ranks["out"] / "checkpoint-16", out / "checkpoint-16")
    (out / "checkpoint-16" / CHECKPOINT_MARKER).unlink()
    assert last_complete_checkpoint(out) == out / "checkpoint-12"
    rng = out / "checkpoint-12" / "rng_state_1.pth"
    rng.write_bytes(rng.read_bytes()[:100])
    assert last_complete_checkpoint(out) is None


# -- LoRA: merged once, on the main rank -----------------------------------------------------------
def test_lora_two_ranks_match_one_process_and_merge_once(demo_data, tmp_path):
    # No LoRA dropout here: its masks come from each process's own random stream, so with
    # dropout two ranks and one process are equivalent in distribution, not step by step.
    (tmp_path / "lora.yaml").write_text("lora_dropout: 0.0\n")
    lora = ["--lora", "--lora-r", "8", "--lr", "5e-3", "--config", str(tmp_path / "lora.yaml")]
    alone, ranks, log = tmp_path / "alone", tmp_path / "ranks", tmp_path / "audit"
    check_ok(run([sys.executable, "-m", "skilldistill.train", *train_args(demo_data, alone, 8, *lora)]))
    check_ok(run(launch_command(CPU_DDP, 2, *train_args(demo_data, ranks, 4, *lora)), env=audited_env(ranks, log)))
    assert (ranks / "adapter" / "adapter_model.safetensors").is_file()
    assert metrics(ranks)["lora"] is True and metrics(ranks)["world_size"] == 2
    diff = max_abs_diff(alone / "final", ranks / "final")
    print(f"LoRA DDP 2x4 vs 1x8, merged: max |dw| = {diff:.3g}")
    assert diff < WEIGHT_ABS_TOL
    written = [p for f in tmp_path.glob("audit-*") for p in f.read_text().split()]
    assert not [p for p in written if "/final" in p or "/adapter" in p], "rank 1 wrote the model"


# -- (2) DeepSpeed ZeRO-2/3 on its CPU accelerator; FSDP needs GPUs ---------------------------------
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_two_ranks_match_one_process(stage, demo_data, one_process, tmp_path):
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (pip install skilldistill[deepspeed])")
    out = tmp_path / "run"
    config = ACCELERATE_CONFIGS / f"zero{stage}.yaml"  # the shipped GPU config, sized for this machine
    check_ok(run(launch_command(config, 2, *train_args(demo_data, out, 4), extra=("--mixed_precision", "no"))))
    m = metrics(out)
    assert m["distributed_type"] == "DEEPSPEED" and m["world_size"] == 2
    diff = max_abs_diff(one_process / "final", out / "final")
    print(f"ZeRO-{stage} 2x4 vs 1x8: max |dw| = {diff:.3g}")
    assert diff < WEIGHT_ABS_TOL


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.mark.skipif(_gpus() > 0, reason="on a GPU machine FSDP runs (scripts/gpu-check)")
def test_fsdp_config_is_refused_without_a_gpu(demo_data, tmp_path):
    out = tmp_path / "run"
    done = run(launch_command(ACCELERATE_CONFIGS / "fsdp.yaml", 2, *train_args(demo_data, out, 4),
                              extra=("--mixed_precision", "no")))
    assert done.returncode != 0
    assert "asks for FSDP, but this machine has no GPU" in done.stdout + done.stderr
    assert not (out / "train_config.json").exists() and not (out / "final").exists()


@pytest.mark.skipif(_gpus() < 2, reason="FSDP needs accelerator devices: accelerate 1.16 sets its FSDP mode only "
                    "for them and runs an FSDP config on CPU as plain data parallel (MULTI_CPU), which the train "
                    "stage refuses (test_fsdp_config_is_refused_without_a_gpu); scripts/gpu-check runs FSDP on GPUs")
def test_fsdp_two_ranks_write_a_full_final_model(demo_data, one_process, tmp_path):
    out = tmp_path / "run"
    check_ok(run(launch_command(ACCELERATE_CONFIGS / "fsdp.yaml", 2, *train_args(demo_data, out, 4),
                                extra=("--mixed_precision", "no"))))
    assert metrics(out)["distributed_type"] == "FSDP"
    assert max_abs_diff(one_process / "final", out / "final") < 1e-3


# -- (5) kill -9 of one rank, then a rerun resumes --------------------------------------------------
def test_kill_of_one_rank_ends_the_launch_and_a_rerun_resumes_to_the_same_weights(demo_data, tmp_path):
    more = ["--epochs", "6", "--sft", "save_steps=8"]  # 48 steps: long enough to be cut in the middle
    reference, out = tmp_path / "reference", tmp_path / "run"
    check_ok(run(launch_command(CPU_DDP, 2, *train_args(demo_data, reference, 4, *more))))

    launcher = subprocess.Popen(launch_command(CPU_DDP, 2, *train_args(demo_data, out, 4, *more)), env=child_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rank1 = rank_process(launcher, "1")
        wait_for_checkpoint(out, 8, launcher)
        killed_at = time.monotonic()
        rank1.send_signal(signal.SIGKILL)
        code = launcher.wait(timeout=120)
        ended_after = time.monotonic() - killed_at
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)
    print(f"kill -9 of rank 1: accelerate launch exited {code} after {ended_after:.1f} s")
    assert code != 0 and ended_after < 60
    assert not (out / "final").exists() and not (out / "manifest.json").exists()

    check_ok(run(launch_command(CPU_DDP, 2, *train_args(demo_data, out, 4, *more))))
    resumed_from = metrics(out)["resumed_from"]
    assert resumed_from is not None and Path(resumed_from).name.startswith("checkpoint-")
    assert metrics(out)["global_step"] == 48
    diff = max_abs_diff(reference / "final", out / "final")
    print(f"resumed from {Path(resumed_from).name}: max |dw| against the uninterrupted run = {diff:.3g}")
    assert diff < WEIGHT_ABS_TOL


def test_a_stalled_rank_fails_the_launch_after_ddp_timeout(demo_data, tmp_path):
    """SIGSTOP of rank 1: rank 0's next collective gives up after ddp_timeout (gloo on CPU
    too: the stage forms the process group with it), and the launch ends."""
    (tmp_path / "timeout.yaml").write_text("ddp_timeout: 10\n")
    out = tmp_path / "run"
    more = ["--epochs", "40", "--sft", "save_steps=8", "--config", str(tmp_path / "timeout.yaml")]
    log = (tmp_path / "launch.log").open("w")
    launcher = subprocess.Popen(launch_command(CPU_DDP, 2, *train_args(demo_data, out, 4, *more)), env=child_env(),
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        rank1 = rank_process(launcher, "1")
        wait_for_checkpoint(out, 8, launcher)
        rank1.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        launcher.wait(timeout=240)
        ended_after = time.monotonic() - stopped_at
    finally:
        kill_tree(launcher)
        log.close()
    output = (tmp_path / "launch.log").read_text()
    print(f"SIGSTOP of rank 1, ddp_timeout 10 s: accelerate launch exited {launcher.returncode} after {ended_after:.0f} s")
    assert launcher.returncode != 0
    assert "Timed out waiting 10000ms" in output
    assert ended_after < 120  # 10 s timeout, then torchrun stops the frozen rank (SIGTERM, 30 s, SIGKILL)


def test_resuming_deepspeed_state_with_another_process_count_is_refused(tmp_path):
    from skilldistill.errors import ConfigError
    from skilldistill.train.checkpoints import check_resumable, mark_complete

    folder = tmp_path / "checkpoint-8"
    folder.mkdir()
    (folder / "trainer_state.json").write_text("{}")
    mark_complete(folder, step=8, world_size=2, distributed_type="DEEPSPEED")
    check_resumable(folder, world_size=2, deepspeed=True)
    with pytest.raises(ConfigError, match="sharded over 2 processes, and this launch has 4"):
        check_resumable(folder, world_size=4, deepspeed=True)
    with pytest.raises(ConfigError, match="saved by DeepSpeed, and this launch does not use DeepSpeed"):
        check_resumable(folder, world_size=2, deepspeed=False)
    mark_complete(folder, step=8, world_size=2, distributed_type="MULTI_CPU")
    check_resumable(folder, world_size=1, deepspeed=False)  # DDP state is whole on every rank
    with pytest.raises(ConfigError, match="saved without DeepSpeed"):
        check_resumable(folder, world_size=2, deepspeed=True)


# -- (6) bf16 on CPU: the paper preset's precision path ----------------------------------------------
def test_paper_preset_bf16_runs_an_optimizer_step_on_cpu(demo_data, tmp_path):
    out = tmp_path / "run"
    check_ok(run([sys.executable, "-m", "skilldistill.train", str(demo_data), "--model", str(demo_student()),
                  "--out", str(out), "--preset", "paper", "--max-steps", "1", "--max-length", "512"]))
    m = metrics(out)
    assert m["bf16"] is True and m["global_step"] == 1
    assert m["loss_first"] is not None and m["loss_first"] == m["loss_first"]  # a number, not NaN
    assert (out / "final" / "model.safetensors").is_file()
