"""RouteLLMChat against the local OpenAI-compatible backend: which model answers, the routing
decision on every response, batching, tools, structured output, fallback and bad input."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import numpy as np
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import UsageMetadataCallbackHandler, get_usage_metadata_callback
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.messages import AIMessage, HumanMessage, trim_messages
from langchain_core.tools import tool
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from pydantic import BaseModel
from typing_extensions import TypedDict

from routellm_lc.chat_model import RouteLLMChat
from routellm_lc.errors import CheckpointError, EmptyPromptError
from routellm_lc.models import LiteLLMChatModel
from routellm_lc.routers.base import Router

STRONG, WEAK = "openai/strong", "openai/weak"


class KeywordRouter(Router):
    """Score 0.9 when the prompt says "hard", else 0.1; records every call it gets."""

    name = "keyword"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(prompts))
        return np.array([0.9 if "hard" in p else 0.1 for p in prompts])


@pytest.fixture
def router() -> KeywordRouter:
    return KeywordRouter()


@pytest.fixture
def make_chat(fresh_backend, router):
    def make(**overrides) -> RouteLLMChat:
        params = {
            "strong": STRONG,
            "weak": WEAK,
            "router": router,
            "threshold": 0.5,
            "api_base": fresh_backend.base_url,
            "api_key": "test-key",
            "timeout": 10,
            "max_retries": 0,
        }
        return RouteLLMChat(**{**params, **overrides})

    return make


def _answered(backend) -> list[str]:
    return [r.model for r in backend.requests if r.path.endswith("/chat/completions")]


def _merged(chunks):
    merged = None
    for chunk in chunks:
        merged = chunk if merged is None else merged + chunk
    return merged


def _chat_openai(backend, name: str, **overrides):
    """langchain-openai's ChatOpenAI on the local backend: the reference chat model."""
    import openai
    from langchain_openai import ChatOpenAI

    params = {"base_url": backend.base_url, "api_key": "k", "max_retries": 0, "timeout": 10}
    # its own async client: ChatOpenAI shares one per base URL otherwise, and a connection
    # pooled on an earlier test's closed event loop would fail an async test
    params["http_async_client"] = openai.DefaultAsyncHttpxClient()
    return ChatOpenAI(model=name, **{**params, **overrides})


# -- the four call styles ----------------------------------------------------------------------
def test_invoke_routes_hard_prompt_to_strong(make_chat, fresh_backend):
    reply = make_chat().invoke("a hard question")
    assert reply.content == "[strong] echo: a hard question"
    assert _answered(fresh_backend) == ["strong"]
    routing = reply.response_metadata["routing"]
    assert routing["router"] == "keyword"
    assert routing["score"] == pytest.approx(0.9)
    assert routing["threshold"] == 0.5
    assert routing["model"] == STRONG
    assert routing["route"] == "strong"
    assert routing["latency_ms"] >= 0
    assert "fallback_from" not in routing


async def test_ainvoke_routes_easy_prompt_to_weak(make_chat, fresh_backend):
    reply = await make_chat().ainvoke("an easy one")
    assert reply.content == "[weak] echo: an easy one"
    assert _answered(fresh_backend) == ["weak"]
    assert reply.response_metadata["routing"]["route"] == "weak"


def test_per_call_model_is_refused_not_silently_forwarded(make_chat, fresh_backend):
    chat = make_chat()
    with pytest.raises(ValueError, match="chooses the model per call"):
        chat.invoke("a hard question", model="openai/other")
    with pytest.raises(ValueError, match="chooses the model per call"):
        list(chat.stream("an easy one", model="openai/other"))
    assert _answered(fresh_backend) == []  # nothing reached a model


def test_stream_carries_decision_and_usage(make_chat, fresh_backend):
    chunks = list(make_chat().stream("a hard question"))
    assert len(chunks) > 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "[strong] echo: a hard question"
    assert merged.response_metadata["routing"]["model"] == STRONG
    assert merged.usage_metadata["total_tokens"] > 0
    assert _answered(fresh_backend) == ["strong"]
    assert fresh_backend.requests_for("strong")[-1].body["stream"] is True


async def test_astream_routes_to_weak(make_chat, fresh_backend):
    chunks = [c async for c in make_chat().astream("an easy one")]
    assert "".join(c.content for c in chunks) == "[weak] echo: an easy one"
    assert chunks[0].response_metadata["routing"]["route"] == "weak"
    assert _answered(fresh_backend) == ["weak"]


# -- batches: one router call for all prompts ------------------------------------------------
PROMPTS = ["hard one", "easy two", "hard three"]


def test_batch_scores_all_prompts_in_one_router_call(make_chat, router, fresh_backend):
    replies = make_chat().batch(PROMPTS)
    assert router.calls == [PROMPTS]
    assert [r.response_metadata["routing"]["route"] for r in replies] == [
        "strong",
        "weak",
        "strong",
    ]
    assert [r.content for r in replies] == [
        "[strong] echo: hard one",
        "[weak] echo: easy two",
        "[strong] echo: hard three",
    ]
    assert all(r.response_metadata["routing"]["batch_size"] == 3 for r in replies)
    assert sorted(_answered(fresh_backend)) == ["strong", "strong", "weak"]


@pytest.mark.parametrize("include_raw", [False, True])
async def test_structured_output_batches_score_in_one_router_call(make_chat, router, include_raw):
    structured = make_chat().with_structured_output(Person, include_raw=include_raw)
    replies = structured.batch(PROMPTS)
    assert router.calls == [PROMPTS]
    parsed = [r["parsed"] if include_raw else r for r in replies]
    assert parsed == [Person(name="example name", age=1)] * 3
    if include_raw:
        routes = [r["raw"].response_metadata["routing"]["route"] for r in replies]
        assert routes == ["strong", "weak", "strong"]
    router.calls.clear()
    await structured.abatch(PROMPTS)
    assert router.calls == [PROMPTS]


async def test_batch_as_completed_scores_all_prompts_in_one_router_call(make_chat, router):
    chat = make_chat()
    done = dict(chat.batch_as_completed(PROMPTS))
    assert router.calls == [PROMPTS]
    assert [done[i].content for i in range(3)] == [
        "[strong] echo: hard one",
        "[weak] echo: easy two",
        "[strong] echo: hard three",
    ]
    router.calls.clear()
    done = {i: reply async for i, reply in chat.abatch_as_completed(PROMPTS)}
    assert router.calls == [PROMPTS]
    assert [done[i].response_metadata["routing"]["route"] for i in range(3)] == [
        "strong",
        "weak",
        "strong",
    ]
    # the scores are not left in the caller's context while it iterates
    router.calls.clear()
    for _index, _reply in chat.batch_as_completed(PROMPTS[:2]):
        chat.invoke("hard one")
    assert router.calls == [PROMPTS[:2], ["hard one"], ["hard one"]]
    assert list(chat.batch_as_completed([])) == []


def test_batch_returns_an_unroutable_inputs_error_in_its_place(make_chat, router):
    chat = make_chat()
    replies = chat.batch(["hard one", "", "easy two"], return_exceptions=True)
    assert router.calls == [["hard one", "easy two"]]  # the others still scored in one pass
    assert replies[0].content == "[strong] echo: hard one"
    assert isinstance(replies[1], EmptyPromptError)
    assert replies[2].response_metadata["routing"]["batch_size"] == 2
    with pytest.raises(EmptyPromptError):
        chat.batch(["hard one", ""])


class PickyRouter(KeywordRouter):
    """KeywordRouter that cannot score a prompt containing "poison" (a whole pass fails)."""

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        if any("poison" in p for p in prompts):
            self.calls.append(list(prompts))
            raise TypeError("cannot tokenise this text")
        return super().strong_win_rate(prompts)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_prompt_the_router_cannot_score_fails_only_its_own_batch_item(make_chat, asynchronous):
    router = PickyRouter()
    chat = make_chat(router=router)
    inputs = ["hard one", "poison pill", "easy two"]
    if asynchronous:
        replies = asyncio.run(chat.abatch(inputs, return_exceptions=True))
    else:
        replies = chat.batch(inputs, return_exceptions=True)
    assert replies[0].content == "[strong] echo: hard one"
    assert isinstance(replies[1], TypeError)
    assert replies[2].content == "[weak] echo: easy two"
    # one pass for the batch, then one per prompt; the bad one is tried again by its own call
    assert router.calls[0] == inputs
    assert ["hard one"] in router.calls and ["easy two"] in router.calls
    assert router.calls.count(["poison pill"]) == 2


