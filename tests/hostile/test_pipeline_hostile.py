"""Pipeline faults: stale markers, copied run folders, client-only settings, two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skilldistill.errors import ConfigError
from skilldistill.orchestration.pipeline import Pipeline
from skilldistill.orchestration.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "recipes" / "demo-quick.yaml"
TINY = [
    "demo.pool_size=40", "demo.eval_per_leaf=1", "demo.student.base_examples=48", "demo.student.epochs=1",
    "demo.student.hidden_size=32", "demo.student.num_layers=1", "demo.student.intermediate_size=64",
    "demo.student.tokenizer_texts=200", "demo.student.vocab_size=320", "demo.student.batch_size=16",
    "profile.generation.max_new_tokens=16", "select.budget=6", "train.num_train_epochs=1", "jobs=1",
    "arms=[{name: random-plain, select: {strategy: random}, format: {style: plain}}]", "report.method=random-plain",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    Pipeline(load_recipe(QUICK, TINY), run_dir=run_dir, show_progress=False).run()
    return run_dir


@pytest.mark.slow
def test_a_copied_run_folder_is_up_to_date(tiny_run, tmp_path):
    # the demo student's absolute path used to be in the profile fingerprint
    copy = tmp_path / "moved"
    shutil.copytree(tiny_run, copy)
    pipe = Pipeline(load_recipe(QUICK, TINY), run_dir=copy, show_progress=False)
    pipe.run()
    assert pipe.ran == []


@pytest.mark.slow
def test_client_only_settings_rerun_nothing(tiny_run, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(tiny_run, copy)
    changed = load_recipe(QUICK, [*TINY, "student.batch_size=7", "annotate.embedding.batch_size=3", "jobs=2"])
    pipe = Pipeline(changed, run_dir=copy, show_progress=False)
    pipe.run()
    assert pipe.ran == []


@pytest.mark.slow
def test_a_stage_killed_while_rewriting_is_never_up_to_date(tiny_run, tmp_path, monkeypatch):
    # Issue 11 #3: profile with other settings was killed after rewriting skill_profile.json;
    # the old manifest then vouched for the new data and the rerun skipped the stage.
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    before = json.loads((run / "profile" / "skill_profile.json").read_text())
    from skilldistill.profile import stage as profile_mod

    real = profile_mod.write_manifest

    def killed(*a, **k):
        if Path(a[0]) == run / "profile":
            raise KeyboardInterrupt("kill -9 stands in here")
        return real(*a, **k)

    monkeypatch.setattr(profile_mod, "write_manifest", killed)
    other = load_recipe(QUICK, [*TINY, "profile.generation.max_new_tokens=9"])
    with pytest.raises(KeyboardInterrupt):
        Pipeline(other, run_dir=run, show_progress=False).run()
    import pyarrow.parquet as pq

    def cap() -> set:
        return set(pq.read_table(run / "profile" / "generations.parquet").column("max_new_tokens").to_pylist())

    assert cap() == {9}  # the folder holds the other settings' samples now
    assert not (run / "profile" / "manifest.json").exists()
    monkeypatch.setattr(profile_mod, "write_manifest", real)
    again = Pipeline(load_recipe(QUICK, TINY), run_dir=run, show_progress=False)
    again.run()
    assert "profile" in again.ran  # not "up to date": recomputed with the recipe's settings
    assert cap() == {16}
    after = json.loads((run / "profile" / "skill_profile.json").read_text())
    assert after["counts"] == before["counts"] and after["nodes"] == before["nodes"]


@pytest.mark.slow
def test_a_second_run_on_one_folder_is_refused(tiny_run, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from skilldistill.artifacts import FolderLock\n"
        f"lk = FolderLock({str(run)!r}, what='skilldistill run demo-quick').acquire(); print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        with pytest.raises(ConfigError, match=r"is in use by skilldistill run demo-quick \(pid \d+"):
            Pipeline(load_recipe(QUICK, TINY), run_dir=run, show_progress=False).run()
        assert time.time() - t0 < 10
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_typod_data_dir_deletes_nothing(tiny_run, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)

    def contents() -> dict[str, bytes]:  # every file of the finished stages, path -> bytes
        # (the run's own top-level files, recipe.yaml, the state and the lock, record each invocation)
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
                if p.is_file() and p.parent != run}

    before = contents()
    assert any(k.startswith("evaluate/base/") for k in before)
    bad = load_recipe(QUICK, [*TINY, "evaluate.benchmarks=[demo_eval, aime24]", "evaluate.data_dir=/no/such/dir"])
    with pytest.raises(Exception, match="not found under the data dir|no such"):
        Pipeline(bad, run_dir=run, show_progress=False).run()
    after = contents()
    assert after.keys() == before.keys()
    changed = [k for k in before if after[k] != before[k]]
    assert not changed, changed  # not a byte of a finished stage's files changed


def test_client_only_llm_settings_leave_the_annotate_fingerprint_alone(tmp_path):
    """Concurrency, server ports, timeouts and retries change how answers are fetched, not
    what they are: a rerun with other values must not redo attribution (and all after it)."""

    def fp(port, concurrency, timeout, retries, model="m"):
        llm = (f"{{kind: openai, model: {model}, base_urls: ['http://127.0.0.1:{port}/v1'], max_concurrency: "
               f"{concurrency}, request_timeout_s: {timeout}, max_retries: {retries}}}")
        recipe = load_recipe(QUICK, ["annotate.backend=openai", "annotate.llm=" + llm])
        pipe = Pipeline(recipe, run_dir=tmp_path / "run", show_progress=False)
        return next(s["fingerprint"] for s in pipe.plan() if s["key"] == "annotate")

    assert fp(8000, 256, 600, 6) == fp(8123, 16, 30, 1)
    assert fp(8000, 256, 600, 6) != fp(8000, 256, 600, 6, model="another-model")  # what answers does count
