"""Shared test fixtures. Real data comes from ../shared/data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"real test data not found at {SHARED_DATA} (shared/ must sit beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def skill_mix_path(shared_data: Path) -> Path:
    return shared_data / "skill_trees" / "skill_mix.json"