async def test_abatch_scores_all_prompts_in_one_router_call(make_chat, router):
    replies = await make_chat().abatch(PROMPTS)
    assert router.calls == [PROMPTS]
    assert [r.content.split("]")[0] for r in replies] == ["[strong", "[weak", "[strong"]


def test_decide_scores_without_calling_a_model(make_chat, router, fresh_backend):
    decisions = make_chat().decide(["hard", "easy"])
    assert [d.route for d in decisions] == ["strong", "weak"]
    assert router.calls == [["hard", "easy"]]
    assert _answered(fresh_backend) == []


# -- usage, sampling parameters, tracing -----------------------------------------------------
def test_usage_metadata_passes_through(make_chat):
    reply = make_chat().invoke("a hard question")
    # The backend counts words: 3 prompt words + 3 per message; the reply has 5 words.
    assert reply.usage_metadata == {"input_tokens": 6, "output_tokens": 5, "total_tokens": 11}


def test_sampling_parameters_reach_the_backend(make_chat, fresh_backend):
    make_chat().invoke("hard", temperature=0.3, max_tokens=7)
    body = fresh_backend.requests_for("strong")[-1].body
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 7


@pytest.mark.parametrize("side", ["litellm", "chat_openai"])
@pytest.mark.parametrize("call", ["invoke", "stream", "batch"])
def test_parameters_set_on_the_router_reach_the_answering_model(
    make_chat, fresh_backend, side, call
):
    """`RouteLLMChat(temperature=0, max_tokens=100, stop=[...], model_kwargs=...)` as on any
    LangChain chat model: sent with every call, whichever model answers (they used to be
    dropped without a word); a call's own keyword wins."""
    sides = {}
    if side == "chat_openai":
        sides = {
            "strong": _chat_openai(fresh_backend, "strong"),
            "weak": _chat_openai(fresh_backend, "weak"),
        }
    chat = make_chat(temperature=0, max_tokens=100, stop=["END"], model_kwargs={"seed": 7}, **sides)
    for prompt in ("hard one", "easy one"):
        if call == "invoke":
            chat.invoke(prompt)
        elif call == "stream":
            list(chat.stream(prompt))
        else:
            chat.batch([prompt])

    def most(body):  # langchain-openai sends OpenAI's newer name for it
        return body.get("max_tokens", body.get("max_completion_tokens"))

    for model in ("strong", "weak"):
        body = fresh_backend.requests_for(model)[-1].body
        assert (body["temperature"], most(body), body["stop"], body["seed"]) == (
            0,
            100,
            ["END"],
            7,
        )
    chat.invoke("hard", temperature=0.5, stop=["X"])
    body = fresh_backend.requests_for("strong")[-1].body
    assert (body["temperature"], body["stop"], most(body)) == (0.5, ["X"], 100)


def test_parameters_set_on_the_router_are_in_its_langsmith_params(make_chat):
    params = make_chat(temperature=0.2, max_tokens=50, stop=["a"])._get_ls_params()
    assert (params["ls_temperature"], params["ls_max_tokens"], params["ls_stop"]) == (
        0.2,
        50,
        ["a"],
    )


def test_child_run_nests_under_router_run_and_usage_counts_once(make_chat):
    collector = RunCollectorCallbackHandler()
    usage = UsageMetadataCallbackHandler()
    reply = make_chat().invoke("a hard question", config={"callbacks": [collector, usage]})
    (router_run,) = [r for r in collector.traced_runs if r.parent_run_id is None]
    assert router_run.extra["metadata"]["routing"]["model"] == STRONG
    assert "routellm:strong" in router_run.tags
    (child,) = router_run.child_runs
    assert child.name == STRONG
    # Only the router run reaches non-tracer handlers: usage is not double counted.
    assert (
        sum(u["total_tokens"] for u in usage.usage_metadata.values())
        == (reply.usage_metadata["total_tokens"])
    )


async def test_astream_log_and_events_v1_work_with_a_slash_in_the_model_name(make_chat):
    """`astream_log` builds JSON-patch paths from run names without escaping: the chosen
    model's run is `openai:strong` there, so the patches apply (and events v1 runs)."""
    from langchain_core.tracers.log_stream import RunLog

    chat = make_chat()
    final = None
    async for patch in chat.astream_log("a hard question", diff=True):
        final = patch if final is None else final + patch
    assert isinstance(final, RunLog)
    assert final.state["final_output"].content.startswith("[strong]")
    assert list(final.state["logs"]) == ["openai:strong"]
    logs = [log async for log in chat.astream_log("a hard question", diff=False)]
    log = logs[-1]
    assert list(log.state["logs"]) == ["openai:strong"]
    assert log.state["logs"]["openai:strong"]["name"] == "openai:strong"
    events = [e async for e in chat.astream_events("a hard question", version="v1")]
    assert events[-1]["event"] == "on_chat_model_end"


