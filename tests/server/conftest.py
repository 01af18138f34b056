"""Server fixtures: a routellm-lc server (uvicorn in a thread) in front of the local backend.

Routing in these tests is deterministic: the `test_keyword` router scores 0.9 for prompts that
contain "hard" and 0.1 otherwise, so at threshold 0.5 "hard" prompts go to the strong model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from routellm_lc.routers.base import Router, register_router
from routellm_lc.server.config import ServerConfig
from routellm_lc.server.runner import ServerThread

STRONG = "openai/strong-model"
WEAK = "openai/weak-model"


@register_router("test_keyword")
class KeywordRouter(Router):
    """0.9 when the prompt mentions "hard", else 0.1: tests choose the route by wording."""

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.array([0.9 if "hard" in p else 0.1 for p in prompts])


def server_config(backend: Any, **overrides: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "routers": ["test_keyword", "random"],
        "strong": STRONG,
        "weak": WEAK,
        "api_base": backend.base_url,
        "api_key": "backend-key",
        "port": 0,
        "timeout": 5.0,
    }
    values.update(overrides)
    return ServerConfig(**values)


@pytest.fixture
def start_server(backend: Any) -> Iterator[Callable[..., ServerThread]]:
    """Start a server with `ServerConfig` overrides; every server started is stopped after."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        server = ServerThread(server_config(backend, **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(backend: Any) -> Iterator[ServerThread]:
    """One server per test module with the default test config (no auth, fallback on)."""
    with ServerThread(server_config(backend)) as running:
        yield running
