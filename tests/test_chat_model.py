"""RouteLLMChat against the local OpenAI-compatible backend: which model answers, the routing
decision on every response, batching, tools, structured output, fallback and bad input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import UsageMetadataCallbackHandler, get_usage_metadata_callback
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.messages import AIMessage, HumanMessage, trim_messages
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from pydantic import BaseModel

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


def test_batch_returns_an_unroutable_inputs_error_in_its_place(make_chat, router):
    chat = make_chat()
    replies = chat.batch(["hard one", "", "easy two"], return_exceptions=True)
    assert router.calls == [["hard one", "easy two"]]  # the others still scored in one pass
    assert replies[0].content == "[strong] echo: hard one"
    assert isinstance(replies[1], EmptyPromptError)
    assert replies[2].response_metadata["routing"]["batch_size"] == 2
    with pytest.raises(EmptyPromptError):
        chat.batch(["hard one", ""])


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
    assert count > chat._weak_model.get_num_tokens_from_messages(question)
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
    assert "hard proof" in text and text.endswith("and again?")
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
