"""Routing records where graphs are composed: subgraphs and agents as nodes, checkpointed
turns, structured output and human-in-the-loop middleware, object (pydantic) states."""

from __future__ import annotations

from typing import Annotated

from langchain.agents import create_agent
from langchain.agents.middleware import (
    HumanInTheLoopMiddleware,
    ToolCallLimitMiddleware,
    after_model,
)
from langchain.agents.structured_output import ToolStrategy
from langchain_core.messages import AnyMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command
from pydantic import BaseModel

from routellm_lc.graph import (
    DecisionRecord,
    RoutingCallbackHandler,
    RoutingMiddleware,
    RoutingState,
    routed_model_node,
)
from routellm_lc.graph.state import add_decisions


def positions(records: list[DecisionRecord]) -> list[tuple]:
    return [(r.get("step"), r.get("node"), r.get("route")) for r in records]


def model_calls(backend) -> int:
    return sum(r.path.endswith("/chat/completions") for r in backend.requests)


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}."


def test_a_subgraph_hands_back_its_records_without_repeating_them(make_chat, fresh_backend):
    """A compiled subgraph returns its whole state, the parent's records included; with a
    checkpointer the repeats used to compound (3, 9, 21, 45 records for 2, 4, 6, 8 calls)."""
    chat = make_chat()
    inner = StateGraph(RoutingState)
    inner.add_node("inner", routed_model_node(chat))
    inner.add_edge(START, "inner")
    inner.add_edge("inner", END)
    graph = StateGraph(RoutingState)
    graph.add_node("first", routed_model_node(chat))
    graph.add_node("sub", inner.compile())
    graph.add_edge(START, "first")
    graph.add_edge("first", "sub")
    graph.add_edge("sub", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    for turn in range(1, 4):
        out = app.invoke({"messages": [("user", f"a hard question {turn}")]}, config)
        assert len(out["routing_decisions"]) == model_calls(fresh_backend) == 2 * turn
    assert positions(out["routing_decisions"])[:2] == [
        (1, "first", "strong"),
        (1, "inner", "strong"),
    ]
    ids = [r["message_id"] for r in out["routing_decisions"]]
    assert len(set(ids)) == len(ids)
    # the subgraph's own step and node, and the parent node it ran in
    assert [r.get("parent_nodes") for r in out["routing_decisions"][:2]] == [None, ["sub"]]


def test_an_agent_as_a_node_adds_only_its_own_call(make_chat, fresh_backend):
    chat = make_chat()
    agent = create_agent(chat, [], middleware=[RoutingMiddleware()])
    graph = StateGraph(RoutingState)
    graph.add_node("supervisor", routed_model_node(chat))
    graph.add_node("worker", agent)
    graph.add_edge(START, "supervisor")
    graph.add_edge("supervisor", "worker")
    graph.add_edge("worker", END)
    handler = RoutingCallbackHandler()
    out = graph.compile().invoke({"messages": [("user", "hello")]}, {"callbacks": [handler]})
    assert positions(out["routing_decisions"]) == [(1, "supervisor", "weak"), (1, "model", "weak")]
    assert model_calls(fresh_backend) == 2
    assert [r.get("parent_nodes") for r in out["routing_decisions"]] == [None, ["worker"]]
    assert [c.parent_nodes for c in handler.calls] == [[], ["worker"]]


class Answer(BaseModel):
    city: str
    summary: str


def test_middleware_records_a_call_that_answered_through_a_structured_output_tool(make_chat):
    """The agent appends a "Returning structured response" tool message after the routed
    reply: the reply, not the last message, carries the decision."""
    agent = create_agent(
        make_chat(), [], response_format=ToolStrategy(Answer), middleware=[RoutingMiddleware()]
    )
    handler = RoutingCallbackHandler()
    out = agent.invoke(
        {"messages": [("user", "a hard question: weather in Paris")]}, {"callbacks": [handler]}
    )
    assert isinstance(out["structured_response"], Answer)
    assert positions(out["routing_decisions"]) == [(c.step, c.node, c.route) for c in handler.calls]
    assert positions(out["routing_decisions"]) == [(1, "model", "strong")]


def test_middleware_keeps_the_decision_of_a_call_a_human_rejected(make_chat):
    """After-model hooks run in reverse order, so the human-in-the-loop rejection message
    lands after the routed reply before RoutingMiddleware sees the state."""
    review = HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})
    agent = create_agent(
        make_chat(),
        [get_weather],
        middleware=[RoutingMiddleware(), review],
        checkpointer=InMemorySaver(),
    )
    handler = RoutingCallbackHandler()
    config = {"configurable": {"thread_id": "t"}, "callbacks": [handler]}
    agent.invoke({"messages": [("user", "weather in Paris")]}, config)
    out = agent.invoke(
        Command(resume={"decisions": [{"type": "reject", "message": "not now"}]}), config
    )
    assert len(out["routing_decisions"]) == len(handler.calls) == 2
    assert positions(out["routing_decisions"]) == [(c.step, c.node, c.route) for c in handler.calls]


