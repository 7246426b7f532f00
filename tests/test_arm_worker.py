"""The arm worker pool of ``skilldistill run`` with ``jobs > 1``: a failed or killed task
stops the run with its name, and no worker outlives the pool."""

from __future__ import annotations

import pytest

from skilldistill.errors import ConfigError
from skilldistill.orchestration.arm_pool import ArmPool, WorkerTask
from skilldistill.orchestration.recipe import load_recipe
from skilldistill.orchestration.stage_runner import UpstreamFingerprints
from test_pipeline import REPO, TINY


def _base_task(run_dir) -> WorkerTask:
    recipe = load_recipe(REPO / "recipes" / "demo-quick.yaml", TINY)
    return WorkerTask(recipe=recipe, run_dir=str(run_dir), force_from=None, show_progress=False,
                      upstream=UpstreamFingerprints(student="student", demo="demo"))


@pytest.mark.slow
def test_a_failed_task_stops_the_run_with_its_name_and_the_workers_exit(tmp_path):
    pool = ArmPool(2, threads=1)
    procs = [w.proc for w in pool.workers]
    try:
        # the demo stage never ran here: the base evaluation finds no held-out set
        pool.submit("evaluate/base", "base", _base_task(tmp_path / "run"))
        with pytest.raises(ConfigError, match=r"^evaluate/base: .*eval\.parquet"):
            pool.wait()
    finally:
        pool.close()
    assert all(p.poll() is not None for p in procs)


@pytest.mark.slow
def test_a_killed_worker_is_named_with_its_signal(tmp_path):
    pool = ArmPool(1, threads=1)
    try:
        pool.submit("evaluate/base", "base", _base_task(tmp_path / "run"))
        pool.workers[0].proc.kill()
        with pytest.raises(ConfigError, match=r"^evaluate/base: worker arm-worker-0 was killed by signal 9; rerun to resume"):
            pool.wait()
    finally:
        pool.close()
    assert pool.workers[0].proc.poll() is not None
