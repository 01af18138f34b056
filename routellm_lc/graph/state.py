"""Graph state for routing: a `routing_decisions` channel with an append reducer.

Each entry is a `DecisionRecord`: a plain dict (so every LangGraph checkpointer can store it)
holding the decision and where in the graph it was made (`step`, `node`, from LangGraph's run
metadata `langgraph_step` / `langgraph_node`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.graph import MessagesState
from typing_extensions import TypedDict


class DecisionRecord(TypedDict, total=False):
    """One routed model call in a graph run."""

    step: int | None
    """LangGraph superstep the call ran in (`langgraph_step`)."""
    node: str | None
    """Node that called the model (`langgraph_node`)."""
    router: str
    score: float
    """The router's predicted strong-model win rate."""
    threshold: float
    """The threshold this call used (a node's own threshold when it has one)."""
    model: str
    """The model that answered."""
    route: str
    """"strong" or "weak"."""
    latency_ms: float
    """Time the router took to score (not the model call)."""
    batch_size: int
    fallback_from: NotRequired[str]
    """The model that failed, when the other one answered instead."""
    parent_nodes: NotRequired[list[str]]
    """In a subgraph (or an agent run as a node): the enclosing graphs' nodes, outermost
    first; `step` and `node` are the subgraph's own."""
    message_id: NotRequired[str]
    """The id of the routed reply: what the reducer de-duplicates on (as `add_messages` does
    on message ids), since a subgraph or agent node hands back records the state holds."""


def add_decisions(
    left: Sequence[DecisionRecord] | None,
    right: DecisionRecord | Sequence[DecisionRecord] | None,
) -> list[DecisionRecord]:
    """Reducer: append new records (one dict or a list) to the existing ones, in order.

    A record whose `message_id` the state already holds is the same routed call handed back
    (a compiled subgraph or agent run as a node returns its whole state, old records
    included): it is not appended again, as `add_messages` does not repeat a message."""
    existing = list(left or [])
    if right is None:
        return existing
    new = [right] if isinstance(right, Mapping) else list(right)
    seen = {r.get("message_id") for r in existing} - {None}
    for record in new:
        key = record.get("message_id")
        if key is not None and key in seen:
            continue
        seen.add(key)
        existing.append(record)
    return existing


class RoutingDecisionsState(TypedDict, total=False):
    """Mix into any graph state to record routing decisions."""

    routing_decisions: Annotated[list[DecisionRecord], add_decisions]


class RoutingState(MessagesState, total=False):
    """`MessagesState` plus the `routing_decisions` channel."""

    routing_decisions: Annotated[list[DecisionRecord], add_decisions]


def record_from_routing(
    routing: Mapping[str, Any], *, step: int | None = None, node: str | None = None
) -> DecisionRecord:
    """A record from a decision dict (`response_metadata["routing"]`).

    The step and node the decision itself carries (set by `RouteLLMChat` from the run's
    metadata) win over the ones given here, which serve as a fallback.
    """
    extra = routing.get("extra") or {}
    record: dict[str, Any] = {
        "step": extra.get("step", step),
        "node": extra.get("node", node),
    }
    for key in ("router", "score", "threshold", "model", "route", "latency_ms", "batch_size"):
        record[key] = routing.get(key)
    if routing.get("fallback_from"):
        record["fallback_from"] = routing["fallback_from"]
    if extra.get("parent_nodes"):
        record["parent_nodes"] = list(extra["parent_nodes"])
    return record  # type: ignore[return-value]


def record_from_message(
    message: BaseMessage, *, step: int | None = None, node: str | None = None
) -> DecisionRecord | None:
    """The record of a routed reply, or None for a message no router produced."""
    routing = message.response_metadata.get("routing") if isinstance(message, AIMessage) else None
    if not routing:
        return None
    record = record_from_routing(routing, step=step, node=node)
    if message.id:
        record["message_id"] = message.id
    return record


def decisions_from_messages(messages: Iterable[BaseMessage]) -> list[DecisionRecord]:
    """Records of every routed reply in a conversation (e.g. a prebuilt agent's messages)."""
    records = (record_from_message(m) for m in messages)
    return [r for r in records if r is not None]