@pytest.mark.parametrize("kind", ["litellm", "chat_openai"])
def test_llm_output_carries_the_answering_models_usage_and_name(make_chat, fresh_backend, kind):
    """Callbacks and `generate()` read `llm_output["token_usage"]`, as ChatOpenAI gives it."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Ends(BaseCallbackHandler):
        outputs: list = []

        def on_llm_end(self, response, **kwargs):
            self.outputs.append(response.llm_output)

    handler = Ends()
    chat = make_chat(**_children(kind, fresh_backend))
    reply = chat.invoke("a hard question", config={"callbacks": [handler]})
    (output,) = handler.outputs
    assert output["routing"]["route"] == "strong"
    assert output["token_usage"]["total_tokens"] == reply.usage_metadata["total_tokens"] > 0
    assert output["model_name"].endswith("strong")
    # generate() sums the calls' usage, as ChatOpenAI's does
    result = chat.generate([[HumanMessage("an easy question")], [HumanMessage("a hard one")]])
    replies = [g[0].message for g in result.generations]
    assert [r.response_metadata["routing"]["route"] for r in replies] == ["weak", "strong"]
    assert result.llm_output["token_usage"]["total_tokens"] == sum(
        r.usage_metadata["total_tokens"] for r in replies
    )


def _counted(callback) -> int:
    return sum(u["total_tokens"] for u in callback.usage_metadata.values())


def test_usage_counts_once_under_get_usage_metadata_callback(make_chat):
    """LangChain's documented usage counter registers itself through a context variable, so
    every callback manager configured during the call picks it up, the chosen model's included:
    it must still count each routed call once."""
    chat = make_chat()
    with get_usage_metadata_callback() as callback:
        reply = chat.invoke("a hard question")
    assert _counted(callback) == reply.usage_metadata["total_tokens"] > 0
    with get_usage_metadata_callback() as callback:
        replies = chat.batch(["a hard question", "an easy one"])
    assert _counted(callback) == sum(r.usage_metadata["total_tokens"] for r in replies)
    with get_usage_metadata_callback() as callback:
        merged, between = None, None
        for chunk in chat.stream("a hard question"):
            merged = chunk if merged is None else merged + chunk
            # the caller's own call between chunks still reaches the caller's counter
            between = between or chat.invoke("an easy question")
    assert (
        _counted(callback)
        == merged.usage_metadata["total_tokens"] + between.usage_metadata["total_tokens"]
    )
    assert merged.usage_metadata["total_tokens"] > 0


async def test_usage_counts_once_under_get_usage_metadata_callback_async(make_chat):
    chat = make_chat()
    with get_usage_metadata_callback() as callback:
        reply = await chat.ainvoke("an easy question")
    assert _counted(callback) == reply.usage_metadata["total_tokens"] > 0
    with get_usage_metadata_callback() as callback:
        merged = None
        async for chunk in chat.astream("a hard question"):
            merged = chunk if merged is None else merged + chunk
    assert _counted(callback) == merged.usage_metadata["total_tokens"] > 0


# -- LLM caches ---------------------------------------------------------------------------
@pytest.fixture
def global_cache():
    before = get_llm_cache()
    cache = InMemoryCache()
    set_llm_cache(cache)
    yield cache
    set_llm_cache(before)


def test_global_cache_reuses_the_answering_models_answers(make_chat, fresh_backend, global_cache):
    chat = make_chat()
    first = chat.invoke("a hard question")
    second = chat.invoke("a hard question")
    # the strong model's second answer comes from its cache; the call is still routed
    assert _answered(fresh_backend) == ["strong"]
    assert second.content == first.content
    assert second.response_metadata["routing"]["model"] == STRONG
    # the router's own layer adds no entries (its per-call decision would make each unique)
    assert len(global_cache._cache) == 1


@pytest.mark.parametrize("side", ["litellm", "chat_openai"])
@pytest.mark.parametrize("mode", ["streaming", "stream", "astream", "graph"])
def test_the_models_cache_answers_a_streamed_call_too(
    make_chat, fresh_backend, global_cache, mode, side
):
    """`streaming=True`, `stream()` and a graph streamed with `stream_mode="messages"` (how
    agents run) answer through the models' streams, which LangChain never looks up in the
    cache: every repeat of a prompt was a paid call. Now the model's cache is read and written
    as its invoke would, and a hit is marked as one (`total_cost` 0)."""
    from langgraph.graph import START, MessagesState, StateGraph

    sides = {}
    if side == "chat_openai":
        sides = {
            "strong": _chat_openai(fresh_backend, "strong"),
            "weak": _chat_openai(fresh_backend, "weak"),
        }
    chat = make_chat(**({"streaming": True} if mode == "streaming" else {}), **sides)

    def node(state, config):
        return {"messages": [chat.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState).add_node("llm", node).add_edge(START, "llm").compile()

    async def astreamed():
        merged = None
        async for chunk in chat.astream("a hard question"):
            merged = chunk if merged is None else merged + chunk
        return merged

    def ask():  # sync (a graph streamed from a running event loop did not stream its node)
        if mode == "streaming":
            return chat.invoke("a hard question")
        if mode == "stream":
            return _merged(chat.stream("a hard question"))
        if mode == "astream":
            return asyncio.run(astreamed())
        inputs = {"messages": [("user", "a hard question")]}
        chunks = [m for m, _ in graph.stream(inputs, stream_mode="messages")]
        streamed.append(len(chunks))
        return _merged(iter(chunks))

    streamed: list[int] = []
    first = ask()
    with get_usage_metadata_callback() as counter:
        second = ask()
    third = ask()
    assert mode != "graph" or streamed[0] > 1  # the node's model call was streamed
    # the hit counted once (the model's own run answering from its cache is not counted again)
    if second.usage_metadata.get("total_tokens"):
        (counted,) = counter.usage_metadata.values()
        assert counted["total_tokens"] == second.usage_metadata["total_tokens"]
    assert _answered(fresh_backend) == ["strong"]
    assert second.content == first.content == third.content and first.content.startswith("[strong]")
    assert second.response_metadata["routing"]["route"] == "strong"
    assert second.usage_metadata["total_cost"] == 0
    assert "total_cost" not in (first.usage_metadata or {})  # ChatOpenAI streams no usage
    assert len(global_cache._cache) == 1
    # the entry is the one the model's own invoke reads and writes: one cache for both paths
    chat.invoke("a hard question")
    assert _answered(fresh_backend) == ["strong"]


def test_a_stream_cut_short_or_after_a_fallback_caches_only_whole_answers(
    make_chat, fresh_backend, global_cache
):
    chat = make_chat()
    stream = chat.stream("a hard question with several words to stream")
    next(stream)
    stream.close()  # stopped reading: the answer is partial, nothing stored
    assert global_cache._cache == {}
    fresh_backend.fail(status=503, times=1, model="strong")
    answer = _merged(chat.stream("a hard question"))  # the weak model answers, whole
    assert answer.response_metadata["routing"]["fallback_from"] == STRONG
    assert len(global_cache._cache) == 1  # under the weak model's own key, as its invoke would
    chat.invoke("a hard question", config={"configurable": {"routellm_threshold": 0.95}})
    assert _answered(fresh_backend) == ["strong", "strong", "weak"]


def test_explicit_cache_reuses_routed_answers_for_the_same_chosen_model(make_chat, fresh_backend):
    chat = make_chat(cache=InMemoryCache())
    first = chat.invoke("a hard question")
    second = chat.invoke("a hard question")
    assert _answered(fresh_backend) == ["strong"]
    assert second.content == first.content
    # the same prompt routed to the other model is not answered from the strong one's entry
    weak = chat.invoke("a hard question", config={"configurable": {"routellm_threshold": 0.95}})
    assert _answered(fresh_backend) == ["strong", "weak"]
    assert weak.response_metadata["routing"]["model"] == WEAK


@pytest.mark.parametrize("call", ["invoke", "ainvoke"])
async def test_a_fallback_answer_is_not_cached_under_the_chosen_models_key(
    make_chat, fresh_backend, call
):
    """The key names the model the router chose, made before the call: a fallback answer
    stored there would answer that prompt with the other model from then on."""
    cache = InMemoryCache()
    chat = make_chat(cache=cache)

    async def ask():
        if call == "invoke":
            return chat.invoke("a hard question")
        return await chat.ainvoke("a hard question")

    fresh_backend.fail(status=503, times=1, model="strong")
    first = await ask()
    assert first.response_metadata["routing"]["fallback_from"] == STRONG
    assert cache._cache == {}
    second, third = await ask(), await ask()
    assert _answered(fresh_backend) == ["strong", "weak", "strong"]
    assert "fallback_from" not in second.response_metadata["routing"]
    assert third.content == second.content and second.content.startswith("[strong]")
    assert len(cache._cache) == 1


def test_cache_true_without_a_global_cache_is_langchains_error(make_chat):
    with pytest.raises(ValueError, match="no cache found"):
        make_chat(cache=True).invoke("a hard question")


def test_a_copy_with_another_cache_uses_it_without_fallback_answers(make_chat, fresh_backend):
    cache = InMemoryCache()
    chat = make_chat().model_copy(update={"cache": cache})
    fresh_backend.fail(status=503, times=1, model="strong")
    chat.invoke("a hard question")
    assert cache._cache == {}
    chat.invoke("a hard question")
    assert len(cache._cache) == 1


def test_two_sides_with_one_model_name_never_share_a_cache_entry(fresh_backend, router):
    """Strong and weak may be one model in two settings (`gpt-4o` at two temperatures): the
    key names the side that answers, not only its model's name."""
    from routellm_lc.testing import LocalBackend

    with LocalBackend() as other:
        chat = RouteLLMChat(
            strong=_chat_openai(fresh_backend, "same", temperature=0.0),
            weak=_chat_openai(other, "same", temperature=1.0),
            router=router,
            cache=InMemoryCache(),
        )
        strong = chat.invoke("a hard question")
        weak = chat.invoke("a hard question", config={"configurable": {"routellm_threshold": 0.95}})
        weak_requests = len(other.requests_for("same"))
    assert strong.response_metadata["routing"]["route"] == "strong"
    assert weak.response_metadata["routing"]["route"] == "weak"
    assert weak_requests == 1


@pytest.mark.parametrize(
    "other",
    [{"temperature": 1.5}, {"max_tokens": 7}, {"base_url": "elsewhere"}, {"model": "weak-2"}],
)
def test_routers_whose_models_differ_never_share_a_cache_entry(fresh_backend, router, other):
    """The key holds each side's own key (its endpoint, sampling parameters), not just its
    name: two routers over differently configured models do not answer from each other's."""
    from routellm_lc.testing import LocalBackend

    cache = InMemoryCache()
    with LocalBackend() as elsewhere:
        changed = {**other, "base_url": elsewhere.base_url} if "base_url" in other else other
        weak = {"name": "weak", **changed}
        weak["name"] = weak.pop("model", weak["name"])
        first = RouteLLMChat(
            strong=_chat_openai(fresh_backend, "strong"),
            weak=_chat_openai(fresh_backend, "weak"),
            router=router,
            cache=cache,
        )
        second = RouteLLMChat(
            strong=_chat_openai(fresh_backend, "strong"),
            weak=_chat_openai(fresh_backend, **weak),
            router=router,
            cache=cache,
        )
        first.invoke("an easy question")
        assert first.invoke("an easy question").content.startswith("[weak]")  # cached
        second.invoke("an easy question")
        answered = _answered(fresh_backend) + _answered(elsewhere)
    assert answered == ["weak", weak["name"]]
    assert len(cache._cache) == 2


