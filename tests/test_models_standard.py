"""LangChain's standard test suites (`langchain-tests`) for the LiteLLM adapter.

The integration suite talks to the local OpenAI-compatible backend over real HTTP through
LiteLLM (`openai/<name>` + `api_base`). The backend is scripted where a standard test expects
a real model's judgement (see `standard_suite.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from standard_suite import SuiteBackend

from routellm_lc.models import LiteLLMChatModel

SUITE_BACKEND = SuiteBackend()


@pytest.fixture(scope="module", autouse=True)
def _stop_backend() -> Iterator[None]:
    yield
    SUITE_BACKEND.stop()


def litellm_params() -> dict[str, Any]:
    return {
        "model": "openai/weak",
        "api_base": SUITE_BACKEND.get().base_url,
        "api_key": "test-key",
        "timeout": 10,
        "max_retries": 0,
    }


class TestLiteLLMChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[LiteLLMChatModel]:
        return LiteLLMChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "openai/weak", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}

    @property
    def supports_json_mode(self) -> bool:
        return True


class TestLiteLLMChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[LiteLLMChatModel]:
        return LiteLLMChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return litellm_params()

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str | None:
        return "openai/strong"
