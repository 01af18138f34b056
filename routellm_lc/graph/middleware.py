"""LangChain `create_agent` middleware that records routing decisions in the agent's state."""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState

from routellm_lc.graph.node import _last_routed_record
from routellm_lc.graph.state import DecisionRecord, add_decisions


class RoutingMiddlewareState(AgentState):
    """`create_agent`'s state plus the `routing_decisions` channel."""

    routing_decisions: NotRequired[Annotated[list[DecisionRecord], add_decisions]]


class RoutingMiddleware(AgentMiddleware):
    """After each model call, append its routing decision (with step and node) to the state.

    ```python
    agent = create_agent(RouteLLMChat(...), tools, middleware=[RoutingMiddleware()])
    agent.invoke({"messages": [...]})["routing_decisions"]
    ```
    """

    state_schema = RoutingMiddlewareState

    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return _last_routed_record(state)

    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return _last_routed_record(state)
