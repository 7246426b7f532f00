"""A recipe whose arms train under ``accelerate launch`` with two CPU processes: the run
finishes with its report, a second run on the folder is refused while training runs, a
rank killed mid-training stops the run with one line, a rerun finishes, and a bad launcher
config fails before anything in the run folder changes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributed.processes import kill_tree, rank_process
from skilldistill.errors import ConfigError
from skilldistill.orchestration.launch_config import check_launch

REPO = Path(__file__).resolve().parents[1]
CPU_DDP = REPO / "recipes" / "accelerate" / "cpu-ddp.yaml"
RECIPE = REPO / "recipes" / "demo-quick.yaml"


def skilldistill(*args: str) -> list[str]:
    return [sys.executable, "-m", "skilldistill.cli", *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def run_recipe_command(run_dir: Path, *sets: str) -> list[str]:
    return skilldistill("run", str(RECIPE), "--run-dir", str(run_dir), "--set", f"launcher.accelerate_config={CPU_DDP}",
                        "--set", "jobs=1", *[a for s in sets for a in ("--set", s)])


def folder_state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """demo-quick with two-rank training: first killed in its first arm's training (with a
    second run tried meanwhile), then rerun to the end."""
    import psutil

    root = tmp_path_factory.mktemp("distributed-recipe")
    run_dir, log = root / "run", root / "first-run.log"
    longer = "train.num_train_epochs=15"  # 120 steps: time to find and kill a rank mid-training
    with open(log, "w") as out:
        first = subprocess.Popen(run_recipe_command(run_dir, longer), env=child_env(), stdout=out,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        rank_process(first, "1")
        second = subprocess.run(run_recipe_command(run_dir, longer), env=child_env(), capture_output=True,
                                text=True, timeout=300)
        for _ in range(5):  # the rank seen before may have ended meanwhile: kill a live one
            try:
                rank_process(first, "1").send_signal(signal.SIGKILL)
                break
            except psutil.NoSuchProcess:
                continue
        killed_at = time.monotonic()
        first.wait(timeout=300)
        ended_after = time.monotonic() - killed_at
    finally:
        if first.poll() is None:
            kill_tree(first)
    output = log.read_text()
    rerun = subprocess.run(run_recipe_command(run_dir, longer), env=child_env(), capture_output=True, text=True,
                           timeout=1200)
    return {"run_dir": run_dir, "second": second, "killed": (first.returncode, output, ended_after), "rerun": rerun}


@pytest.mark.slow
def test_a_second_run_is_refused_while_two_ranks_train(distributed_run):
    second = distributed_run["second"]
    assert second.returncode == 2
    assert "is in use by skilldistill run demo-quick" in second.stderr


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_with_one_line(distributed_run):
    code, output, ended_after = distributed_run["killed"]
    assert code == 2 and ended_after < 60
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output[-3000:]
    line = error_lines[0]
    assert "train random-plain/seed0: accelerate launch exited with status" in line
    assert "random-plain/seed0/launch.log" in output  # the log to read (the line may wrap)


@pytest.mark.slow
def test_the_rerun_trains_every_arm_with_two_ranks_and_reports(distributed_run):
    rerun, run_dir = distributed_run["rerun"], distributed_run["run_dir"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (run_dir / "report" / "report.html").is_file() and (run_dir / "report" / "summary.json").is_file()
    arms = sorted(run_dir.glob("train/*/seed0/metrics.json"))
    assert [p.parent.parent.name for p in arms] == ["random-plain", "skill-skillaware"]
    for path in arms:
        m = json.loads(path.read_text())
        assert m["world_size"] == 2 and m["distributed_type"] == "MULTI_CPU"
        assert m["effective_batch_size"] == 8 * 2 * 2  # per device x accumulation x processes
        assert (path.parent / "launch.log").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "not-yaml", "not-a-mapping", "too-many-processes", "bad-count"])
def test_a_bad_launcher_fails_before_the_run_folder_changes(case, distributed_run, tmp_path):
    run_dir = distributed_run["run_dir"]
    before = folder_state(run_dir)
    config = tmp_path / "launch.yaml"
    overrides = []
    if case == "missing":
        config = tmp_path / "no-such.yaml"
    elif case == "not-yaml":
        config.write_text("distributed_type: [MULTI_GPU\n")
    elif case == "not-a-mapping":
        config.write_text("- MULTI_GPU\n")
    elif case == "too-many-processes":
        config.write_text(CPU_DDP.read_text().replace("num_processes: 2", "num_processes: 100000"))
    else:
        config.write_text(CPU_DDP.read_text())
        overrides = ["--set", "launcher.extra_args=[--num_processes, two]"]
    # --from train: the launcher is checked when a train stage is to run (a finished run
    # folder opens on any machine)
    cmd = skilldistill("run", str(RECIPE), "--run-dir", str(run_dir), "--from", "train",
                       "--set", f"launcher.accelerate_config={config}", *overrides)
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    expected = {"missing": "no-such.yaml", "not-yaml": "is not YAML", "not-a-mapping": "is not an accelerate config",
                "too-many-processes": "num_processes asks for 100000 training processes",
                "bad-count": "--num_processes: 'two' is not a whole number"}[case]
    assert expected in done.stderr
    assert "launcher." in done.stderr or str(config) in done.stderr  # the field, or the file and its field
    assert folder_state(run_dir) == before


def test_check_launch_reads_the_count_from_the_extra_args(tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(CPU_DDP.read_text())
    assert check_launch(config, []).num_processes == 2
    assert check_launch(config, ["--num_processes", "1"]).num_processes == 1
    assert check_launch(config, ["--num_processes=1"]).num_processes == 1
    with pytest.raises(ConfigError, match="at least 1"):
        check_launch(config, ["--num_processes", "0"])


@pytest.fixture
def two_core_machine(monkeypatch):
    """check_launch as on the CI machine: 2 CPU cores, no GPU."""
    from skilldistill.orchestration import launch_config

    monkeypatch.setattr(launch_config, "available_processes", lambda kind: launch_config.Capacity(2, "2 CPU core(s), no GPU", False))
    monkeypatch.setattr(launch_config, "_has_accelerator", lambda: False)


def test_the_shipped_gpu_configs_are_refused_on_a_two_core_machine(two_core_machine):
    for name in ("ddp.yaml", "fsdp.yaml", "zero2.yaml", "zero3.yaml"):
        with pytest.raises(ConfigError, match="asks for 8 training processes"):
            check_launch(REPO / "recipes" / "accelerate" / name, [])
    assert check_launch(REPO / "recipes" / "accelerate" / "zero3.yaml", ["--num_processes", "2"]).num_processes == 2
    with pytest.raises(ConfigError, match="FSDP needs GPUs"):
        check_launch(REPO / "recipes" / "accelerate" / "fsdp.yaml", ["--num_processes", "2"])


def test_launches_accelerate_would_run_as_one_process_are_refused(two_core_machine, tmp_path):
    mpi_less = tmp_path / "multi-cpu.yaml"
    mpi_less.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\nuse_cpu: true\n")
    with pytest.raises(ConfigError, match="accelerate would run 1 process"):
        check_launch(mpi_less, [])
    with pytest.raises(ConfigError, match="--cpu: accelerate would run 1 process, not 2"):
        check_launch(CPU_DDP, ["--cpu"])
    assert check_launch(mpi_less, ["--num_processes", "1"]).num_processes == 1


def test_process_counts_are_per_machine_and_per_concurrent_launch(tmp_path, monkeypatch):
    from skilldistill.orchestration import launch_config

    monkeypatch.setattr(launch_config, "available_processes", lambda kind: launch_config.Capacity(8, "8 GPU(s)", True))
    two_nodes = tmp_path / "two-nodes.yaml"
    two_nodes.write_text((REPO / "recipes" / "accelerate" / "ddp.yaml").read_text()
                         .replace("num_processes: 8", "num_processes: 16").replace("num_machines: 1", "num_machines: 2"))
    assert check_launch(two_nodes, []).num_processes == 16  # 8 on each of 2 machines
    ddp = REPO / "recipes" / "accelerate" / "ddp.yaml"
    assert check_launch(ddp, ["--num_processes", "4"], concurrent=2).num_processes == 4
    with pytest.raises(ConfigError, match=r"asks for 16 training processes on this machine \(2 arm runs at once x 8\)"):
        check_launch(ddp, [], concurrent=2)


def test_a_deepspeed_launch_without_deepspeed_is_refused(two_core_machine, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(ConfigError, match="needs DeepSpeed"):
        check_launch(REPO / "recipes" / "accelerate" / "zero2.yaml", ["--num_processes", "2"])
