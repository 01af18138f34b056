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


@pytest.fixture(scope="session")
def backend():
    """The local OpenAI-compatible LLM backend (one per session, on a free 127.0.0.1 port).

    Point real clients at ``backend.base_url``. Its settings, faults and request log are shared by
    the session: tests that configure it or read its log use ``fresh_backend`` instead.
    See ``routellm_lc/testing/backend.py`` for the configuration API.
    """
    from routellm_lc.testing import LocalBackend

    server = LocalBackend().start()
    yield server
    server.stop()


@pytest.fixture
def fresh_backend(backend):
    """The session backend, reset before and after the test (settings, faults, request log)."""
    backend.reset()
    yield backend
    backend.reset()
