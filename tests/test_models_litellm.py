"""LiteLLMChatModel against the local OpenAI-compatible backend over real HTTP: retries, strict
tools, the `stream_usage` flag, usage details and streamed metadata, with `ChatOpenAI` as the
reference for what reaches the provider and what comes back."""

from __future__ import annotations

import operator
import os
import sys
import time
from functools import reduce
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from routellm_lc.models import LiteLLMChatModel
from routellm_lc.testing import LocalBackend

MODES = ["invoke", "ainvoke", "stream", "astream"]
STREAM_MODES = ["stream", "astream"]


def _model(backend: LocalBackend, **overrides: Any) -> LiteLLMChatModel:
    params = {
        "model": "openai/weak",
        "api_base": backend.base_url,
        "api_key": "test-key",
        "timeout": 10,
        "max_retries": 0,
    }
    return LiteLLMChatModel(**{**params, **overrides})


async def _reply(
    model: Any, mode: str, prompt: str = "hello there", **kwargs: Any
) -> tuple[AIMessage | AIMessageChunk, list[AIMessageChunk]]:
    """The answer through one of the four call styles, and the chunks when streamed."""
    if mode == "invoke":
        return model.invoke(prompt, **kwargs), []
    if mode == "ainvoke":
        return await model.ainvoke(prompt, **kwargs), []
    if mode == "stream":
        chunks = list(model.stream(prompt, **kwargs))
    else:
        chunks = [chunk async for chunk in model.astream(prompt, **kwargs)]
    return reduce(operator.add, chunks), chunks


@tool
def magic_function(input: int) -> int:
    """Applies a magic function to an input."""
    return input + 2


@tool
def other_function(text: str) -> str:
    """Echoes the text."""
    return text


# -- retries -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
async def test_max_retries_retries_transient_errors(fresh_backend, mode):
    fresh_backend.fail(status=503, times=2, model="weak")
    reply, _ = await _reply(_model(fresh_backend, max_retries=2), mode)
    assert reply.content == "[weak] echo: hello there"
    assert [r.status for r in fresh_backend.requests_for("weak")] == [503, 503, 200]


def test_rate_limited_request_is_retried(fresh_backend):
    fresh_backend.fail(status=429, times=1, model="weak")
    reply = _model(fresh_backend, max_retries=1).invoke("hello there")
    assert reply.content == "[weak] echo: hello there"
    assert [r.status for r in fresh_backend.requests_for("weak")] == [429, 200]


@pytest.mark.parametrize("mode", ["invoke", "astream"])
async def test_max_retries_is_the_number_of_retries_not_more(fresh_backend, mode):
    fresh_backend.fail(status=500, times=None, model="weak")
    with pytest.raises(Exception, match="injected fault"):
        await _reply(_model(fresh_backend, max_retries=1), mode)
    assert len(fresh_backend.requests_for("weak")) == 2


# -- tools -------------------------------------------------------------------------------------
@pytest.mark.parametrize("strict", [True, False])
def test_bind_tools_strict_goes_in_each_function_definition(fresh_backend, strict):
    fresh_backend.configure("weak", tool_arguments={"magic_function": {"input": 3}})
    bound = _model(fresh_backend).bind_tools(
        [magic_function, other_function], tool_choice="magic_function", strict=strict
    )
    reply = bound.invoke("what is magic_function(3)?")

    assert reply.tool_calls[0]["name"] == "magic_function"
    assert reply.tool_calls[0]["args"] == {"input": 3}
    body = fresh_backend.requests_for("weak")[-1].body
    assert "strict" not in body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "magic_function"}}
    # The same tool definitions ChatOpenAI sends (strict schemas close their objects).
    reference = ChatOpenAI(
        model="weak",
        base_url=fresh_backend.base_url,
        api_key="test-key",
        http_async_client=openai.DefaultAsyncHttpxClient(),  # see test_usage_details_...
    )
    reference.bind_tools(
        [magic_function, other_function], tool_choice="magic_function", strict=strict
    ).invoke("what is magic_function(3)?")
    expected = fresh_backend.requests_for("weak")[-1].body["tools"]
    assert body["tools"] == expected
    assert [t["function"]["strict"] for t in body["tools"]] == [strict, strict]
    if strict:
        assert body["tools"][0]["function"]["parameters"]["additionalProperties"] is False


@pytest.mark.parametrize("tool_choice", [False, True, "any", "auto", "none", "other_function"])
def test_tool_choice_is_sent_as_chatopenai_sends_it(fresh_backend, tool_choice):
    """Every spelling reaches the wire as ChatOpenAI's; `False` sends no `tool_choice`."""
    bodies = []
    for model in (
        _model(fresh_backend),
        ChatOpenAI(
            model="weak",
            base_url=fresh_backend.base_url,
            api_key="test-key",
            http_async_client=openai.DefaultAsyncHttpxClient(),
        ),
    ):
        model.bind_tools([magic_function, other_function], tool_choice=tool_choice).invoke("hi")
        bodies.append(fresh_backend.requests_for("weak")[-1].body)
    assert bodies[0].get("tool_choice") == bodies[1].get("tool_choice")
    assert ("tool_choice" in bodies[0]) is (tool_choice is not False)


