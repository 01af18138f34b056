"""Shared fixtures: the data directory (skip or fail when absent) and a local LLM backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _data_dir() -> Path:
    configured = os.environ.get("ROUTELLM_LC_DATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real training/evaluation data. Skips on a user's fresh clone; fails in CI."""
    path = _data_dir()
    if not (path / "routellm_evals").is_dir():
        message = (
            f"data directory not found at {path} (set ROUTELLM_LC_DATA to the folder holding "
            "routellm_evals/, arena_bench_v1/, ...)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
