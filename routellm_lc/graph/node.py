"""A routed-model node for LangGraph, and hooks that record decisions in prebuilt agents.

`routed_model_node(chat, ...)` is a node function of `(state, config)`: it calls the routed model
on the state's messages (optionally with tools, a system prompt and its own threshold) and
returns the reply plus a `routing_decisions` record with the step and node it ran in.

For LangGraph's prebuilt `create_react_agent`, `record_routing` is a `post_model_hook` that
appends the model node's decision to the same channel (use `RoutingAgentState` as the
`state_schema`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import merge_configs
from langchain_core.tools import BaseTool
from langgraph.prebuilt.chat_agent_executor import AgentState

from routellm_lc.chat_model import THRESHOLD_CONFIG_KEY, RouteLLMChat
from routellm_lc.decision import validate_threshold
from routellm_lc.graph.state import (
    DecisionRecord,
    add_decisions,
    record_from_message,
)

ToolLike = dict[str, Any] | type | Callable | BaseTool


class RoutingAgentState(AgentState):
    """State of `create_react_agent` plus the `routing_decisions` channel (and the
    `structured_response` key its `response_format=` needs)."""

    routing_decisions: NotRequired[Annotated[list[DecisionRecord], add_decisions]]
    structured_response: NotRequired[Any]


def routed_model_node(
    model: Runnable,
    *,
    tools: Sequence[ToolLike] | None = None,
    threshold: float | None = None,
    system_prompt: str | None = None,
    messages_key: str = "messages",
    name: str = "routed_model",
) -> RunnableLambda:
    """A LangGraph node that answers with `model` (a `RouteLLMChat`) and records its decision.

    Args:
        model: the routed chat model (anything whose replies carry
            `response_metadata["routing"]`).
        tools: bound to the model for this node (both strong and weak receive them).
        threshold: this node's own threshold; `None` uses the model's (or a
            `configurable["routellm_threshold"]` given to the whole graph run).
        system_prompt: prepended to the state's messages for this node only.
        messages_key: the state key holding the conversation.
        name: the runnable's name (the node's name in the graph is whatever `add_node` says).

    Returns a runnable usable as `graph.add_node("planner", routed_model_node(chat, ...))`;
    its update is `{messages_key: [reply], "routing_decisions": [record]}`.
    """
    if threshold is not None:
        threshold = validate_threshold(threshold)
        if _is_pool(model):  # refused here, not on the graph's first run
            raise ValueError(
                f"routed_model_node's threshold ({threshold}) cannot move the cuts of a pool or "
                "other nested router: set them when building it (routed_pool(models, "
                "thresholds)), and leave threshold unset for it."
            )
    bound = model.bind_tools(list(tools)) if tools else model
    node_config: RunnableConfig = (
        {} if threshold is None else {"configurable": {THRESHOLD_CONFIG_KEY: threshold}}
    )

    def prepare(state: Any, config: RunnableConfig) -> tuple[list, RunnableConfig]:
        messages: list[BaseMessage | Any] = list(_field(state, messages_key) or [])
        if system_prompt:
            messages = [SystemMessage(system_prompt), *messages]
        return messages, merge_configs(config, node_config)

    def update(reply: AIMessage, config: RunnableConfig) -> dict[str, Any]:
        metadata = config.get("metadata") or {}
        record = record_from_message(
            reply, step=metadata.get("langgraph_step"), node=metadata.get("langgraph_node")
        )
        return {messages_key: [reply], "routing_decisions": [record] if record else []}

    def call(state: Any, config: RunnableConfig) -> dict[str, Any]:
        messages, call_config = prepare(state, config)
        return update(bound.invoke(messages, call_config), config)

    async def acall(state: Any, config: RunnableConfig) -> dict[str, Any]:
        messages, call_config = prepare(state, config)
        return update(await bound.ainvoke(messages, call_config), config)

    return RunnableLambda(call, afunc=acall, name=name)


def _is_pool(model: Runnable) -> bool:
    """Whether `model` (through `bind_tools` / `with_config` bindings) is a router one of whose
    sides is another router: a per-call threshold is refused there."""
    while isinstance(model, RunnableBinding):
        model = model.bound
    return isinstance(model, RouteLLMChat) and model._is_pool_level


def _field(state: Any, key: str) -> Any:
    """A state value, whether the graph's state is a dict (TypedDict) or an object (a
    pydantic model or dataclass state, which LangGraph also supports)."""
    return state.get(key) if isinstance(state, Mapping) else getattr(state, key, None)


def _last_routed_record(state: Any) -> dict[str, list[DecisionRecord]]:
    """The record of the model's latest reply: the last AI message, even when later hooks
    appended messages after it (a structured-output tool message, a human-in-the-loop
    rejection); the reducer ignores it if the state already holds it."""
    messages = _field(state, "messages") or []
    last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    record = record_from_message(last_ai) if last_ai is not None else None
    return {"routing_decisions": [record] if record else []}


def record_routing(state: Any) -> dict[str, list[DecisionRecord]]:
    """`post_model_hook` for `create_react_agent`: append the model node's decision.

    The step and node are the model call's own (carried by the decision), not the hook's.
    """
    return _last_routed_record(state)
