"""`routed_model_node` in a StateGraph: per-node thresholds, decisions appended to state with
the step and node they were made in, graph-wide threshold via `configurable`, live decisions in
`stream_mode="custom"`."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from routellm_lc.errors import InvalidThresholdError
from routellm_lc.graph import DECISION_EVENT, RoutingState, is_decision_chunk, routed_model_node


def _two_node_graph(chat, planner_threshold=None, writer_threshold=None):
    graph = StateGraph(RoutingState)
    graph.add_node("planner", routed_model_node(chat, threshold=planner_threshold))
    graph.add_node("writer", routed_model_node(chat, threshold=writer_threshold))
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "writer")
    graph.add_edge("writer", END)
    return graph.compile()


# "medium" scores 0.5 with the keyword router: the threshold alone decides the route.
QUESTION = {"messages": [HumanMessage("a medium question")]}


def test_each_node_routes_with_its_own_threshold(make_chat, fresh_backend):
    app = _two_node_graph(make_chat(threshold=0.5), planner_threshold=0.3, writer_threshold=0.7)
    out = app.invoke(QUESTION)
    records = out["routing_decisions"]
    assert [(r["step"], r["node"]) for r in records] == [(1, "planner"), (2, "writer")]
    assert [r["threshold"] for r in records] == [0.3, 0.7]
    assert [r["route"] for r in records] == ["strong", "weak"]
    assert [r["score"] for r in records] == [pytest.approx(0.5)] * 2
    answers = [m.content for m in out["messages"][1:]]
    assert answers[0].startswith("[strong]") and answers[1].startswith("[weak]")
    chats = [r for r in fresh_backend.requests if r.path.endswith("/chat/completions")]
    assert [r.model for r in chats] == ["strong", "weak"]


def test_node_without_threshold_uses_the_graph_configurable_then_the_models(make_chat):
    app = _two_node_graph(make_chat(threshold=0.7), planner_threshold=0.2)
    default = app.invoke(QUESTION)["routing_decisions"]
    assert [r["threshold"] for r in default] == [0.2, 0.7]
    configured = app.invoke(QUESTION, {"configurable": {"routellm_threshold": 0.4}})
    # the node's own threshold wins over the run-wide one
    assert [r["threshold"] for r in configured["routing_decisions"]] == [0.2, 0.4]
    assert [r["route"] for r in configured["routing_decisions"]] == ["strong", "strong"]


async def test_async_graph_records_the_same_decisions(make_chat):
    app = _two_node_graph(make_chat(), planner_threshold=0.3, writer_threshold=0.7)
    out = await app.ainvoke(QUESTION)
    assert [(r["node"], r["route"]) for r in out["routing_decisions"]] == [
        ("planner", "strong"),
        ("writer", "weak"),
    ]


def test_custom_stream_mode_yields_each_decision_as_it_is_made(make_chat):
    app = _two_node_graph(make_chat(), planner_threshold=0.3, writer_threshold=0.7)
    chunks = list(app.stream(QUESTION, stream_mode="custom"))
    decisions = [c[DECISION_EVENT] for c in chunks if is_decision_chunk(c)]
    assert [(d["extra"]["node"], d["route"], d["threshold"]) for d in decisions] == [
        ("planner", "strong", 0.3),
        ("writer", "weak", 0.7),
    ]
    assert all(d["run_id"] for d in decisions)


async def test_streamed_messages_mode_still_records_and_streams_decisions(make_chat):
    """Under `stream_mode="messages"` the model streams inside `invoke`: same decisions."""
    app = _two_node_graph(make_chat(), planner_threshold=0.3, writer_threshold=0.7)
    custom, tokens = [], []
    async for mode, chunk in app.astream(QUESTION, stream_mode=["custom", "messages"]):
        (custom if mode == "custom" else tokens).append(chunk)
    assert [c[DECISION_EVENT]["route"] for c in custom] == ["strong", "weak"]
    text = "".join(message.content for message, _ in tokens)
    assert "[strong] echo: a medium question" in text


def test_node_checks_its_threshold():
    with pytest.raises(InvalidThresholdError):
        routed_model_node(object(), threshold=1.5)  # type: ignore[arg-type]


def test_node_binds_tools_and_adds_its_system_prompt(make_chat, fresh_backend):
    def lookup(topic: str) -> str:
        """Look a topic up."""
        return topic

    graph = StateGraph(RoutingState)
    graph.add_node(
        "agent", routed_model_node(make_chat(), tools=[lookup], system_prompt="Be brief.")
    )
    graph.add_edge(START, "agent")
    out = graph.compile().invoke({"messages": [HumanMessage("a hard one")]})
    assert out["messages"][-1].tool_calls[0]["name"] == "lookup"
    assert out["routing_decisions"][0]["route"] == "strong"
    body = fresh_backend.requests_for("strong")[-1].body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["tools"][0]["function"]["name"] == "lookup"