def test_llm_output_and_metadata_carry_token_usage_as_chatopenai(fresh_backend):
    model = _model(fresh_backend)
    result = model.generate([[HumanMessage("one two")], [HumanMessage("three four five")]])
    replies = [g[0].message for g in result.generations]
    usage = [r.response_metadata["token_usage"] for r in replies]
    assert [u["total_tokens"] for u in usage] == [r.usage_metadata["total_tokens"] for r in replies]
    assert result.llm_output["token_usage"]["total_tokens"] == sum(u["total_tokens"] for u in usage)
    assert result.llm_output["model_name"] == replies[0].response_metadata["model_name"]
    # as ChatOpenAI: the completion's id in the metadata, LangChain's run id on the message
    assert replies[0].response_metadata["id"].startswith("chatcmpl-")
    assert replies[0].id.startswith("lc_run-") and replies[0].id != replies[1].id


def _open_responses() -> int:
    import gc

    import httpx

    return sum(isinstance(o, httpx.Response) and not o.is_closed for o in gc.get_objects())


def test_a_stream_left_after_its_first_chunk_closes_its_response_at_once(fresh_backend):
    """LiteLLM's stream wrapper sits in a reference cycle: left to the garbage collector, its
    response was closed whenever the collector ran, and inside another request on the same
    thread that waits for the HTTP pool lock the request holds (a hang, seen in CI)."""
    import gc

    model = _model(fresh_backend)
    model.invoke("warm up")
    gc.collect()
    gc.disable()
    try:
        before = _open_responses()
        first = next(iter(model.stream("hello there")))
        assert first.content or first.response_metadata
        # closed by a helper thread (never inside a finaliser that may hold the pool's lock)
        for _ in range(500):
            if _open_responses() == before:
                break
            time.sleep(0.01)
        assert _open_responses() == before
    finally:
        gc.enable()


# -- stream_usage ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_stream_usage_false_does_not_ask_for_usage(fresh_backend, mode):
    reply, _ = await _reply(_model(fresh_backend), mode, stream_usage=False)
    body = fresh_backend.requests_for("weak")[-1].body
    assert "stream_usage" not in body
    assert not (body.get("stream_options") or {}).get("include_usage")
    assert reply.usage_metadata is None


@pytest.mark.parametrize("mode", MODES)
async def test_stream_usage_is_a_flag_not_a_request_field(fresh_backend, mode):
    reply, _ = await _reply(_model(fresh_backend), mode, stream_usage=True)
    body = fresh_backend.requests_for("weak")[-1].body
    assert "stream_usage" not in body
    if mode in STREAM_MODES:
        assert body["stream_options"] == {"include_usage": True}
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0


async def test_stream_usage_field_sets_the_default(fresh_backend):
    quiet = _model(fresh_backend, stream_usage=False)
    reply, _ = await _reply(quiet, "stream")
    assert "stream_options" not in fresh_backend.requests_for("weak")[-1].body
    assert reply.usage_metadata is None

    reply, _ = await _reply(quiet, "astream", stream_usage=True)
    assert fresh_backend.requests_for("weak")[-1].body["stream_options"] == {"include_usage": True}
    assert reply.usage_metadata is not None

    reply, _ = await _reply(_model(fresh_backend), "stream")  # the default asks for usage
    assert fresh_backend.requests_for("weak")[-1].body["stream_options"] == {"include_usage": True}
    assert reply.usage_metadata is not None


# -- usage details -----------------------------------------------------------------------------
USAGE_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}


@pytest.fixture
def details_backend(fresh_backend: LocalBackend) -> LocalBackend:
    """The local backend reporting cached prompt tokens and reasoning tokens in its usage
    (as OpenAI does for prompt caching and reasoning models)."""
    fresh_backend.configure(usage_details=USAGE_DETAILS)
    return fresh_backend


@pytest.mark.parametrize("mode", MODES)
async def test_usage_details_reach_usage_metadata(details_backend, mode):
    reply, _ = await _reply(_model(details_backend), mode)
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["input_token_details"] == {"audio": 0, "cache_read": 3}
    assert usage["output_token_details"] == {"audio": 0, "reasoning": 2}
    # What ChatOpenAI reports for the same response.
    # Its own async client: ChatOpenAI otherwise shares one per base URL across instances, and
    # a connection pooled on an earlier test's (closed) event loop fails this one.
    reference = ChatOpenAI(
        model="weak",
        base_url=details_backend.base_url,
        api_key="test-key",
        stream_usage=True,
        http_async_client=openai.DefaultAsyncHttpxClient(),
    )
    expected, _ = await _reply(reference, mode)
    assert usage == expected.usage_metadata


