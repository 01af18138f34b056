"""LangChain `create_agent` middleware that records routing decisions in the agent's state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.types import ExtendedModelResponse, ModelResponse
from langchain_core.messages import AIMessage
from langgraph.types import Command

from routellm_lc.graph.state import DecisionRecord, add_decisions, record_from_message


class RoutingMiddlewareState(AgentState):
    """`create_agent`'s state plus the `routing_decisions` channel."""

    routing_decisions: NotRequired[Annotated[list[DecisionRecord], add_decisions]]


class RoutingMiddleware(AgentMiddleware):
    """Each model call's routing decision (with step and node), appended to the state.

    ```python
    agent = create_agent(RouteLLMChat(...), tools, middleware=[RoutingMiddleware()])
    agent.invoke({"messages": [...]})["routing_decisions"]
    ```

    The record travels with the model node's own update (`wrap_model_call`), so it is kept
    wherever the middleware sits in the list: an `after_model` hook of another middleware
    that ends the run (`jump_to: "end"`, `ToolCallLimitMiddleware(exit_behavior="end")`) or
    appends messages after the reply cannot drop it.
    """

    state_schema = RoutingMiddlewareState

    def wrap_model_call(
        self, request: Any, handler: Callable[[Any], ModelResponse]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        return _with_record(handler(request))

    async def awrap_model_call(
        self, request: Any, handler: Callable[[Any], Awaitable[ModelResponse]]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        return _with_record(await handler(request))


def _with_record(response: Any) -> Any:
    """`response` with its routed reply's record as a state update (unchanged if unrouted)."""
    messages = [response] if isinstance(response, AIMessage) else list(response.result)
    reply = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    record = record_from_message(reply) if reply is not None else None
    if record is None:
        return response
    if isinstance(response, AIMessage):
        response = ModelResponse(result=[response])
    update = {"routing_decisions": [record]}
    return ExtendedModelResponse(model_response=response, command=Command(update=update))
