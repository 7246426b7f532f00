"""Worker processes (skilldistill.subproc): a worker in its own process group takes what it
started along when it ends, even when it was killed first (a vLLM engine's core and worker)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from skilldistill.subproc import Worker

CHILD = '''
import subprocess, sys
from skilldistill.subproc import child_channel

def main():
    conn = child_channel()
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    conn.send(("ready", grandchild.pid))
    while conn.recv() is not None:
        pass

if __name__ == "__main__":
    main()
'''


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


def _wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while _running(pid) and time.time() < deadline:
        time.sleep(0.1)
    return not _running(pid)


def test_a_killed_worker_in_its_own_group_takes_what_it_started_along(tmp_path):
    (tmp_path / "group_child.py").write_text(CHILD)
    w = Worker.start("group_child", env={"PYTHONPATH": str(tmp_path)}, own_group=True)
    try:
        kind, grandchild = w.recv(timeout=60)
        assert kind == "ready" and os.getpgid(grandchild) == w.proc.pid
        os.kill(w.proc.pid, signal.SIGKILL)  # the worker dies first (kill -9, the OOM killer)
        w.proc.wait(timeout=30)
        assert _running(grandchild)  # what it started runs on without it
        w.close()
        assert _wait_gone(grandchild)
    finally:
        w.kill()
        if _running(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_a_closed_worker_in_its_own_group_leaves_nothing_running(tmp_path):
    (tmp_path / "group_child.py").write_text(CHILD)
    w = Worker.start("group_child", env={"PYTHONPATH": str(tmp_path)}, own_group=True)
    kind, grandchild = w.recv(timeout=60)
    w.close(timeout=10)
    assert w.proc.returncode is not None and _wait_gone(grandchild)