def test_the_cache_key_names_a_pools_models_not_its_levels(fresh_backend, router):
    """A pool's next level is no model: the key names the models inside it."""
    from routellm_lc.pool import routed_pool

    def pool(top: str, api_base: str = fresh_backend.base_url) -> RouteLLMChat:
        return routed_pool(
            ["openai/a", "openai/b", top], [0.3, 0.7], router=router, api_base=api_base
        )

    decision = {"model": "router-keyword-0.7", "route": "strong", "score": 0.9}
    key = pool("openai/c")._get_llm_string(routing_decision=decision)
    assert "openai/c" in key and "('routed_model', 'openai/c')" in key
    assert key != pool("openai/d")._get_llm_string(routing_decision=decision)
    assert key != pool("openai/c", "http://other")._get_llm_string(routing_decision=decision)
    mid = pool("openai/c")._get_llm_string(routing_decision={**decision, "score": 0.5})
    assert "('routed_model', 'openai/b')" in mid
    assert pool("openai/c")._identifying_params["strong"] == {
        "router": "keyword",
        "threshold": 0.7,
        "strong": "openai/c",
        "weak": "openai/b",
    }


# -- token counting ---------------------------------------------------------------------
def test_token_counts_use_the_models_tokenizers(make_chat):
    chat = make_chat()
    hundred = chat.get_num_tokens_from_messages([HumanMessage("a " * 100)])
    fifty = chat.get_num_tokens_from_messages([HumanMessage("a " * 50)])
    assert hundred - fifty == 50  # one token per " a" (LangChain's GPT-2 fallback gives 0 here)
    assert chat.get_num_tokens("a " * 100) - chat.get_num_tokens("a " * 50) == 50


def test_token_count_is_the_larger_of_the_two_models(make_chat, fresh_backend):
    ten_per_word = LiteLLMChatModel(
        model=STRONG,
        api_base=fresh_backend.base_url,
        custom_get_token_ids=lambda text: [0] * 10 * len(text.split()),
    )
    chat = make_chat(strong=ten_per_word)
    assert chat.get_num_tokens("one two three") == 30
    question = [HumanMessage("one two three")]
    count = chat.get_num_tokens_from_messages(question)
    assert count == ten_per_word.get_num_tokens_from_messages(question) == 40  # "Human: ..."
    assert count > chat._model("weak").get_num_tokens_from_messages(question)
    chat = make_chat(weak=ten_per_word)
    assert chat.get_num_tokens_from_messages(question) == 40


def test_trim_messages_with_the_router_as_token_counter(make_chat):
    chat = make_chat()
    history = []
    for i in range(20):
        history += [HumanMessage(f"question {i}: " + "word " * 40), AIMessage("answer " * 40)]
    trimmed = trim_messages(
        history, max_tokens=300, token_counter=chat, strategy="last", start_on="human"
    )
    assert 0 < len(trimmed) < len(history)
    assert trimmed[-1] is history[-1]
    assert chat.get_num_tokens_from_messages(trimmed) <= 300
    assert chat.invoke(trimmed).content  # the trimmed history is a valid request


# -- tools and structured output through the router ------------------------------------------
@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_bind_tools_reaches_the_routed_model(make_chat, fresh_backend):
    reply = make_chat().bind_tools([add]).invoke("hard: add 2 and 3")
    assert reply.tool_calls[0]["name"] == "add"
    assert set(reply.tool_calls[0]["args"]) == {"a", "b"}
    (request,) = fresh_backend.requests_for("strong")
    assert request.body["tools"][0]["function"]["name"] == "add"
    assert fresh_backend.requests_for("weak") == []


def test_bind_tools_with_tool_choice_on_weak(make_chat, fresh_backend):
    fresh_backend.configure("weak", tool_arguments={"add": {"a": 2, "b": 3}})
    reply = make_chat().bind_tools([add], tool_choice="add").invoke("easy: add 2 and 3")
    assert reply.tool_calls[0]["args"] == {"a": 2, "b": 3}
    body = fresh_backend.requests_for("weak")[-1].body
    assert body["tool_choice"]["function"]["name"] == "add"


class City(BaseModel):
    city: str


@pytest.mark.parametrize("kind", ["litellm", "chat_openai"])
def test_tools_bound_with_a_response_format_are_strict(make_chat, fresh_backend, kind):
    """As on ChatOpenAI: OpenAI requires strict tools beside a `response_format`, and
    ChatOpenAI refuses to parse a reply whose tools are not (create_agent's ProviderStrategy
    binds both)."""
    from langchain.agents import create_agent
    from langchain.agents.structured_output import ProviderStrategy

    chat = make_chat(**_children(kind, fresh_backend))
    schema = City.model_json_schema() | {"additionalProperties": False}
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "City", "schema": schema, "strict": True},
    }
    reply = chat.bind_tools([add], response_format=response_format).invoke("hard: add 2 and 3")
    assert reply.tool_calls[0]["name"] == "add"
    assert fresh_backend.requests_for("strong")[-1].body["tools"][0]["function"]["strict"]
    if kind == "litellm":  # an explicit False is kept (ChatOpenAI's parser would refuse it)
        chat.bind_tools([add], response_format=response_format, strict=False).invoke("hard: 1")
        assert (
            fresh_backend.requests_for("strong")[-1].body["tools"][0]["function"]["strict"] is False
        )
    fresh_backend.configure("strong", reply='{"city": "Paris"}')
    agent = create_agent(chat, [add], response_format=ProviderStrategy(City))
    out = agent.invoke({"messages": [("user", "hard: which city?")]})
    assert out["structured_response"] == City(city="Paris")
    body = fresh_backend.requests_for("strong")[-1].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["tools"][0]["function"]["strict"] is True


class Person(BaseModel):
    name: str
    age: int


def test_with_structured_output_pydantic(make_chat, fresh_backend):
    fresh_backend.configure("strong", tool_arguments={"Person": {"name": "Ada", "age": 36}})
    person = make_chat().with_structured_output(Person).invoke("hard: who wrote the first program?")
    assert person == Person(name="Ada", age=36)
    assert fresh_backend.requests_for("strong")[-1].body["tools"][0]["function"]["name"] == (
        "Person"
    )


def test_structured_output_json_schema_sends_a_response_format_not_tools(make_chat, fresh_backend):
    person = make_chat().with_structured_output(Person, method="json_schema").invoke("easy: who?")
    assert person == Person(name="example name", age=1)  # the backend fills the schema in
    body = fresh_backend.requests_for("weak")[-1].body
    assert "tools" not in body and "tool_choice" not in body
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    # a pydantic schema is sent as ChatOpenAI sends it: strict, every field required
    assert response_format["json_schema"]["name"] == "Person"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["additionalProperties"] is False
    assert fresh_backend.requests_for("strong") == []


class PersonDict(TypedDict):
    """A person."""

    name: str
    age: int


def test_structured_output_json_schema_reaches_chat_openai_children(fresh_backend, router):
    llm = RouteLLMChat(
        strong=_chat_openai(fresh_backend, "big"),
        weak=_chat_openai(fresh_backend, "small"),
        router=router,
    )
    structured = llm.with_structured_output(PersonDict, method="json_schema", strict=False)
    assert structured.invoke("hard: who?") == {"name": "example name", "age": 1}
    response_format = fresh_backend.requests_for("big")[-1].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is False
    assert set(response_format["json_schema"]["schema"]["properties"]) == {"name", "age"}
    # the same request as ChatOpenAI's own with_structured_output
    reference = _chat_openai(fresh_backend, "big").with_structured_output(
        PersonDict, method="json_schema", strict=False
    )
    reference.invoke("hard: who?")
    assert fresh_backend.requests_for("big")[-1].body["response_format"] == response_format
    # and with a pydantic schema, parsed by the router's own parser
    assert llm.with_structured_output(Person, method="json_schema").invoke("easy") == Person(
        name="example name", age=1
    )


class Echo(BaseModel):
    model: str
    reply: str


