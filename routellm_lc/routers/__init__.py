"""Routers: prompts in, strong-model win rates in [0, 1] out."""

from routellm_lc.errors import RouterOutputError
from routellm_lc.routers.base import (
    Router,
    available_routers,
    get_router_class,
    load_router,
    register_router,
    resolve_device,
)

__all__ = [
    "Router",
    "RouterOutputError",
    "available_routers",
    "get_router_class",
    "load_router",
    "register_router",
    "resolve_device",
]
