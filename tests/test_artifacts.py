"""Atomic writes, the append-only log's crash tolerance, manifests."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from skilldistill.artifacts import (
    AppendLog,
    atomic_path,
    manifest_matches,
    read_json,
    write_json,
    write_manifest,
    write_parquet,
)


def test_failed_write_keeps_old_file(tmp_path):
    p = tmp_path / "a.json"
    write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash mid-write")
    assert read_json(p) == {"v": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["a.json"]


def test_append_log_ignores_and_repairs_torn_tail(tmp_path):
    p = tmp_path / "calls.jsonl"
    with AppendLog(p) as log:
        log.append({"k": 1})
        log.append_many([{"k": 2}, {"k": 3}])
    with open(p, "a") as f:
        f.write('{"k": 4, "trunc')  # the process died mid-line
    assert [r["k"] for r in AppendLog(p).read()] == [1, 2, 3]
    with AppendLog(p) as log:
        log.append({"k": 5})
    assert [json.loads(line)["k"] for line in p.read_text().splitlines()] == [1, 2, 3, 5]


def test_manifest_matches_config_and_inputs(tmp_path):
    write_parquet(tmp_path / "t.parquet", pa.table({"x": [1, 2]}))
    write_manifest(tmp_path, config={"a": 1, "b": [1, 2]}, inputs={"f": "abc"}, counts={"rows": 2})
    assert manifest_matches(tmp_path, config={"b": [1, 2], "a": 1}, inputs={"f": "abc"})
    assert not manifest_matches(tmp_path, config={"a": 2, "b": [1, 2]}, inputs={"f": "abc"})
    assert not manifest_matches(tmp_path, config={"a": 1, "b": [1, 2]}, inputs={"f": "changed"})
    m = read_json(tmp_path / "manifest.json")
    assert m["counts"] == {"rows": 2} and "torch" in m["versions"] and m["finished_at"].endswith("Z")


def test_a_second_process_on_a_folder_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from skilldistill.artifacts import FolderLock
    from skilldistill.errors import ConfigError

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from skilldistill.artifacts import FolderLock\n"
        f"l = FolderLock({str(tmp_path)!r}, what='annotate').acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as e:
            FolderLock(tmp_path, what="profile").acquire()
        msg = str(e.value)
        assert f"pid {holder.pid}" in msg and "annotate" in msg and "since 20" in msg and str(tmp_path) in msg
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.1)
    with FolderLock(tmp_path, what="profile"):  # the kernel released the killed holder's lock
        assert "profile" in (tmp_path / FolderLock.NAME).read_text()
