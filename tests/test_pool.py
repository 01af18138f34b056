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
from routellm_lc.routers.random import RandomRouter


class Bands(Router):
    name = "bands"

    def __init__(self) -> None:
        self.calls = 0

    def strong_win_rate(self, prompts):
        self.calls += 1
        return np.array([0.9 if "hard" in p else 0.5 if "medium" in p else 0.1 for p in prompts])


def _three_models(backend, router, **options):
    """cheap below 0.3, mid below 0.7, top above, on the local backend."""
    return routed_pool(
        ["openai/cheap", "openai/mid", "openai/top"],
        [0.3, 0.7],
        router=router,
        api_base=backend.base_url,
        api_key="test",
        **options,
    )


@pytest.fixture
def pool(fresh_backend):
    router = Bands()
    return _three_models(fresh_backend, router), router, fresh_backend


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
    # a node's own threshold: refused when the node is built, not on the graph's first run
    for model in (llm, llm.bind_tools([]), llm.with_config(tags=["x"])):
        with pytest.raises(ValueError, match="cannot move the cuts of a pool"):
            routed_model_node(model, threshold=0.4)
    graph = StateGraph(RoutingState)
    graph.add_node("model", routed_model_node(llm))
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    with pytest.raises(ValueError, match="cannot move the cuts of a pool"):
        graph.compile().invoke({"messages": [("user", "medium one")]}, config)
    assert backend.requests == []
    assert llm.invoke("medium one").content.startswith("[mid]")  # without one: the bands


# -- one score per prompt ----------------------------------------------------------------------
class Drifting(Router):
    """A non-deterministic router: each call scores every prompt with the next of its scores
    (as `random` would, reproducibly)."""

    name = "drifting"

    def __init__(self, scores=(0.5, 0.9, 0.1, 0.8, 0.2, 0.6)) -> None:
        self.scores = list(scores)
        self.calls = 0

    def strong_win_rate(self, prompts):
        score = self.scores[self.calls % len(self.scores)]
        self.calls += 1
        return np.full(len(prompts), score)


def _band(score: float) -> str:
    return "openai/cheap" if score < 0.3 else "openai/mid" if score < 0.7 else "openai/top"


async def _routings(llm, call: str, prompts: list[str]) -> list[dict]:
    if call == "invoke":
        replies = [llm.invoke(p) for p in prompts]
    elif call == "ainvoke":
        replies = [await llm.ainvoke(p) for p in prompts]
    elif call == "stream":  # the first chunk carries the decision; each stream is closed
        replies = []
        for prompt in prompts:
            stream = llm.stream(prompt)
            replies.append(next(stream))
            stream.close()
    elif call == "astream":
        replies = []
        for prompt in prompts:
            astream = llm.astream(prompt)
            replies.append(await anext(astream))
            await astream.aclose()
    elif call == "batch":
        replies = llm.batch(prompts)
    else:
        replies = await llm.abatch(prompts)
    return [r.response_metadata["routing"] for r in replies]


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream", "astream", "batch", "abatch"])
async def test_a_pool_scores_each_prompt_once(pool, call):
    """The inner levels cut the outer level's score: the router runs once per prompt (a
    batch: once per batch), not once per level, on every call path."""
    llm, router, _ = pool
    routings = await _routings(llm, call, ["hard one"])
    assert router.calls == 1
    assert [c["score"] for c in routings[0]["cascade"]] == [0.9, 0.9]
    assert routings[0]["model"] == "openai/top"
    router.calls = 0
    routings = await _routings(llm, call, ["easy a", "medium b", "hard c", "medium d"])
    assert [r["model"] for r in routings] == [_band(s) for s in (0.1, 0.5, 0.9, 0.5)]
    assert router.calls == (1 if call.endswith("batch") else 4)


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream", "astream"])
async def test_a_fallback_to_the_next_level_reuses_the_score(pool, call):
    """The cheapest model fails and the rest of the pool answers in its place: that level
    decides with the call's score, it does not score the prompt again."""
    llm, router, backend = pool
    backend.fail(status=503, model="cheap", times=None)
    (routing,) = await _routings(llm, call, ["easy one"])
    assert (routing["model"], routing["fallback_from"]) == ("openai/mid", "openai/cheap")
    assert [c["score"] for c in routing["cascade"]] == [0.1, 0.1]
    assert router.calls == 1


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream", "astream", "batch", "abatch"])
async def test_with_a_non_deterministic_router_each_model_answers_its_band(fresh_backend, call):
    """Scored again at each level, a `random`-like router sent prompts outside their band
    (and reported the inner level's score): every level must cut the same score."""
    router = Drifting()
    llm = _three_models(fresh_backend, router)
    prompts = [f"question {i}" for i in range(len(router.scores))]
    if call.endswith("batch"):
        routings = [r for p in prompts for r in await _routings(llm, call, [p])]
    else:
        routings = await _routings(llm, call, prompts)
    for routing, expected in zip(routings, router.scores, strict=True):
        assert routing["score"] == expected
        assert routing["model"] == _band(expected)
        assert {c["score"] for c in routing.get("cascade", [routing])} == {expected}
    assert router.calls == len(prompts)


