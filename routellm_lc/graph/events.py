"""Live routing events: each decision as a LangChain custom event and a LangGraph custom chunk.

`RouteLLMChat` calls `emit_decision` / `aemit_decision` from inside its run, so a decision
shows up

* in `astream_events` as an `on_custom_event` named `routellm_decision` whose `data` is the
  decision dict and whose `run_id` is the router's chat-model run;
* in a LangGraph run streamed with `stream_mode="custom"` as a chunk
  `{"routellm_decision": {...decision, "run_id": ...}}`, from whichever node called the model
  (including prebuilt agents that never heard of routing).

Every event names a real model: in a pool (`routellm_lc.pool`) a level that hands the prompt to
the next level sends none, and the level that picks a model sends its decision on the
outermost router run, so a call has one event per model tried, all with that run's id.

This module imports only `langchain_core`; LangGraph is touched only when it is already loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

from routellm_lc.decision import RoutingDecision

#: Name of the custom event (and key of the LangGraph custom chunk) carrying a decision.
DECISION_EVENT = "routellm_decision"
#: The tag of the run of a call that failed before any model was called (an empty prompt, the
#: router down): `RouteLLMChat` traces it so tracers and `RoutingCallbackHandler` see it.
ROUTING_ERROR_TAG = "routellm:routing_error"


def decision_payload(decision: RoutingDecision, run_id: UUID | str | None) -> dict[str, Any]:
    """The event data: the decision's fields plus the router run's id (as a string)."""
    payload = decision.to_dict()
    if run_id is not None:
        payload["run_id"] = str(run_id)
    return payload


def is_decision_chunk(chunk: Any) -> bool:
    """True for a LangGraph `stream_mode="custom"` chunk written by `emit_decision`."""
    return isinstance(chunk, Mapping) and DECISION_EVENT in chunk


def emit_decision(decision: RoutingDecision, run_manager: Any) -> None:
    """Dispatch `decision` to the run's callback handlers and to LangGraph's custom stream.

    `run_manager` is the router's run manager (`CallbackManagerForLLMRun`), or None when there
    is no run to attach the event to (the LangGraph stream is still written).
    """
    payload, manager = _prepare(decision, run_manager, CallbackManager)
    if manager is not None:
        manager.on_custom_event(DECISION_EVENT, payload, run_id=run_manager.run_id)
    _write_graph_chunk(payload)


async def aemit_decision(decision: RoutingDecision, run_manager: Any) -> None:
    """Async twin of `emit_decision` (async handlers such as `astream_events` are awaited)."""
    payload, manager = _prepare(decision, run_manager, AsyncCallbackManager)
    if manager is not None:
        await manager.on_custom_event(DECISION_EVENT, payload, run_id=run_manager.run_id)
    _write_graph_chunk(payload)


def _prepare(decision: RoutingDecision, run_manager: Any, manager_cls: type) -> tuple[dict, Any]:
    """The payload, and a callback manager reaching the run's handlers with its tags and
    metadata (None when there is nobody to tell)."""
    payload = decision_payload(decision, getattr(run_manager, "run_id", None))
    if run_manager is None or not run_manager.handlers:
        return payload, None
    manager = manager_cls(
        handlers=list(run_manager.handlers),
        tags=list(run_manager.tags or []),
        metadata=dict(run_manager.metadata or {}),
    )
    return payload, manager


def _write_graph_chunk(payload: dict[str, Any]) -> None:
    """Write to LangGraph's custom stream when called inside a graph node (else do nothing)."""
    if "langgraph" not in sys.modules:  # never import LangGraph just to find out
        return
    from langgraph.config import get_stream_writer

    try:
        writer = get_stream_writer()
    except (RuntimeError, KeyError):  # not inside a LangGraph run
        return
    writer({DECISION_EVENT: payload})
