"""A pool of three models: each prompt goes to the cheapest model its score band allows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tracers.context import collect_runs
from langgraph.graph import END, START, StateGraph

from routellm_lc import RouteLLMChat
from routellm_lc.budget import StrongShareController
from routellm_lc.chat_model import shared_router
from routellm_lc.graph import (
    DECISION_EVENT,
    RoutingCallbackHandler,
    RoutingState,
    routed_model_node,
)
from routellm_lc.pool import routed_pool
from routellm_lc.routers.base import Router


class Bands(Router):
    name = "bands"

    def __init__(self) -> None:
        self.calls = 0

    def strong_win_rate(self, prompts):
        self.calls += 1
        return np.array([0.9 if "hard" in p else 0.5 if "medium" in p else 0.1 for p in prompts])


@pytest.fixture
def pool(fresh_backend):
    router = Bands()
    llm = routed_pool(
        ["openai/cheap", "openai/mid", "openai/top"],
        [0.3, 0.7],
        router=router,
        api_base=fresh_backend.base_url,
        api_key="test",
    )
    return llm, router, fresh_backend


def test_each_band_goes_to_its_model_and_the_answer_names_it(pool):
    llm, _, backend = pool
    for prompt, model in [("easy one", "cheap"), ("medium one", "mid"), ("hard one", "top")]:
        message = llm.invoke(prompt)
        assert message.content.startswith(f"[{model}]")
        routing = message.response_metadata["routing"]
        assert routing["model"] == f"openai/{model}"
        levels = routing.get("cascade", [routing])
        assert levels[0]["threshold"] == 0.3 and levels[-1]["model"] == f"openai/{model}"
    assert [r.model for r in backend.requests] == ["cheap", "mid", "top"]


def test_cascade_lists_every_level_outermost_first(pool):
    llm, _, _ = pool
    routing = llm.invoke("hard question").response_metadata["routing"]
    assert [(c["threshold"], c["route"]) for c in routing["cascade"]] == [
        (0.3, "strong"),
        (0.7, "strong"),
    ]
    assert routing["route"] == "strong" and routing["score"] == 0.9
    easy = llm.invoke("easy").response_metadata["routing"]
    assert easy["model"] == "openai/cheap"
    assert [c["model"] for c in easy["cascade"]] == ["openai/cheap"]  # decided at level one


def test_a_failed_cheapest_model_is_reported_as_a_fallback_of_the_whole_call(pool):
    llm, _, backend = pool
    backend.fail(status=500, model="cheap", times=None)
    handler = RoutingCallbackHandler()
    reply = llm.invoke("easy one", {"callbacks": [handler]})
    assert reply.content.startswith("[mid]")
    routing = reply.response_metadata["routing"]
    assert (routing["model"], routing["fallback_from"]) == ("openai/mid", "openai/cheap")
    assert routing["cascade"][0]["fallback_from"] == "openai/cheap"
    assert handler.summary().fallbacks == 1
    (first, *_) = llm.stream("easy, streamed")
    assert first.response_metadata["routing"]["fallback_from"] == "openai/cheap"


def test_pool_runs_are_tagged_once_with_real_models(pool):
    llm, _, _ = pool
    with collect_runs() as runs:
        llm.invoke("hard question")
    (top,) = runs.traced_runs
    seen = []

    def walk(run) -> None:
        seen.append(run)
        for child in run.child_runs:
            walk(child)

    walk(top)
    for run in seen:
        assert len(run.tags) == len(set(run.tags)), run.tags
        assert not [t for t in run.tags if t.startswith("routellm:model=router-")], run.tags
    (answering,) = [r for r in seen if r.name == "openai/top"]
    assert sorted(answering.tags) == ["routellm:model=openai/top", "routellm:strong"]


def test_streaming_batch_and_tools_work_through_the_pool(pool):
    llm, _, backend = pool
    merged = None
    for chunk in llm.stream("medium, streamed"):
        merged = chunk if merged is None else merged + chunk
    assert merged.content.startswith("[mid]")
    assert merged.response_metadata["routing"]["model"] == "openai/mid"
    answers = llm.batch(["easy a", "medium b", "hard c"])
    assert [a.content.split("]")[0] for a in answers] == ["[cheap", "[mid", "[top"]

    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    call = llm.bind_tools([lookup]).invoke("hard: look up Paris")
    assert call.tool_calls and call.tool_calls[0]["name"] == "lookup"
    assert backend.requests_for("top")[-1].body["tools"][0]["function"]["name"] == "lookup"


def test_pool_validates_its_shape():
    with pytest.raises(ValueError, match="needs 2 thresholds"):
        routed_pool(["a", "b", "c"], [0.5], router=Bands())
    with pytest.raises(ValueError, match="increase strictly"):
        routed_pool(["a", "b", "c"], [0.6, 0.4], router=Bands())
    with pytest.raises(ValueError, match="at least two"):
        routed_pool(["a"], [], router=Bands())


# -- a level whose models all fail -------------------------------------------------------------
def _levels(routing: dict) -> list[tuple]:
    return [
        (c["threshold"], c["model"], c["route"], c.get("fallback_from"), c.get("failed"))
        for c in routing["cascade"]
    ]


@pytest.mark.parametrize("call", ["invoke", "stream", "ainvoke"])
async def test_when_a_whole_level_fails_the_answer_names_the_models_that_failed(pool, call):
    """mid and top both fail for a medium prompt: the cheapest model answers in their place,
    and the answer names mid (not the pool's `router-…` level) and keeps the failed level."""
    llm, _, backend = pool
    backend.fail(status=503, model="mid", times=None)
    backend.fail(status=503, model="top", times=None)
    handler = RoutingCallbackHandler()
    config = {"callbacks": [handler]}
    if call == "invoke":
        reply = llm.invoke("medium one", config)
    elif call == "ainvoke":
        reply = await llm.ainvoke("medium one", config)
    else:
        chunks = list(llm.stream("medium one", config))
        reply = chunks[0]
        for chunk in chunks[1:]:
            reply += chunk
    assert reply.content.startswith("[cheap]")
    assert list(dict.fromkeys(r.model for r in backend.requests)) == ["mid", "top", "cheap"]
    routing = reply.response_metadata["routing"]
    assert (routing["model"], routing["route"], routing["fallback_from"]) == (
        "openai/cheap",
        "weak",
        "openai/mid",
    )
    assert _levels(routing) == [
        (0.3, "openai/cheap", "weak", "openai/mid", None),
        (0.7, "openai/top", "strong", "openai/mid", True),  # mid failed, then top: both down
    ]
    (recorded,) = handler.calls
    assert (recorded.model, recorded.fallback_from) == ("openai/cheap", "openai/mid")
    assert handler.summary().calls_per_model == {"openai/cheap": 1}


def test_a_failed_level_under_a_hard_prompt_names_the_top_model(pool):
    llm, _, backend = pool
    backend.fail(status=503, model="top", times=None)
    backend.fail(status=503, model="mid", times=None)
    routing = llm.invoke("hard one").response_metadata["routing"]
    assert (routing["model"], routing["fallback_from"]) == ("openai/cheap", "openai/top")
    assert _levels(routing) == [
        (0.3, "openai/cheap", "weak", "openai/top", None),
        (0.7, "openai/mid", "weak", "openai/top", True),
    ]


# -- live decision events ----------------------------------------------------------------------
async def _decision_events(llm, prompt: str) -> tuple[list[dict], list]:
    events = [e async for e in llm.astream_events(prompt, version="v2")]
    starts = [e["run_id"] for e in events if e["event"] == "on_chat_model_start"]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert all(e["name"] == DECISION_EVENT for e in custom)
    assert {e["run_id"] for e in custom} <= set(starts)
    return [e["data"] for e in custom], starts


@pytest.mark.parametrize(
    ("prompt", "failing", "expected"),
    [
        ("hard one", [], [("openai/top", "strong", 0.7, None)]),
        ("medium one", [], [("openai/mid", "weak", 0.7, None)]),
        (
            "medium one",
            ["mid"],
            [("openai/mid", "weak", 0.7, None), ("openai/top", "strong", 0.7, "openai/mid")],
        ),
        (
            "easy one",
            ["cheap"],
            [("openai/cheap", "weak", 0.3, None), ("openai/mid", "weak", 0.7, "openai/cheap")],
        ),
        (
            "medium one",
            ["mid", "top"],
            [
                ("openai/mid", "weak", 0.7, None),
                ("openai/top", "strong", 0.7, "openai/mid"),
                ("openai/cheap", "weak", 0.3, "openai/mid"),
            ],
        ),
    ],
)
async def test_pool_decision_events_name_each_model_tried(pool, prompt, failing, expected):
    """One event per model tried, on the one router run callers see; never the pool's own
    `router-…` level."""
    llm, _, backend = pool
    for model in failing:
        backend.fail(status=503, model=model, times=None)
    events, starts = await _decision_events(llm, prompt)
    assert len(starts) == 1
    assert [(d["model"], d["route"], d["threshold"], d.get("fallback_from")) for d in events] == (
        expected
    )
    assert {d["run_id"] for d in events} == {str(starts[0])}


def test_pool_in_a_graph_streams_one_live_decision_naming_the_model(pool):
    llm, _, _ = pool
    graph = StateGraph(RoutingState)
    graph.add_node("solve", routed_model_node(llm))
    graph.add_edge(START, "solve")
    graph.add_edge("solve", END)
    app = graph.compile()
    handler = RoutingCallbackHandler()
    live, state = [], None
    for mode, chunk in app.stream(
        {"messages": [("user", "medium one")]},
        {"callbacks": [handler]},
        stream_mode=["custom", "values"],
    ):
        if mode == "custom" and DECISION_EVENT in chunk:
            live.append(chunk[DECISION_EVENT])
        elif mode == "values":
            state = chunk
    assert [(d["model"], d["route"], d["threshold"], d["extra"]) for d in live] == [
        ("openai/mid", "weak", 0.7, {"step": 1, "node": "solve"})
    ]
    (record,) = state["routing_decisions"]
    assert (record["model"], record["route"], record["threshold"], record["node"]) == (
        "openai/mid",
        "weak",
        0.7,
        "solve",
    )
    (call,) = handler.calls
    assert (call.model, call.route, call.threshold, call.node) == (
        "openai/mid",
        "weak",
        0.7,
        "solve",
    )
    assert live[0]["run_id"] == call.run_id


# -- a controller ------------------------------------------------------------------------------
def test_a_pool_refuses_a_controller_and_the_named_alternative_holds_the_top_share(data_dir):
    """A controller moves one threshold; a pool has one per band. The error names the way to
    hold the top model's share: route between it and a pool of the others. Checked on the
    arena questions with the bundled mf router."""
    prompts = [
        json.loads(line)["turns"][0]
        for line in (data_dir / "arena_bench_v1" / "question.jsonl").read_text().splitlines()
    ]
    router = shared_router("mf")
    cheap, mid, top = (FakeListChatModel(responses=[name]) for name in ("cheap", "mid", "top"))
    with pytest.raises(ValueError, match=r"no controller.*RouteLLMChat\(strong=models\[-1\]"):
        routed_pool(
            [cheap, mid, top], [0.4, 0.8], router=router, controller=StrongShareController(0.2)
        )

    controller = StrongShareController(0.2, warmup=50)
    llm = RouteLLMChat(
        strong=top,
        weak=routed_pool([cheap, mid], [0.4], router=router),
        router=router,
        controller=controller,
    )
    answers = [llm.invoke(p).content for _ in range(2) for p in prompts]
    assert controller.state().observed == len(answers)  # each call's score, counted once
    second_pass = answers[len(prompts) :]
    shares = {name: second_pass.count(name) / len(prompts) for name in ("cheap", "mid", "top")}
    assert shares["top"] == pytest.approx(0.2, abs=0.03)
    assert shares["mid"] > 0.1 and shares["cheap"] > 0.3  # the fixed cut splits the rest


def test_a_per_call_threshold_is_refused_by_a_pool_on_every_path(pool):
    """One number cannot say where a pool's several cuts go; it used to move only the outer
    cut on `invoke` but every cut inside a graph. Now it is refused on both, before any call."""
    llm, _, backend = pool
    config = {"configurable": {"routellm_threshold": 0.4}}
    with pytest.raises(ValueError, match="cannot move the cuts of a pool"):
        llm.invoke("medium one", config)
    graph = StateGraph(RoutingState)
    graph.add_node("model", routed_model_node(llm, threshold=0.4))
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    with pytest.raises(ValueError, match="cannot move the cuts of a pool"):
        graph.compile().invoke({"messages": [("user", "medium one")]})
    assert backend.requests == []
    assert llm.invoke("medium one").content.startswith("[mid]")  # without one: the bands