def test_structured_output_json_mode_sends_json_object(make_chat, fresh_backend):
    chat = make_chat()
    parsed = chat.with_structured_output(Echo, method="json_mode").invoke("hard: say hi")
    assert parsed == Echo(model="strong", reply="echo: hard: say hi")
    body = fresh_backend.requests_for("strong")[-1].body
    assert body["response_format"] == {"type": "json_object"}
    assert "tools" not in body
    as_dict = chat.with_structured_output(None, method="json_mode").invoke("easy")
    assert as_dict == {"model": "weak", "reply": "echo: easy"}
    with pytest.raises(ValueError, match="`strict` is not supported"):  # as ChatOpenAI
        chat.with_structured_output(Echo, method="json_mode", strict=True)


def test_structured_output_include_raw_keeps_the_routed_message(make_chat, fresh_backend):
    chat = make_chat()
    result = chat.with_structured_output(Person, method="json_schema", include_raw=True).invoke(
        "hard: who?"
    )
    assert result["parsed"] == Person(name="example name", age=1)
    assert result["parsing_error"] is None
    assert result["raw"].response_metadata["routing"]["model"] == STRONG
    fresh_backend.configure("strong", reply="not json")
    broken = chat.with_structured_output(Person, method="json_schema", include_raw=True).invoke(
        "hard: who?"
    )
    assert broken["parsed"] is None and broken["parsing_error"] is not None
    assert broken["raw"].content == "not json"


def test_structured_output_function_calling_passes_strict_into_the_tool(make_chat, fresh_backend):
    fresh_backend.configure("weak", tool_arguments={"Person": {"name": "Ada", "age": 36}})
    structured = make_chat().with_structured_output(Person, method="function_calling", strict=True)
    assert structured.invoke("easy: who?") == Person(name="Ada", age=36)
    body = fresh_backend.requests_for("weak")[-1].body
    assert body["tools"][0]["function"]["strict"] is True
    assert "strict" not in body and "response_format" not in body
    with pytest.raises(ValueError, match="method"):
        make_chat().with_structured_output(Person, method="xml")


def test_bind_tools_strict_reaches_chat_openai_children(fresh_backend, router):
    llm = RouteLLMChat(
        strong=_chat_openai(fresh_backend, "big"),
        weak=_chat_openai(fresh_backend, "small"),
        router=router,
    )
    reply = llm.bind_tools([add], strict=True).invoke("easy: add 1 and 2")
    assert reply.tool_calls[0]["name"] == "add"
    body = fresh_backend.requests_for("small")[-1].body
    assert body["tools"][0]["function"]["strict"] is True
    assert "strict" not in body
    # what ChatOpenAI.bind_tools(strict=True) sends itself
    _chat_openai(fresh_backend, "small").bind_tools([add], strict=True).invoke("add 1 and 2")
    assert fresh_backend.requests_for("small")[-1].body["tools"] == body["tools"]


@pytest.mark.parametrize("strict", [None, True])
def test_bind_tools_hands_the_tools_as_given_to_the_chosen_models_bind_tools(
    fresh_backend, router, strict
):
    """The router converted tools to OpenAI dicts before the chosen model's own `bind_tools`
    saw them: a tool's `extras` (`defer_loading`, Anthropic's `cache_control`) and provider
    server tools were lost, and `parallel_tool_calls` never reached that model's bind_tools
    (ChatAnthropic translates it to `disable_parallel_tool_use`). The request must be the one
    ChatOpenAI.bind_tools itself sends."""

    @tool(extras={"defer_loading": True})
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    llm = RouteLLMChat(
        strong=_chat_openai(fresh_backend, "big"),
        weak=_chat_openai(fresh_backend, "small"),
        router=router,
    )
    options = {"parallel_tool_calls": False, **({"strict": strict} if strict else {})}
    llm.bind_tools([add, lookup], **options).invoke("easy: add 1 and 2")
    routed = fresh_backend.requests_for("small")[-1].body
    _chat_openai(fresh_backend, "small").bind_tools([add, lookup], **options).invoke("add 1 and 2")
    direct = fresh_backend.requests_for("small")[-1].body
    assert routed["tools"] == direct["tools"]
    assert routed["tools"][1].get("defer_loading") is True
    assert routed["parallel_tool_calls"] is direct["parallel_tool_calls"] is False

    seen = []

    class Spy(LiteLLMChatModel):
        def bind_tools(self, tools, *, tool_choice=None, strict=None, parallel_tool_calls=None):
            seen.append((list(tools), parallel_tool_calls))
            return super().bind_tools(tools, tool_choice=tool_choice, strict=strict)

    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    spy = Spy(model="openai/small", api_base=fresh_backend.base_url, api_key="k", timeout=10)
    llm = RouteLLMChat(strong=spy, weak=spy, router=router)
    bound = llm.bind_tools([lookup, server_tool], parallel_tool_calls=False)
    bound.invoke("easy")
    tools, parallel = seen[-1]
    assert tools[0] is lookup and tools[1] == server_tool and parallel is False


