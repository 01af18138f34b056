"""Decisions as LangChain custom events (`astream_events`, callback handlers), the per-call
threshold from `configurable`, the graph position on decisions, and the chosen model's run
nested under the router's run even when LangChain streams without a run manager."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langgraph.graph import START, StateGraph

from routellm_lc.graph import DECISION_EVENT, RoutingState, routed_model_node


class EventRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict, Any]] = []
        self.chat_runs: list[Any] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs: Any) -> None:
        self.chat_runs.append(run_id)

    def on_custom_event(self, name, data, *, run_id, **kwargs: Any) -> None:
        self.events.append((name, data, run_id))


class AsyncEventRecorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict, Any]] = []

    async def on_custom_event(self, name, data, *, run_id, **kwargs: Any) -> None:
        self.events.append((name, data, run_id))


async def test_astream_events_shows_the_decision_of_the_router_run(make_chat):
    events = [e async for e in make_chat().astream_events("a hard question", version="v2")]
    starts = [e for e in events if e["event"] == "on_chat_model_start"]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert len(starts) == 1, "the chosen model's run is not a second chat-model event"
    assert [e["name"] for e in custom] == [DECISION_EVENT]
    assert custom[0]["run_id"] == starts[0]["run_id"]
    data = custom[0]["data"]
    assert (data["route"], data["model"], data["run_id"]) == (
        "strong",
        "openai/strong",
        starts[0]["run_id"],
    )


@pytest.mark.parametrize("call", ["invoke", "stream", "batch"])
def test_sync_calls_dispatch_one_decision_event_per_call(make_chat, call):
    recorder = EventRecorder()
    chat = make_chat()
    config = {"callbacks": [recorder]}
    if call == "invoke":
        chat.invoke("an easy one", config)
    elif call == "stream":
        list(chat.stream("an easy one", config))
    else:
        chat.batch(["an easy one", "a hard one"], config)
    expected = ["weak"] if call != "batch" else ["weak", "strong"]
    assert sorted(d["route"] for _, d, _ in recorder.events) == sorted(expected)
    assert {run_id for *_, run_id in recorder.events} == set(recorder.chat_runs)


@pytest.mark.parametrize("call", ["ainvoke", "astream"])
async def test_async_calls_dispatch_to_async_handlers(make_chat, call):
    recorder = AsyncEventRecorder()
    chat = make_chat()
    if call == "ainvoke":
        await chat.ainvoke("a hard one", {"callbacks": [recorder]})
    else:
        [c async for c in chat.astream("a hard one", {"callbacks": [recorder]})]
    assert [(n, d["route"]) for n, d, _ in recorder.events] == [(DECISION_EVENT, "strong")]


def test_fallback_dispatches_the_fallback_decision_too(make_chat, fresh_backend):
    fresh_backend.fail(status=503, model="strong", times=1)
    recorder = EventRecorder()
    reply = make_chat().invoke("a hard one", {"callbacks": [recorder]})
    assert reply.content.startswith("[weak]")
    decisions = [d for _, d, _ in recorder.events]
    assert [(d["model"], d.get("fallback_from")) for d in decisions] == [
        ("openai/strong", None),
        ("openai/weak", "openai/strong"),
    ]


def test_configurable_threshold_is_used_and_reported(make_chat):
    collector = RunCollectorCallbackHandler()
    chat = make_chat(threshold=0.7)
    assert chat.invoke("a medium one").response_metadata["routing"]["route"] == "weak"
    config = {"configurable": {"routellm_threshold": 0.3}, "callbacks": [collector]}
    routing = chat.invoke("a medium one", config).response_metadata["routing"]
    assert (routing["threshold"], routing["route"]) == (0.3, "strong")
    (run,) = collector.traced_runs
    assert run.extra["metadata"]["routing"]["threshold"] == 0.3
    assert "routellm:strong" in run.tags


def test_decisions_outside_a_graph_carry_no_position(make_chat):
    routing = make_chat().invoke("a hard one").response_metadata["routing"]
    assert "extra" not in routing


def _graph(chat):
    graph = StateGraph(RoutingState)
    graph.add_node("agent", routed_model_node(chat))
    graph.add_edge(START, "agent")
    return graph.compile()


async def test_graph_astream_events_shows_decisions_with_step_and_node(make_chat):
    app = _graph(make_chat())
    custom = [
        e
        async for e in app.astream_events({"messages": [HumanMessage("a hard one")]}, version="v2")
        if e["event"] == "on_custom_event"
    ]
    assert len(custom) == 1
    assert custom[0]["data"]["extra"] == {"step": 1, "node": "agent"}
    assert custom[0]["metadata"]["langgraph_node"] == "agent"


def _model_runs_under_router(run) -> list:
    """The router run(s) in a collected tree, each with its children's names and parent ids."""
    found = []
    if run.name == "RouteLLMChat":
        found.append(run)
    for child in run.child_runs:
        found.extend(_model_runs_under_router(child))
    return found


@pytest.mark.parametrize("mode", ["invoke", "astream_events", "messages"])
async def test_chosen_model_run_is_the_router_runs_child(make_chat, mode):
    """LangChain streams inside `invoke` (astream_events, LangGraph's messages mode) without
    giving the model a run manager: the chosen model's run must still nest under the router."""
    collector = RunCollectorCallbackHandler()
    app = _graph(make_chat())
    inputs = {"messages": [HumanMessage("a hard one")]}
    config = {"callbacks": [collector]}
    if mode == "invoke":
        await app.ainvoke(inputs, config)
    elif mode == "astream_events":
        [e async for e in app.astream_events(inputs, config, version="v2")]
    else:
        [c async for c in app.astream(inputs, config, stream_mode="messages")]
    (root,) = collector.traced_runs
    (router_run,) = _model_runs_under_router(root)
    assert [c.name for c in router_run.child_runs] == ["openai/strong"]
    child = router_run.child_runs[0]
    assert child.parent_run_id == router_run.id
    assert child.extra["metadata"]["routing"]["model"] == "openai/strong"
