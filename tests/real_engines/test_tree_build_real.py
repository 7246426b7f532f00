"""`skilldistill tree build` against `vllm serve` of SmolLM2-135M-Instruct (vLLM's CPU build).

Run with ``scripts/test-real-engines -k tree_build`` (the engines environment); the main suite
skips it. One server (started and always stopped here, as ``two_servers`` in conftest.py
does), 8 MATH problems.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_helpers import run_cli

pytestmark = [pytest.mark.real_engine, pytest.mark.slow]


@pytest.fixture(scope="module")
def one_server(smollm2_dir, tmp_path_factory):
    """One ``vllm serve`` server of SmolLM2 on 127.0.0.1 (always stopped)."""
    from skilldistill.llm.vllm_server import CPU_ARGS, VLLMServer

    log = tmp_path_factory.mktemp("serve_logs") / "server.log"
    server = VLLMServer(smollm2_dir, name="smollm2", log=log, args=CPU_ARGS, env={"VLLM_LOGGING_LEVEL": "INFO"})
    try:
        server.start().wait()
        yield server
    finally:
        server.stop()


def _math_corpus(shared_data, path, n: int = 8):
    rows = [json.loads(line) for line in (shared_data / "corpora" / "math_test" / "test.jsonl").open()][::625][:n]
    pq.write_table(pa.table({"id": [f"math-{r['idx']}" for r in rows], "question": [r["problem"] for r in rows],
                             "response": [r["solution"] for r in rows]}), path)
    return path


def test_tree_build_against_vllm_serve_then_validate_and_resume(one_server, shared_data, tmp_path):
    corpus = _math_corpus(shared_data, tmp_path / "math.parquet")
    out = tmp_path / "induced.json"
    args = ["tree", "build", str(corpus), "--backend", "openai", "--model", "smollm2", "--base-url", one_server.url,
            "--out", str(out), "--max-tokens", "96", "--max-chars", "1000", "--min-count", "1",
            "--max-failed-share", "1", "--no-progress"]  # a 135M model: whatever it writes is read, counted
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "induced_build" / "summary.json").read_text())
    assert summary["items"] == 8 and summary["calls_this_run"] == 8 and summary["items_with_chains"] >= 1
    assert one_server.metrics().get("vllm:request_success_total", 0.0) >= 8
    r = run_cli("tree", "validate", str(out))
    assert r.returncode == 0 and "valid" in r.stderr, r.stderr[-2000:]
    # forced rebuild: every answer from proposals.jsonl, nothing asked again
    r = run_cli(*args, "--force")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "induced_build" / "summary.json").read_text())["calls_this_run"] == 0