def test_bound_tools_yield_to_a_calls_own_and_keep_their_options_in_keys(fresh_backend, router):
    """Review of the tools-as-given change: a call's own `tools` (or a later `bind`) were
    replaced by the bound ones; a generator of tools bound none; `parallel_tool_calls` left the
    cache key (a `False` answer served a `True` call) and the traced parameters; in a pool it
    never reached the real model's bind_tools; a bound router no longer pickled."""
    import pickle

    from langchain_core.utils.function_calling import convert_to_openai_tool

    @tool
    def mul(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    sides = {
        "strong": _chat_openai(fresh_backend, "big"),
        "weak": _chat_openai(fresh_backend, "small"),
    }
    llm = RouteLLMChat(router=router, **sides)

    def sent_tools():
        return [
            t["function"]["name"] for t in fresh_backend.requests_for("small")[-1].body["tools"]
        ]

    llm.bind_tools([add]).invoke("easy", tools=[convert_to_openai_tool(mul)])
    assert sent_tools() == ["mul"]
    llm.bind_tools([add]).bind(tools=[convert_to_openai_tool(mul)]).invoke("easy")
    assert sent_tools() == ["mul"]
    llm.bind_tools(t for t in [add]).invoke("easy")
    assert sent_tools() == ["add"]

    cached = RouteLLMChat(router=router, cache=InMemoryCache(), **sides)
    before = len(fresh_backend.requests_for("small"))
    for parallel in (False, True):
        cached.bind_tools([add], parallel_tool_calls=parallel).invoke("easy")
    assert len(fresh_backend.requests_for("small")) == before + 2  # two keys, two calls
    with collect_runs() as runs:
        llm.bind_tools([add], parallel_tool_calls=False).invoke("easy")
    params = runs.traced_runs[0].extra["invocation_params"]
    assert params["parallel_tool_calls"] is False and "routellm_bound_tools" not in params

    seen = []

    class Spy(LiteLLMChatModel):
        def bind_tools(self, tools, *, tool_choice=None, strict=None, parallel_tool_calls=None):
            seen.append(parallel_tool_calls)
            return super().bind_tools(tools, tool_choice=tool_choice, strict=strict)

    spy = Spy(model="openai/small", api_base=fresh_backend.base_url, api_key="k", timeout=10)
    inner = RouteLLMChat(strong=spy, weak=spy, router=router)
    pool = RouteLLMChat(strong=spy, weak=inner, router=router)
    pool.bind_tools([add], parallel_tool_calls=False).invoke("easy")
    assert seen == [False]
    assert "parallel_tool_calls" not in fresh_backend.requests_for("small")[-1].body

    strings = RouteLLMChat(
        strong="openai/big",
        weak="openai/small",
        router=router,
        api_base=fresh_backend.base_url,
        api_key="k",
        timeout=10,
        max_retries=0,
    )
    bound = pickle.loads(pickle.dumps(strings.bind_tools([add])))
    bound.invoke("easy")
    assert sent_tools() == ["add"]


def test_bind_tools_strict_goes_into_the_function_definition(make_chat, fresh_backend):
    make_chat().bind_tools([add], tool_choice="add", strict=True).invoke("hard: add 1 and 2")
    body = fresh_backend.requests_for("strong")[-1].body
    assert body["tools"][0]["function"]["strict"] is True
    assert "strict" not in body  # not a top-level request parameter


# -- fallback ----------------------------------------------------------------------------------
def test_fallback_when_chosen_model_fails(make_chat, fresh_backend):
    fresh_backend.fail(status=500, model="strong", times=None)
    reply = make_chat().invoke("a hard question")
    assert reply.content == "[weak] echo: a hard question"
    routing = reply.response_metadata["routing"]
    assert routing["fallback_from"] == STRONG
    assert routing["model"] == WEAK
    assert routing["score"] == pytest.approx(0.9)
    assert _answered(fresh_backend) == ["strong", "weak"]


async def test_async_fallback_when_chosen_model_fails(make_chat, fresh_backend):
    fresh_backend.fail(status=503, model="weak", times=None)
    reply = await make_chat().ainvoke("easy")
    assert reply.response_metadata["routing"]["fallback_from"] == WEAK
    assert reply.content.startswith("[strong]")


def test_no_fallback_raises(make_chat, fresh_backend):
    fresh_backend.fail(status=500, model="strong", times=None, message="strong is down")
    with pytest.raises(Exception, match="strong is down"):
        make_chat(fallback=False).invoke("a hard question")
    assert _answered(fresh_backend) == ["strong"]


def test_stream_falls_back_before_first_chunk(make_chat, fresh_backend):
    fresh_backend.fail(status=500, model="strong", times=None)
    chunks = list(make_chat().stream("a hard question"))
    assert "".join(c.content for c in chunks) == "[weak] echo: a hard question"
    assert chunks[0].response_metadata["routing"]["fallback_from"] == STRONG


def _children(kind: str, backend) -> dict:
    if kind == "litellm":
        return {}
    return {"strong": _chat_openai(backend, "strong"), "weak": _chat_openai(backend, "weak")}


@pytest.mark.parametrize("kind", ["litellm", "chat_openai"])
@pytest.mark.parametrize("fault", ["drop", "malformed"])
@pytest.mark.parametrize("asynchronous", [False, True])
def test_stream_falls_back_after_the_opening_role_chunk(
    make_chat, fresh_backend, kind, fault, asynchronous
):
    # the backend's first SSE event is the role-only chunk (no content), as OpenAI's is
    fresh_backend.fail(fault, after_chunks=1, model="strong", times=None)
    chat = make_chat(**_children(kind, fresh_backend))

    async def collect():
        return [c async for c in chat.astream("a hard question")]

    chunks = asyncio.run(collect()) if asynchronous else list(chat.stream("a hard question"))
    assert "".join(c.content for c in chunks) == "[weak] echo: a hard question"
    routing = [c.response_metadata["routing"] for c in chunks if "routing" in c.response_metadata]
    assert len(routing) == 1
    assert routing[0]["fallback_from"] == (STRONG if kind == "litellm" else "strong")
    assert _answered(fresh_backend) == ["strong", "weak"]


@pytest.mark.parametrize("kind", ["litellm", "chat_openai"])
@pytest.mark.parametrize("status", [400, 413, 422])
def test_an_invalid_request_is_not_sent_to_the_other_model(make_chat, fresh_backend, status, kind):
    fresh_backend.fail(status=status, model="strong", times=None, message="request is wrong")
    with pytest.raises(Exception, match="request is wrong") as info:
        make_chat(**_children(kind, fresh_backend)).invoke("a hard question")
    assert info.value.status_code == status
    assert _answered(fresh_backend) == ["strong"]


async def test_an_invalid_request_is_not_sent_to_the_other_model_async(make_chat, fresh_backend):
    fresh_backend.fail(status=400, model="weak", times=None, message="context too long")
    with pytest.raises(Exception, match="context too long"):
        await make_chat().ainvoke("an easy one")
    with pytest.raises(Exception, match="context too long"):
        [c async for c in make_chat().astream("an easy one")]
    assert _answered(fresh_backend) == ["weak", "weak"]


def test_an_invalid_request_is_not_streamed_from_the_other_model(make_chat, fresh_backend):
    fresh_backend.fail(status=422, model="strong", times=None, message="bad params")
    with pytest.raises(Exception, match="bad params"):
        list(make_chat().stream("a hard question"))
    assert _answered(fresh_backend) == ["strong"]


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_misconfigured_model_falls_back_with_a_warning(make_chat, fresh_backend, caplog, status):
    fresh_backend.fail(status=status, model="strong", times=None, message="check your key")
    with caplog.at_level(logging.WARNING, logger="routellm_lc"):
        reply = make_chat().invoke("a hard question")
    assert reply.response_metadata["routing"]["fallback_from"] == STRONG
    assert reply.content.startswith("[weak]")
    (record,) = [r for r in caplog.records if r.name.startswith("routellm_lc")]
    assert record.levelno == logging.WARNING
    assert STRONG in record.getMessage() and "check your key" in record.getMessage()


@pytest.mark.parametrize("fault", ["429", "503", "timeout", "malformed"])
def test_provider_failures_fall_back(make_chat, fresh_backend, fault):
    if fault == "timeout":
        fresh_backend.fail(kind="timeout", sleep_s=3, model="strong", times=None)
    elif fault == "malformed":
        fresh_backend.fail(kind="malformed", model="strong", times=None)
    else:
        fresh_backend.fail(status=int(fault), model="strong", times=None)
    chat = make_chat(strong=_chat_openai(fresh_backend, "strong", timeout=1))
    reply = chat.invoke("a hard question")
    assert reply.content == "[weak] echo: a hard question"
    assert reply.response_metadata["routing"]["fallback_from"] == "strong"


@pytest.mark.parametrize("fault", ["error_body", "null_choices"])
@pytest.mark.parametrize("side", ["chat_openai", "litellm"])
def test_a_200_that_holds_no_answer_falls_back(make_chat, fresh_backend, fault, side):
    """A 200 carrying `{"error": ...}` (OpenRouter, LiteLLM's proxy) or `"choices": null`
    (vLLM): ChatOpenAI raises ValueError / TypeError while reading it, which was taken for a
    bad request (raised, the weak model never tried); LiteLLM strings fell back."""
    fresh_backend.fail(kind=fault, model="strong", times=None, message="upstream overloaded")
    chat = (
        make_chat(strong=_chat_openai(fresh_backend, "strong"))
        if side == "chat_openai"
        else make_chat()
    )
    reply = chat.invoke("a hard question")
    assert reply.content == "[weak] echo: a hard question"
    assert reply.response_metadata["routing"]["fallback_from"] in ("strong", STRONG)
    assert _answered(fresh_backend)[-2:] == ["strong", "weak"]
    if side == "chat_openai" and fault == "error_body":  # a null-choices chunk is no error
        chunks = list(chat.stream("a hard question"))
        assert "".join(c.content for c in chunks) == "[weak] echo: a hard question"


def test_an_unreachable_model_falls_back(make_chat, fresh_backend):
    from routellm_lc.testing import LocalBackend

    down = _chat_openai(fresh_backend, "strong", base_url=LocalBackend.refused_url())
    reply = make_chat(strong=down).invoke("a hard question")
    assert reply.content == "[weak] echo: a hard question"


def test_a_programming_error_is_not_retried_on_the_other_model(make_chat, fresh_backend):
    chat = make_chat(**_children("chat_openai", fresh_backend))
    with collect_runs() as runs, pytest.raises(TypeError, match="no_such_parameter"):
        chat.invoke("a hard question", no_such_parameter=1)
    (router_run,) = runs.traced_runs
    assert [child.name for child in router_run.child_runs] == ["strong"]


def test_when_both_models_fail_the_first_models_error_is_raised(make_chat, fresh_backend):
    fresh_backend.fail(status=500, model="strong", times=None, message="strong is down")
    fresh_backend.fail(status=429, model="weak", times=None, message="weak is busy")
    with pytest.raises(Exception, match="strong is down") as info:
        make_chat().invoke("a hard question")
    assert info.value.status_code == 500
    assert "weak is busy" in str(info.value.__context__)
    assert any(WEAK in note for note in getattr(info.value, "__notes__", []))
    assert _answered(fresh_backend) == ["strong", "weak"]
    with pytest.raises(Exception, match="strong is down"):
        list(make_chat().stream("a hard question"))


async def test_when_both_models_fail_the_first_models_error_is_raised_async(
    make_chat, fresh_backend
):
    fresh_backend.fail(status=503, model="weak", times=None, message="weak is down")
    fresh_backend.fail(status=500, model="strong", times=None, message="strong is down")
    with pytest.raises(Exception, match="weak is down") as info:
        await make_chat().ainvoke("an easy one")
    assert "strong is down" in str(info.value.__context__)
    with pytest.raises(Exception, match="weak is down"):
        [c async for c in make_chat().astream("an easy one")]


def _routing_tags(run) -> list[str]:
    return [t for t in run.tags if t.startswith("routellm:")]


def test_after_a_fallback_each_child_run_is_tagged_with_the_model_that_ran(
    make_chat, fresh_backend
):
    fresh_backend.fail(status=500, model="strong", times=1)
    with collect_runs() as runs:
        make_chat().invoke("a hard question", {"tags": ["mine"]})
    (router_run,) = runs.traced_runs
    failed, answered = sorted(router_run.child_runs, key=lambda r: r.start_time)
    assert failed.error and answered.error is None
    assert sorted(_routing_tags(failed)) == ["routellm:model=openai/strong", "routellm:strong"]
    assert sorted(_routing_tags(answered)) == [
        "routellm:fallback",
        "routellm:model=openai/weak",
        "routellm:weak",
    ]
    assert answered.extra["metadata"]["routing"]["model"] == WEAK
    assert answered.tags.count("mine") == 1  # the caller's own tags still reach it
    # the router run records the decision it made before the call
    assert sorted(_routing_tags(router_run)) == ["routellm:model=openai/strong", "routellm:strong"]


# -- what is routed on -------------------------------------------------------------------------
CONVERSATION = [
    HumanMessage("a hard proof about primes"),
    AIMessage("Here it is."),
    HumanMessage("and again?"),
]


def test_last_user_message_is_routed_by_default(make_chat, router):
    reply = make_chat().invoke(CONVERSATION)
    assert router.calls == [["and again?"]]
    assert reply.response_metadata["routing"]["route"] == "weak"


def test_route_on_conversation_sees_earlier_turns(make_chat, router):
    reply = make_chat(route_on="conversation").invoke(CONVERSATION)
    (text,) = router.calls[0]
    assert "hard proof" in text and text.startswith("user: and again?")  # newest first
    assert reply.response_metadata["routing"]["route"] == "strong"


# -- construction and bad input ----------------------------------------------------------------
def test_defaults_construct(monkeypatch):
    monkeypatch.delenv("ROUTELLM_LC_STRONG_MODEL", raising=False)
    monkeypatch.delenv("ROUTELLM_LC_WEAK_MODEL", raising=False)
    llm = RouteLLMChat(router="mf", threshold=0.11)
    assert (llm.router_name, llm.threshold) == ("mf", 0.11)
    assert (llm.strong_name, llm.weak_name) == ("openai/gpt-4o", "openai/gpt-4o-mini")
    assert llm.model_name == "router-mf-0.11"


def test_default_models_from_environment(monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_STRONG_MODEL", "anthropic/claude-x")
    monkeypatch.setenv("ROUTELLM_LC_WEAK_MODEL", "ollama/llama3")
    llm = RouteLLMChat(router="random")
    assert (llm.strong_name, llm.weak_name) == ("anthropic/claude-x", "ollama/llama3")


@pytest.mark.parametrize("threshold", [1.5, -0.1, "abc", None, float("nan")])
def test_bad_threshold_is_named(threshold):
    with pytest.raises(ValueError, match="threshold"):
        RouteLLMChat(router="random", threshold=threshold)


def test_unknown_router_lists_available_ones():
    with pytest.raises(ValueError, match="Unknown router 'nope'") as info:
        RouteLLMChat(router="nope")
    assert "mf" in str(info.value) and "random" in str(info.value)


def test_empty_message_list_is_named(make_chat):
    with pytest.raises(EmptyPromptError, match="empty"):
        make_chat().invoke([])


def test_missing_checkpoint_folder_is_named(tmp_path):
    folder = tmp_path / "no_such_checkpoint"
    llm = RouteLLMChat(router="mf", router_checkpoint=str(folder))
    with pytest.raises(CheckpointError, match="no_such_checkpoint"):
        llm.invoke("hello")


def test_malformed_checkpoint_folder_names_missing_file(tmp_path):
    folder = tmp_path / "half_written"
    folder.mkdir()
    (folder / "config.json").write_text('{"dim": 2}')
    llm = RouteLLMChat(router="mf", router_checkpoint=str(folder))
    with pytest.raises(CheckpointError) as info:
        llm.get_router()
    assert str(folder) in str(info.value)
    assert "model.safetensors" in str(info.value)


# -- LangChain chat models as strong / weak --------------------------------------------------
def test_langchain_chat_models_as_strong_and_weak(fresh_backend, router):
    from langchain_openai import ChatOpenAI

    def chat_openai(name: str) -> ChatOpenAI:
        return ChatOpenAI(
            model=name, base_url=fresh_backend.base_url, api_key="k", max_retries=0, timeout=10
        )

    llm = RouteLLMChat(strong=chat_openai("big"), weak=chat_openai("small"), router=router)
    assert (llm.strong_name, llm.weak_name) == ("big", "small")
    reply = llm.invoke("a hard question")
    assert reply.content == "[big] echo: a hard question"
    assert reply.response_metadata["routing"]["model"] == "big"
    assert reply.usage_metadata["total_tokens"] > 0
    called = llm.bind_tools([add]).invoke("easy: add 1 and 2")
    assert called.tool_calls[0]["name"] == "add"
    assert fresh_backend.requests_for("small")[-1].body["tools"][0]["function"]["name"] == "add"


# -- scoring off the event loop ----------------------------------------------------------------
class SlowRouter(Router):
    """Takes `seconds` per router call (a torch forward pass releases the GIL like this)."""

    name = "slow"

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds
        self.calls: list[list[str]] = []

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(prompts))
        time.sleep(self.seconds)
        return np.array([0.9 if "hard" in p else 0.1 for p in prompts])


async def _max_loop_stall(work) -> tuple[object, float]:
    """Run `work` while a heartbeat measures how long the event loop went unanswered."""
    stalls = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - start - 0.01)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    try:
        result = await work
    finally:
        done.set()
        await beat
    return result, max(stalls)


