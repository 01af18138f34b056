"""LangChain's standard test suites (`langchain-tests`) for the LiteLLM adapter.

The integration suite talks to the local OpenAI-compatible backend over real HTTP through
LiteLLM (`openai/<name>` + `api_base`). The backend is scripted where a standard test expects
a real model's judgement (see `_script_backend`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from routellm_lc.models import LiteLLMChatModel
from routellm_lc.testing import LocalBackend

_BACKEND: LocalBackend | None = None


def standard_backend() -> LocalBackend:
    """One backend for this module, started on first use (the suites read params per test)."""
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = LocalBackend().start()
    return _BACKEND


def script_backend(backend: LocalBackend, models: tuple[str, ...]) -> None:
    """Answers a real model would give to the suites' questions.

    The suites' tool tests ask for `magic_function(3)` and check the arguments are {"input": 3},
    and ask to create customers named '你好啊集团' / 'こんにちは株式会社' and check the names
    survive the round trip; the fake backend would otherwise fill schema-derived examples.
    """
    scripted = {
        "magic_function": {"tool_arguments": {"magic_function": {"input": 3}}},
        "你好啊集团": {"tool_arguments": {"unicode_customer": _customer("你好啊集团")}},
        "こんにちは株式会社": {
            "tool_arguments": {"unicode_customer": _customer("こんにちは株式会社")}
        },
    }
    for model in models:
        backend.configure(model, scripted=scripted)


def _customer(name: str) -> dict[str, str]:
    return {"customer_name": name, "description": "a technology company"}


@pytest.fixture(scope="module", autouse=True)
def _module_backend() -> Iterator[LocalBackend]:
    backend = standard_backend()
    backend.reset()
    script_backend(backend, ("weak", "strong"))
    yield backend
    backend.stop()
    globals()["_BACKEND"] = None


def litellm_params() -> dict[str, Any]:
    return {
        "model": "openai/weak",
        "api_base": standard_backend().base_url,
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
