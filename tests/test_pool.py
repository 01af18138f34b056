"""A pool of three models: each prompt goes to the cheapest model its score band allows."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.tracers.context import collect_runs

from routellm_lc.graph import RoutingCallbackHandler
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