async def test_concurrent_async_calls_score_in_parallel_off_the_event_loop(make_chat):
    router = SlowRouter(0.3)
    chat = make_chat(router=router)
    await chat.ainvoke("warm up")  # LiteLLM is imported on the first call (seconds)
    router.calls.clear()
    prompts = ["hard a", "easy b", "hard c", "easy d"]

    async def calls():
        invoked = [chat.ainvoke(p) for p in prompts[:2]]
        streamed = [_collect(chat.astream(p)) for p in prompts[2:]]
        return await asyncio.gather(*invoked, *streamed)

    start = time.perf_counter()
    replies, stall = await _max_loop_stall(calls())
    elapsed = time.perf_counter() - start
    assert stall < 0.2  # scoring on the loop would stall it 0.3 s per prompt
    assert elapsed < 1.0  # 4 x 0.3 s one after another would take 1.2 s
    assert len(router.calls) == 4
    routes = [r.response_metadata["routing"]["route"] for r in replies]
    assert routes == ["strong", "weak", "strong", "weak"]
    assert [r.response_metadata["routing"]["score"] for r in replies] == [0.9, 0.1, 0.9, 0.1]


async def _collect(stream) -> AIMessage:
    merged = None
    async for chunk in stream:
        merged = chunk if merged is None else merged + chunk
    return merged


async def test_abatch_scores_once_off_the_event_loop(make_chat):
    router = SlowRouter(0.3)
    chat = make_chat(router=router)
    await chat.ainvoke("warm up")  # LiteLLM is imported on the first call (seconds)
    router.calls.clear()
    replies, stall = await _max_loop_stall(chat.abatch(PROMPTS))
    assert stall < 0.2
    assert router.calls == [PROMPTS]  # still one router pass for the whole batch
    assert [r.response_metadata["routing"]["batch_size"] for r in replies] == [3, 3, 3]


async def test_adecide_scores_like_decide(make_chat, router):
    chat = make_chat()
    scored, awaited = chat.decide(["hard", "easy"]), await chat.adecide(["hard", "easy"])
    assert [(d.score, d.route, d.model) for d in awaited] == [
        (d.score, d.route, d.model) for d in scored
    ]
    assert router.calls == [["hard", "easy"], ["hard", "easy"]]


