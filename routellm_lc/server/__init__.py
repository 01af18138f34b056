"""The OpenAI-compatible server (`routellm-lc serve`): FastAPI over the same routing core as
`RouteLLMChat`. Names are imported lazily (FastAPI and the routers load on first use)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "create_app": "routellm_lc.server.app",
    "ServerConfig": "routellm_lc.server.config",
    "serve": "routellm_lc.server.runner",
}
__all__ = ["ServerConfig", "create_app", "serve"]

if TYPE_CHECKING:
    from routellm_lc.server.app import create_app
    from routellm_lc.server.config import ServerConfig
    from routellm_lc.server.runner import serve


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routellm_lc.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
