"""Shared set-up for the `langchain-tests` standard suites: a backend per test module,
scripted with the answers a real model would give to the suites' questions."""

from __future__ import annotations

from routellm_lc.testing import LocalBackend


class SuiteBackend:
    """A backend started on first use: the suites read model params (and so the URL) per test."""

    def __init__(self) -> None:
        self._backend: LocalBackend | None = None

    def get(self) -> LocalBackend:
        if self._backend is None:
            self._backend = LocalBackend().start()
            script_backend(self._backend, ("weak", "strong"))
        return self._backend

    def stop(self) -> None:
        if self._backend is not None:
            self._backend.stop()
            self._backend = None


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
