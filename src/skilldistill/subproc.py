"""Worker processes that work from any caller: a plain script, a notebook, the CLI.

``multiprocessing``'s spawn and forkserver start methods re-run the caller's main module
in every child, so a user script without ``if __name__ == "__main__":`` starts children
that start children, and each dies ("bootstrapping phase"); fork copies a parent that
may hold threads, locks or a CUDA context. A :class:`Worker` avoids both: it is a fresh
``python -m <module>`` subprocess (the same interpreter and environment) that talks to
its parent over its stdin/stdout pipes with ``multiprocessing.connection`` framing. In
the child, file descriptor 1 is pointed at stderr before anything is imported, so library
prints and logs (vLLM logs to stdout) never corrupt the channel.

    w = Worker.start("skilldistill.llm.vllm_engine", env={"CUDA_VISIBLE_DEVICES": "0"})
    w.send(("chat", payload)); kind, result = w.recv(timeout=600)
    w.close()

A child module implements ``main()`` with :func:`child_channel`::

    def main():
        conn = child_channel()
        while (msg := conn.recv()) is not None: conn.send(handle(msg))

A dead child shows as :class:`WorkerDied` (with its exit code) on the next receive.

``Worker.start(..., own_group=True)`` makes the child the leader of its own process group,
for children that start processes of their own (a vLLM engine starts its engine core and,
on the CPU build, a worker process): closing or reaping the worker then ends the whole
group, so nothing the child started outlives it, even when the child itself was killed
(kill -9, the OOM killer), which would otherwise leave its processes running with their
memory (GPU memory, on a GPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import weakref
from collections.abc import Mapping
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any


class WorkerDied(RuntimeError):
    """The worker process ended (crashed, was killed, or closed its channel)."""

    def __init__(self, name: str, exitcode: int | None) -> None:
        self.exitcode = exitcode
        how = "is gone" if exitcode is None else f"exited with code {exitcode}"
        if exitcode is not None and exitcode < 0:
            how = f"was killed by signal {-exitcode}"
        super().__init__(f"worker {name} {how}")


class Worker:
    """One ``python -m module`` child with a message channel (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen, name: str, own_group: bool = False) -> None:
        self.proc = proc
        self.name = name
        assert proc.stdin is not None and proc.stdout is not None
        self._out = Connection(os.dup(proc.stdin.fileno()), readable=False)
        self._in = Connection(os.dup(proc.stdout.fileno()), writable=False)
        proc.stdin.close()
        proc.stdout.close()
        # Never leave a child behind, even when the owner forgets close().
        self._finalizer = weakref.finalize(self, _reap, proc, own_group, self._out, self._in)

    @classmethod
    def start(cls, module: str, *args: str, env: Mapping[str, str] | None = None, name: str | None = None,
              own_group: bool = False) -> Worker:
        child_env = dict(os.environ)
        child_env.update(env or {})
        # The child must import this same package (an editable checkout or a src layout
        # run from a test): hand it our import path.
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, child_env.get("PYTHONPATH", "")] if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=child_env, close_fds=True, start_new_session=own_group,
        )
        return cls(proc, name or f"{module}[{proc.pid}]", own_group)

    # -- messages ---------------------------------------------------------------------
    def send(self, obj: Any) -> None:
        try:
            self._out.send(obj)
        except (OSError, BrokenPipeError, ValueError):
            raise WorkerDied(self.name, self._exitcode()) from None

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(wait([self._in], timeout=timeout))

    def recv(self, timeout: float | None = None) -> Any:
        """The next message; ``TimeoutError`` after ``timeout`` seconds, ``WorkerDied`` on EOF."""
        if timeout is not None and not self.poll(timeout):
            raise TimeoutError(f"worker {self.name}: no reply within {timeout:g}s")
        try:
            return self._in.recv()
        except (EOFError, OSError):
            raise WorkerDied(self.name, self._exitcode()) from None

    @property
    def connection(self) -> Connection:
        """The receiving end, for ``multiprocessing.connection.wait`` over several workers."""
        return self._in

    def _exitcode(self, grace_s: float = 2.0) -> int | None:
        try:
            return self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- end ----------------------------------------------------------------------------
    def close(self, timeout: float = 30.0, message: Any = None) -> int | None:
        """Ask the child to stop (``message`` is sent first), wait ``timeout``, then kill it."""
        if self.alive():
            try:
                self._out.send(message)
            except (OSError, BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._finalizer()
        return self.proc.returncode

    def kill(self) -> None:
        self._finalizer()


def close_all(workers: list[Worker], timeout: float, message: Any = None) -> None:
    """Ask every worker to stop at once, wait for them together (``timeout`` in all, not
    each), then kill what is left: eight engines mid-batch stop in one timeout, not eight."""
    for w in workers:
        if w.alive():
            try:
                w._out.send(message)
            except (OSError, BrokenPipeError, ValueError):
                pass
    deadline = time.monotonic() + timeout
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for w in workers:
        w._finalizer()


def _reap(proc: subprocess.Popen, own_group: bool, *conns: Connection) -> None:
    for c in conns:
        try:
            c.close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if own_group:  # what the child started, still running without it
        kill_group(proc.pid)


def descendant_pids(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), read from /proc; empty
    where there is no /proc. Finds the workers torchrun starts in sessions of their own."""
    parents: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and parentheses
        parents.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        children = [c for p in frontier for c in parents.get(p, [])]
        found += children
        frontier = children
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds the id: alive, just not ours
        return True
    return True


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in process group ``pgid`` (none left: nothing to do)."""
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def child_channel() -> Connection:
    """In a worker's ``main()``: the duplex channel to the parent (stdin in, stdout out).

    Points fd 1 at stderr first, so whatever prints afterwards goes to the parent's stderr,
    and ends this process if the parent dies (kill -9 included), so no worker outlives the
    run that started it (a later run would otherwise find a stranger at work in its folder).
    """
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _exit_with_parent()
    return _Duplex(Connection(os.dup(0), writable=False), Connection(out_fd, readable=False))


def _exit_with_parent(interval_s: float = 1.0) -> None:
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:  # re-parented: the parent is gone
                if os.getpgid(0) == os.getpid():  # own group (own_group=True): take what we started along
                    kill_group(os.getpid())
                os._exit(70)

    threading.Thread(target=watch, name="skilldistill-parent-watch", daemon=True).start()


class _Duplex:
    """Two one-way connections used as one (``recv`` from the parent, ``send`` to it)."""

    def __init__(self, inbound: Connection, outbound: Connection) -> None:
        self._in, self._out = inbound, outbound

    def recv(self) -> Any:
        return self._in.recv()

    def send(self, obj: Any) -> None:
        self._out.send(obj)

    def poll(self, timeout: float = 0.0) -> bool:
        return self._in.poll(timeout)

    def close(self) -> None:
        self._in.close()
        self._out.close()


def wait_any(workers: list[Worker], timeout: float | None = None) -> list[Worker]:
    """The workers with a message (or EOF) waiting, after at most ``timeout`` seconds."""
    by_conn = {id(w.connection): w for w in workers}
    ready = wait([w.connection for w in workers], timeout=timeout)
    return [by_conn[id(c)] for c in ready]


def wait_ready(worker: Worker, timeout: float, what: str = "start") -> Any:
    """The worker's first message, polling for an early death in between."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            worker.kill()
            raise TimeoutError(f"worker {worker.name} did not {what} within {timeout:g}s")
        if worker.poll(min(1.0, left)):
            return worker.recv()
        if not worker.alive():
            raise WorkerDied(worker.name, worker.proc.returncode)


__all__ = ["Worker", "WorkerDied", "child_channel", "close_all", "group_alive", "kill_group", "wait_any", "wait_ready"]