# -- streamed metadata -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_streamed_chunks_carry_model_provider(fresh_backend, mode):
    model = _model(fresh_backend)
    reply, chunks = await _reply(model, mode)
    # LangChain closes every stream with an empty chunk of its own (chunk_position="last").
    ours = [c for c in chunks if c.chunk_position != "last"]
    assert ours
    assert all(c.response_metadata.get("model_provider") == "litellm" for c in ours)
    assert reply.response_metadata["model_provider"] == "litellm"
    assert reply.response_metadata["finish_reason"] == "stop"
    invoked = model.invoke("hello there")
    assert reply.response_metadata["model_provider"] == invoked.response_metadata["model_provider"]


@pytest.mark.parametrize("mode", STREAM_MODES)
async def test_a_stream_is_one_message_by_id(fresh_backend, mode):
    """Clients that group chunks by id (LangGraph's "messages" stream, UIs) see one message,
    closing chunk included, as with ChatOpenAI."""
    _, chunks = await _reply(_model(fresh_backend), mode)
    assert len(chunks) > 2 and chunks[-1].chunk_position == "last"
    assert len({c.id for c in chunks}) == 1


_IMPORT_PROBE = """
import asyncio, sys
from routellm_lc.models import LiteLLMChatModel

async def main():
    model = LiteLLMChatModel(
        model="openai/x", api_base="http://127.0.0.1:9/v1", api_key="k", timeout=1, max_retries=0
    )
    call = asyncio.create_task(model.ainvoke("hi"))
    seen_mid_import = False
    while not call.done():
        module = sys.modules.get("litellm")
        if module is not None and getattr(module, "acompletion", None) is None:
            seen_mid_import = True  # the loop ran while litellm was still importing
        await asyncio.sleep(0.001)
    assert "litellm" in sys.modules
    print("ran during import" if seen_mid_import else "blocked during import")

asyncio.run(main())
"""


def test_the_first_async_call_imports_litellm_off_the_event_loop():
    """LiteLLM's import takes seconds; on the event loop it would stall every coroutine."""
    import subprocess

    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert "ran during import" in done.stdout, done.stdout + done.stderr


def test_sampling_settings_are_part_of_the_cache_key():
    """Two instances that differ only in temperature, max_tokens or model_kwargs answer
    differently: LangChain's LLM cache must not hand one's answer to the other."""
    from routellm_lc.models import LiteLLMChatModel

    base = dict(model="openai/m", api_base="http://127.0.0.1:9/v1", api_key="secret-key")
    keys = {
        LiteLLMChatModel(**base)._get_llm_string(),
        LiteLLMChatModel(**base, temperature=0.9)._get_llm_string(),
        LiteLLMChatModel(**base, max_tokens=5)._get_llm_string(),
        LiteLLMChatModel(**base, model_kwargs={"seed": 1})._get_llm_string(),
    }
    assert len(keys) == 4
    assert not any("secret-key" in key for key in keys)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("openai:gpt-4o", "openai/gpt-4o"),
        ("google_genai:gemini-2.5-pro", "gemini/gemini-2.5-pro"),
        ("ollama:llama3:8b", "ollama/llama3:8b"),
        ("openai/gpt-4o", "openai/gpt-4o"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("gpt-4o", "gpt-4o"),
    ],
)
def test_langchain_provider_spelling_becomes_litellms(given, expected):
    from routellm_lc.models import litellm_model_string

    assert litellm_model_string(given) == expected


def test_a_router_over_langchain_spelled_models_calls_them(fresh_backend):
    from routellm_lc import RouteLLMChat

    chat = RouteLLMChat(
        strong="openai:strong",
        weak="openai:weak",
        router="random",
        threshold=0.0,
        api_base=fresh_backend.base_url,
        api_key="k",
        timeout=10,
        max_retries=0,
    )
    reply = chat.invoke("hi")
    assert reply.content == "[strong] echo: hi"
    assert reply.response_metadata["routing"]["model"] == "openai/strong"


def test_the_async_first_use_loads_litellm_and_its_tokenizer_off_the_event_loop():
    """The first `astream` loaded tiktoken's cl100k_base (0.1-0.3 s) on the event loop, where
    LiteLLM counts a stream's usage: every other coroutine waited. `_alitellm` now loads it
    with LiteLLM, in its worker thread."""
    import subprocess
    import sys

    script = (
        "import asyncio, threading\n"
        "import tiktoken.registry as registry\n"
        "seen = {}\n"
        "real = registry.get_encoding\n"
        "def spy(name):\n"
        "    seen[name] = threading.current_thread() is threading.main_thread()\n"
        "    return real(name)\n"
        "registry.get_encoding = spy\n"
        "import tiktoken; tiktoken.get_encoding = spy\n"
        "from routellm_lc.models import _alitellm\n"
        "asyncio.run(_alitellm())\n"
        "print(seen)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'cl100k_base': False}"  # loaded, and not on the loop's thread