def test_middleware_records_a_call_whose_run_a_later_middleware_ends(make_chat, fresh_backend):
    """`after_model` hooks run in reverse list order: one listed after RoutingMiddleware that
    ends the run (`jump_to: "end"`) skipped its hook, and the decision was lost."""
    limit = ToolCallLimitMiddleware(run_limit=0, exit_behavior="end")

    @after_model(can_jump_to=["end"])
    def guardrail(state, runtime):
        return {"jump_to": "end"}

    for others in ([limit], [guardrail], [limit, guardrail]):
        agent = create_agent(
            make_chat(),
            [get_weather],
            middleware=[RoutingMiddleware(), *others],
            checkpointer=InMemorySaver(),
        )
        handler = RoutingCallbackHandler()
        config = {"configurable": {"thread_id": "t"}, "callbacks": [handler]}
        out = agent.invoke({"messages": [("user", "a hard question: weather in Paris")]}, config)
        assert len(handler.calls) == 1
        assert positions(out["routing_decisions"]) == [(1, "model", "strong")]


async def test_middleware_records_async_calls_too(make_chat):
    @after_model(can_jump_to=["end"])
    def guardrail(state, runtime):
        return {"jump_to": "end"}

    agent = create_agent(make_chat(), [get_weather], middleware=[RoutingMiddleware(), guardrail])
    out = await agent.ainvoke({"messages": [("user", "a hard question: weather in Paris")]})
    assert positions(out["routing_decisions"]) == [(1, "model", "strong")]


class ObjectState(BaseModel):
    messages: Annotated[list[AnyMessage], add_messages]
    routing_decisions: Annotated[list[dict], add_decisions] = []


def test_routed_model_node_reads_an_object_state(make_chat):
    """LangGraph states may be pydantic models (read by attribute), not only TypedDicts."""
    graph = StateGraph(ObjectState)
    graph.add_node("agent", routed_model_node(make_chat()))
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    out = graph.compile().invoke({"messages": [("user", "a hard question")]})
    assert positions(out["routing_decisions"]) == [(1, "agent", "strong")]


def test_the_reducer_skips_records_it_holds_and_keeps_records_without_ids():
    first = {"route": "weak", "message_id": "a"}
    second = {"route": "strong", "message_id": "b"}
    legacy = {"route": "weak"}
    assert add_decisions([first], [first, second]) == [first, second]
    assert add_decisions([first, legacy], [legacy]) == [first, legacy, legacy]


def test_a_functional_api_task_names_no_parent_graph_it_does_not_have(make_chat):
    """A `@task`'s checkpoint namespace holds its caller's segment: an `@entrypoint`'s task
    was recorded with `parent_nodes == ["wf"]`, as if it ran in a subgraph."""
    from langgraph.func import entrypoint, task

    chat = make_chat()

    @task
    def ask(question: str) -> str:
        return chat.invoke(question).content

    @task
    def plan(question: str) -> str:
        return ask(question).result()

    @entrypoint()
    def wf(question: str) -> list[str]:
        return [ask(question).result(), plan(question).result(), chat.invoke(question).content]

    handler = RoutingCallbackHandler()
    wf.invoke("a hard question", {"callbacks": [handler]})
    assert [(c.node, c.parent_nodes) for c in handler.calls] == [
        ("ask", []),
        ("ask", []),
        ("wf", []),
    ]

    # a task called from a subgraph's node: the enclosing graph's node, not the caller
    inner = StateGraph(RoutingState)
    inner.add_node("inner", lambda state: {"messages": [("ai", ask("a hard one").result())]})
    inner.add_edge(START, "inner")
    inner.add_edge("inner", END)
    graph = StateGraph(RoutingState)
    graph.add_node("sub", inner.compile())
    graph.add_edge(START, "sub")
    graph.add_edge("sub", END)
    handler = RoutingCallbackHandler()
    graph.compile().invoke({"messages": [("user", "go")]}, {"callbacks": [handler]})
    assert [(c.node, c.parent_nodes) for c in handler.calls] == [("ask", ["sub"])]