def test_the_random_router_splits_a_pool_by_its_bands(backend):
    router = RandomRouter(seed=7)
    llm = routed_pool(
        [FakeListChatModel(responses=[name]) for name in ("cheap", "mid", "top")],
        [0.4, 0.8],
        router=router,
    )
    answers = [llm.invoke(f"q {i}").content for i in range(600)]
    shares = {name: answers.count(name) / len(answers) for name in ("cheap", "mid", "top")}
    assert shares == pytest.approx({"cheap": 0.4, "mid": 0.4, "top": 0.2}, abs=0.05)


def test_a_nested_router_with_its_own_router_scores_for_itself(fresh_backend):
    """Only a next level on the same router and routing text reuses the score."""
    outer_router, inner_router = Bands(), Bands()
    inner = RouteLLMChat(
        weak="openai/mid",
        strong="openai/top",
        threshold=0.7,
        router=inner_router,
        api_base=fresh_backend.base_url,
        api_key="test",
    )
    llm = RouteLLMChat(
        weak="openai/cheap",
        strong=inner,
        threshold=0.3,
        router=outer_router,
        api_base=fresh_backend.base_url,
        api_key="test",
    )
    assert llm.invoke("hard one").content.startswith("[top]")
    assert (outer_router.calls, inner_router.calls) == (1, 1)


# -- copies of a pool --------------------------------------------------------------------------
@pytest.fixture
def second_backend():
    from routellm_lc.testing import LocalBackend

    with LocalBackend() as server:
        yield server


def test_a_copy_with_another_endpoint_sends_every_band_there(pool, second_backend):
    llm, _, old = pool
    moved = llm.model_copy(update={"api_base": second_backend.base_url})
    for prompt in ("easy one", "medium one", "hard one"):
        moved.invoke(prompt)
    assert old.requests == []
    assert [r.model for r in second_backend.requests] == ["cheap", "mid", "top"]
    llm.invoke("hard one")  # the original is left as it was
    assert [r.model for r in old.requests] == ["top"]


def test_a_copy_with_pool_wide_options_applies_them_at_every_level(pool):
    llm, router, backend = pool
    no_fallback = llm.model_copy(update={"fallback": False})
    backend.fail(status=503, model="mid", times=None)
    with pytest.raises(Exception, match="injected fault"):
        no_fallback.invoke("medium one")
    assert llm.invoke("medium one").content.startswith("[top]")  # the original falls back

    seen = []
    recorder = Bands()
    recorder.strong_win_rate = lambda prompts: (
        seen.extend(prompts) or Bands.strong_win_rate(recorder, prompts)
    )
    conversation = llm.model_copy(update={"route_on": "conversation", "router": recorder})
    reply = conversation.invoke([("user", "hard one"), ("ai", "ok"), ("user", "and now?")])
    assert reply.content.startswith("[top]")  # "hard" is in the conversation, not the turn
    assert seen == ["user: and now?\nassistant: ok\nuser: hard one"]  # newest first
    inner = conversation.strong
    assert (inner.route_on, inner.router, inner.fallback) == ("conversation", recorder, True)
    assert inner.threshold == 0.7  # each level keeps its own cut


def test_configurable_pool_wide_fields_reach_every_level(pool, second_backend):
    from langchain_core.runnables import ConfigurableField

    llm, _, old = pool
    configurable = llm.configurable_fields(api_base=ConfigurableField(id="endpoint"))
    config = {"configurable": {"endpoint": second_backend.base_url}}
    for prompt in ("easy one", "medium one", "hard one"):
        configurable.invoke(prompt, config)
    assert old.requests == []
    assert [r.model for r in second_backend.requests] == ["cheap", "mid", "top"]