@pytest.mark.parametrize(
    "single", ["hello", "two words", HumanMessage("hi"), {"role": "user", "content": "hi"}]
)
async def test_decide_refuses_a_single_input_instead_of_routing_its_characters(
    make_chat, router, single
):
    """`decide("hello")` used to route each character as a prompt (and, with a controller,
    move its threshold five times)."""
    chat = make_chat()
    with pytest.raises(TypeError, match=r"decide takes a list of inputs.*decide\(\[prompt\]\)"):
        chat.decide(single)
    with pytest.raises(TypeError, match="decide takes a list of inputs"):
        await chat.adecide(single)
    assert router.calls == []


# -- copies ------------------------------------------------------------------------------------
def test_model_copy_with_a_new_model_answers_with_it(make_chat, fresh_backend):
    chat = make_chat()
    copy = chat.model_copy(update={"weak": "openai/other"})
    reply = copy.invoke("an easy one")
    assert reply.content == "[other] echo: an easy one"
    assert reply.response_metadata["routing"]["model"] == "openai/other"
    assert chat.invoke("an easy one").content == "[weak] echo: an easy one"  # untouched
    big = chat.model_copy(update={"strong": _chat_openai(fresh_backend, "big")})
    assert big.invoke("a hard one").content == "[big] echo: a hard one"


def test_deep_copies_after_a_call_rebuild_their_router_and_models(make_chat):
    import copy

    chat = make_chat(router="mf", threshold=0.0)  # a named router: loaded on the first call
    assert chat.invoke("hello").content == "[strong] echo: hello"
    for twin in (copy.deepcopy(chat), chat.model_copy(deep=True)):
        assert twin.invoke("hello again").content == "[strong] echo: hello again"
        assert twin.get_router() is chat.get_router()  # named routers are shared, not copied


def test_model_copy_with_new_client_options_uses_them(make_chat):
    from routellm_lc.testing import LocalBackend

    chat = make_chat(fallback=False)
    moved = chat.model_copy(update={"api_base": LocalBackend.refused_url()})
    with pytest.raises(Exception, match="(?i)connect"):
        moved.invoke("an easy one")
    assert chat.invoke("an easy one").content == "[weak] echo: an easy one"


def test_model_copy_with_a_new_router_scores_with_it(make_chat, router):
    other = KeywordRouter()
    copy = make_chat().model_copy(update={"router": other})
    copy.invoke("a hard one")
    assert other.calls == [["a hard one"]] and router.calls == []


class TableRouter(Router):
    """Scores from a table: a deterministic router for comparing routes call by call."""

    name = "table"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.array([self.scores[p] for p in prompts])


@pytest.mark.parametrize("how", ["batch", "abatch", "decide"])
def test_a_controller_routes_a_long_batch_as_its_calls_one_by_one(how):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from routellm_lc.budget import StrongShareController

    # 300 easy prompts, then 300 hard ones: a batch three times the controller's window;
    # some prompts come again later, when the controller has moved
    rng = np.random.default_rng(0)
    easy = {f"easy {i}": float(s) for i, s in enumerate(rng.uniform(0.0, 0.5, 300))}
    hard = {f"hard {i}": float(s) for i, s in enumerate(rng.uniform(0.5, 1.0, 300))}
    prompts = [*easy, *hard]
    for position, again in ((150, "hard 7"), (320, "easy 3"), (450, "easy 3"), (599, "hard 7")):
        prompts.insert(position, again)
    router = TableRouter({**easy, **hard})

    def chat() -> RouteLLMChat:
        return RouteLLMChat(
            router=router,
            controller=StrongShareController(0.3, window=100, warmup=20),
            strong=FakeListChatModel(responses=["S"]),
            weak=FakeListChatModel(responses=["W"]),
        )

    one_by_one = chat()
    expected = [one_by_one.invoke(p).response_metadata["routing"] for p in prompts]
    batched = chat()
    if how == "batch":
        got = [m.response_metadata["routing"] for m in batched.batch(prompts)]
    elif how == "abatch":
        got = [m.response_metadata["routing"] for m in asyncio.run(batched.abatch(prompts))]
    else:
        got = [d.to_dict() for d in batched.decide(prompts)]
    assert [r["threshold"] for r in got] == [r["threshold"] for r in expected]
    assert [r["route"] for r in got] == [r["route"] for r in expected]
    assert [r["score"] for r in got] == [router.scores[p] for p in prompts]
    easy_share = np.mean([r["route"] == "strong" for r in got[:300]])
    assert 0.2 < easy_share < 0.35  # not 0: the easy half is not judged by the hard half
    assert batched.controller.state().observed == len(prompts)


def test_an_input_langchain_cannot_convert_fails_only_its_batch_item(make_chat):
    replies = make_chat().batch(["hard one", [("user",)], "easy two"], return_exceptions=True)
    assert replies[0].content == "[strong] echo: hard one"
    assert isinstance(replies[1], NotImplementedError)
    assert replies[2].content == "[weak] echo: easy two"


def test_a_misspelt_field_is_refused_with_a_hint():
    """Pydantic's default for LangChain models drops unknown keywords: a `treshold=0.99` would
    route at the default threshold without a word."""
    with pytest.raises(ValueError, match=r"'treshold' \(did you mean 'threshold'\?\)"):
        RouteLLMChat(strong="openai/s", weak="openai/w", router="random", treshold=0.99)


def test_checkpoint_is_taken_for_router_checkpoint(tmp_path):
    """`load_router` and the CLI call it `checkpoint`; the chat model takes that name too
    (it used to ignore it and route with the bundled checkpoint)."""
    chat = RouteLLMChat(strong="openai/s", weak="openai/w", checkpoint=str(tmp_path / "ck"))
    assert chat.router_checkpoint == str(tmp_path / "ck")
    with pytest.raises(CheckpointError):
        chat.get_router()  # the given (missing) folder is what loads, not the bundled default
    with pytest.raises(ValueError, match="not both"):
        RouteLLMChat(checkpoint="a", router_checkpoint="b")


def test_a_checkpoint_with_a_router_instance_is_refused(router):
    with pytest.raises(ValueError, match="Router instance"):
        RouteLLMChat(strong="openai/s", weak="openai/w", router=router, router_checkpoint="x")


def test_streaming_true_answers_invoke_through_the_stream(make_chat, fresh_backend):
    """`streaming=True`, as LangChain chat models take it: `invoke` streams from the model."""
    message = make_chat(streaming=True).invoke("hard one")
    assert message.content.startswith("[strong]")
    assert fresh_backend.requests_for("strong")[-1].body["stream"] is True
    make_chat().invoke("hard one")
    assert not fresh_backend.requests_for("strong")[-1].body.get("stream")


@pytest.mark.parametrize("key", ["model", "stop", "tools"])
def test_model_kwargs_may_not_set_what_the_router_decides(key):
    """A `model` there answered with another model than the decision named; a `stop` there
    made every call fail with a duplicate keyword."""
    with pytest.raises(ValueError, match=f"may not set '{key}'"):
        RouteLLMChat(strong="openai/s", weak="openai/w", model_kwargs={key: "x"})


def test_stop_set_on_the_router_is_part_of_its_cache_key(make_chat):
    """Two routers that differ only in `stop` never share a cached answer."""
    assert make_chat(stop=["\n"])._get_llm_string() != make_chat()._get_llm_string()


def test_traces_name_the_threshold_used_and_the_answering_model_as_langchain_does(make_chat):
    """LangSmith reads `ls_model_name`: the router run named the model's own threshold when a
    call (or a graph node) used another, and a LiteLLM-string model named itself with its
    provider prefix (`openai/strong`), which ChatOpenAI does not, so LangSmith's price table
    (matched on the bare name, `gpt-4o`) could not price it."""
    chat = make_chat()
    with collect_runs() as runs:
        chat.invoke("a hard question")
        chat.invoke("a hard question", config={"configurable": {"routellm_threshold": 0.95}})
    routers = [r for r in runs.traced_runs if r.name == "RouteLLMChat"]
    names = [r.extra["metadata"]["ls_model_name"] for r in routers]
    assert names == ["router-keyword-0.5", "router-keyword-0.95"]
    children = [c for r in routers for c in r.child_runs]
    assert [(c.extra["metadata"]["ls_provider"], c.extra["metadata"]["ls_model_name"])
            for c in children] == [("openai", "strong"), ("openai", "weak")]  # fmt: skip
