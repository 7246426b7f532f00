"""VLLMServer's lifecycle without vLLM: health checks never go through a proxy, and stop()
ends the server's whole process group even when the server process died first (its
engine core would keep the GPU). The real server runs in tests/real_engines."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time

from skilldistill.llm.vllm_server import VLLMServer
from skilldistill.subproc import group_alive

# A "server" that starts a child in its own group, then dies: what a crashed API server
# leaves behind when its engine core does not notice.
ORPHANING = ("import subprocess, sys, time; "
             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(0.5)")


def test_stop_ends_the_group_when_the_server_process_died_first():
    server = VLLMServer("m")
    server.proc = subprocess.Popen([sys.executable, "-c", ORPHANING], start_new_session=True)
    server.proc.wait(timeout=30)  # the server is gone ...
    assert group_alive(server.proc.pid)  # ... its child is not
    server.stop()
    assert not group_alive(server.proc.pid)


def test_health_checks_bypass_a_proxy(monkeypatch):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    server = VLLMServer("m")
    server.port = httpd.server_address[1]
    server.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        t0 = time.time()
        assert server.wait(timeout=20) is server and time.time() - t0 < 10
    finally:
        server.stop()
        httpd.shutdown()
    assert server.proc.poll() is not None and not group_alive(server.proc.pid)
    assert os.environ["http_proxy"] == "http://127.0.0.1:9"
