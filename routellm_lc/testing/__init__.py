"""Test helpers: a local OpenAI-compatible backend (see :mod:`routellm_lc.testing.backend`).

Names are resolved lazily so ``python -m routellm_lc.testing.backend`` runs the module once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routellm_lc.testing.backend import Fault, LocalBackend, ModelSettings, RecordedRequest

__all__ = ["Fault", "LocalBackend", "ModelSettings", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from routellm_lc.testing import backend

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