def test_a_router_given_as_a_pool_model_keeps_its_own_options(fresh_backend, second_backend):
    """Only the levels `routed_pool` builds follow the pool: a router the caller gave as one of
    its models is a model, configured by the caller."""
    top = RouteLLMChat(
        weak="openai/mid",
        strong="openai/top",
        router=Bands(),
        threshold=0.7,
        api_base=fresh_backend.base_url,
        api_key="test",
    )
    llm = routed_pool(["openai/cheap", top], [0.3], router=Bands(), api_base="http://unused")
    moved = llm.model_copy(update={"api_base": second_backend.base_url, "fallback": False})
    assert moved.strong is top and top.api_base == fresh_backend.base_url and top.fallback
    assert moved.invoke("hard one").content.startswith("[top]")
    assert [r.model for r in fresh_backend.requests] == ["top"]


def test_a_two_model_copy_is_unchanged(fresh_backend, second_backend):
    llm = RouteLLMChat(
        weak="openai/cheap",
        strong="openai/top",
        router=Bands(),
        api_base=fresh_backend.base_url,
        api_key="test",
    )
    moved = llm.model_copy(update={"api_base": second_backend.base_url, "threshold": 0.95})
    assert moved.invoke("hard one").content.startswith("[cheap]")
    assert [r.model for r in second_backend.requests] == ["cheap"]
    assert llm.threshold == 0.5 and llm.api_base == fresh_backend.base_url


# -- per-call options: the outermost level only -------------------------------------------------
def test_callbacks_tags_and_metadata_of_a_pool_see_each_call_once(fresh_backend):
    from langchain_core.callbacks import UsageMetadataCallbackHandler

    handler, usage = RoutingCallbackHandler(), UsageMetadataCallbackHandler()
    llm = _three_models(
        fresh_backend, Bands(), callbacks=[handler, usage], tags=["mine"], metadata={"team": "a"}
    )
    for prompt in ("easy one", "medium one", "hard one"):
        llm.invoke(prompt)
    assert [(c.model, c.route) for c in handler.calls] == [
        ("openai/cheap", "weak"),
        ("openai/mid", "weak"),
        ("openai/top", "strong"),
    ]
    one_call = usage.usage_metadata["openai/cheap"]["total_tokens"]
    assert {m: u["total_tokens"] for m, u in usage.usage_metadata.items()} == {
        "openai/cheap": one_call,
        "openai/mid": one_call,
        "openai/top": one_call,
    }
    inner = llm.strong
    assert (inner.callbacks, inner.tags) == (None, None)
    assert "team" not in (inner.metadata or {}) and llm.metadata["team"] == "a"
    with collect_runs() as runs:
        llm.invoke("hard one")
    tagged = []

    def walk(run) -> None:
        tagged.extend([run.name] if "mine" in run.tags else [])
        for child in run.child_runs:
            walk(child)

    walk(runs.traced_runs[0])
    assert tagged == [runs.traced_runs[0].name]  # the pool's run, not its levels' as well


def test_a_pools_rate_limiter_is_acquired_once_per_call(fresh_backend):
    from langchain_core.rate_limiters import InMemoryRateLimiter

    class Counting(InMemoryRateLimiter):
        acquired = 0

        def acquire(self, *, blocking: bool = True) -> bool:
            Counting.acquired += 1
            return True

    llm = _three_models(fresh_backend, Bands(), rate_limiter=Counting())
    for prompt in ("easy one", "medium one", "hard one"):
        llm.invoke(prompt)
    assert Counting.acquired == 3


# -- the LLM cache -----------------------------------------------------------------------------
def test_pools_sharing_a_cache_never_share_an_answer_of_different_models(fresh_backend):
    from langchain_core.caches import InMemoryCache

    cache, router = InMemoryCache(), Bands()

    def pool_of(top: str) -> RouteLLMChat:
        return routed_pool(
            ["openai/cheap", "openai/mid", f"openai/{top}"],
            [0.3, 0.7],
            router=router,
            api_base=fresh_backend.base_url,
            api_key="test",
            cache=cache,
        )

    first, second = pool_of("top"), pool_of("other")
    assert first.invoke("hard one").content.startswith("[top]")
    assert second.invoke("hard one").content.startswith("[other]")
    again = first.invoke("hard one")
    assert again.content.startswith("[top]")
    assert [r.model for r in fresh_backend.requests] == ["top", "other"]  # the third: cached
    assert len(cache._cache) == 2  # one entry per pool and prompt, none per inner level
    # same pool, prompts in different bands: never each other's answer
    assert first.invoke("medium one").content.startswith("[mid]")
