"""LangGraph and callback integration: routed-model nodes, a `routing_decisions` state channel,
a callback handler that records every decision, and live decision events.

Names are imported lazily (LangGraph and LangChain's agents load only when used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DECISION_EVENT": "routellm_lc.graph.events",
    "is_decision_chunk": "routellm_lc.graph.events",
    "DecisionRecord": "routellm_lc.graph.state",
    "RoutingState": "routellm_lc.graph.state",
    "RoutingDecisionsState": "routellm_lc.graph.state",
    "add_decisions": "routellm_lc.graph.state",
    "decisions_from_messages": "routellm_lc.graph.state",
    "RoutingAgentState": "routellm_lc.graph.node",
    "routed_model_node": "routellm_lc.graph.node",
    "record_routing": "routellm_lc.graph.node",
    "RoutingCallbackHandler": "routellm_lc.graph.callbacks",
    "RoutedCall": "routellm_lc.graph.callbacks",
    "RoutingSummary": "routellm_lc.graph.callbacks",
    "RoutingMiddleware": "routellm_lc.graph.middleware",
}

__all__ = [
    "DECISION_EVENT",
    "DecisionRecord",
    "RoutedCall",
    "RoutingAgentState",
    "RoutingCallbackHandler",
    "RoutingDecisionsState",
    "RoutingMiddleware",
    "RoutingState",
    "RoutingSummary",
    "add_decisions",
    "decisions_from_messages",
    "is_decision_chunk",
    "record_routing",
    "routed_model_node",
]

if TYPE_CHECKING:
    from routellm_lc.graph.callbacks import RoutedCall, RoutingCallbackHandler, RoutingSummary
    from routellm_lc.graph.events import DECISION_EVENT, is_decision_chunk
    from routellm_lc.graph.middleware import RoutingMiddleware
    from routellm_lc.graph.node import RoutingAgentState, record_routing, routed_model_node
    from routellm_lc.graph.state import (
        DecisionRecord,
        RoutingDecisionsState,
        RoutingState,
        add_decisions,
        decisions_from_messages,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routellm_lc.graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
