"""LangChain's standard test suites (`langchain-tests`) for `RouteLLMChat`.

The router is a deterministic length rule, so both the strong and the weak model answer
across the suite; both are LiteLLM strings (`openai/strong`, `openai/weak`) pointed at the
local OpenAI-compatible backend over real HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from standard_suite import SuiteBackend

from routellm_lc.chat_model import RouteLLMChat
from routellm_lc.routers.base import Router

SUITE_BACKEND = SuiteBackend()


class LengthRouter(Router):
    """Long prompts (> 40 characters) go to the strong model: deterministic, no weights."""

    name = "length"

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.array([0.9 if len(p) > 40 else 0.1 for p in prompts])


#: The suite's JSON-mode question, answered as a real model would: RouteLLMChat sends
#: `response_format={"type": "json_object"}`, to which the backend's own reply is no joke.
JSON_MODE_ANSWER = {
    "Return the result as a JSON with 'setup' and 'punchline' keys": {
        "reply": json.dumps(
            {"setup": "Why do cats sit on keyboards?", "punchline": "To watch the mouse."}
        )
    }
}


@pytest.fixture(scope="module", autouse=True)
def _suite_backend() -> Iterator[None]:
    backend = SUITE_BACKEND.get()
    for model in ("weak", "strong"):
        scripted = backend.settings_for(model).scripted or {}
        backend.configure(model, scripted={**scripted, **JSON_MODE_ANSWER})
    yield
    SUITE_BACKEND.stop()


def routed_params(api_base: str) -> dict[str, Any]:
    return {
        "strong": "openai/strong",
        "weak": "openai/weak",
        "router": LengthRouter(),
        "threshold": 0.5,
        "api_base": api_base,
        "api_key": "test-key",
        "timeout": 10,
        "max_retries": 0,
    }


class TestRouteLLMChatUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RouteLLMChat]:
        return RouteLLMChat

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return routed_params("http://127.0.0.1:9/v1")

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        # The router picks the model per call; a per-call `model` is not how it is chosen.
        return False

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        env = {"ROUTELLM_LC_STRONG_MODEL": "openai/big", "ROUTELLM_LC_WEAK_MODEL": "openai/small"}
        return env, {"router": "random"}, {"strong": "openai/big", "weak": "openai/small"}


class TestRouteLLMChatIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RouteLLMChat]:
        return RouteLLMChat

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return routed_params(SUITE_BACKEND.get().base_url)

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False
