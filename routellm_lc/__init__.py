"""routellm-lc: a LangChain-native, cost-aware LLM router.

Public names are imported lazily so `import routellm_lc` stays fast (LangChain, numpy and the
router weights load only when first used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Controller": "routellm_lc.controller",
    "RouteLLMChat": "routellm_lc.chat_model",
    "RoutingDecision": "routellm_lc.decision",
    "load_router": "routellm_lc.routers.base",
    "Router": "routellm_lc.routers.base",
    "register_router": "routellm_lc.routers.base",
    "get_embedder": "routellm_lc.embeddings",
    "LiteLLMChatModel": "routellm_lc.models",
    "routed_pool": "routellm_lc.pool",
    "StrongShareController": "routellm_lc.budget",
}

__all__ = [
    "Controller",
    "LiteLLMChatModel",
    "RouteLLMChat",
    "Router",
    "RoutingDecision",
    "StrongShareController",
    "get_embedder",
    "load_router",
    "register_router",
    "routed_pool",
]

if TYPE_CHECKING:
    from routellm_lc.budget import StrongShareController
    from routellm_lc.chat_model import RouteLLMChat
    from routellm_lc.controller import Controller
    from routellm_lc.decision import RoutingDecision
    from routellm_lc.embeddings import get_embedder
    from routellm_lc.models import LiteLLMChatModel
    from routellm_lc.pool import routed_pool
    from routellm_lc.routers.base import Router, load_router, register_router


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routellm_lc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
