"""Plain OpenAI clients (the official SDK, LangChain's ChatOpenAI) against the server."""

from __future__ import annotations

import json

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from routellm_lc.server.runner import ServerThread

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a place.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "country": {"type": "string", "enum": ["FR", "DE", "UK"]},
                        "coordinates": {
                            "type": "array",
                            "items": {"type": "number"},
                            "minItems": 2,
                        },
                    },
                    "required": ["city", "country"],
                },
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "units"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_hard_prompt_answered_by_strong_model_with_decision_headers(server, fresh_backend):
    raw = client(server).chat.completions.with_raw_response.create(
        model="router-test_keyword-0.5",
        messages=[{"role": "user", "content": "a hard question about primes"}],
        temperature=0.3,
        max_tokens=20,
    )
    completion = raw.parse()
    assert completion.model == "strong-model"
    assert completion.choices[0].message.content.startswith("[strong-model] echo: a hard")
    assert raw.headers["x-routellm-router"] == "test_keyword"
    assert float(raw.headers["x-routellm-score"]) == pytest.approx(0.9)
    assert raw.headers["x-routellm-threshold"] == "0.5"
    assert raw.headers["x-routellm-route"] == "strong"
    assert raw.headers["x-routellm-model"] == "openai/strong-model"
    assert "x-routellm-fallback-from" not in raw.headers
    sent = fresh_backend.requests_for("strong-model")[-1]
    assert sent.body["temperature"] == 0.3 and sent.body["max_tokens"] == 20
    assert sent.headers["authorization"] == "Bearer backend-key"


def test_easy_prompt_answered_by_weak_model(server, fresh_backend):
    completion = client(server).chat.completions.create(
        model="router-test_keyword-0.5", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.model == "weak-model"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert fresh_backend.requests_for("strong-model") == []


def test_threshold_in_model_name_moves_the_decision(server):
    # score 0.1 ≥ threshold 0.05 → strong
    completion = client(server).chat.completions.create(
        model="router-test_keyword-0.05", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.model == "strong-model"


async def test_async_client(server):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as aclient:
        completion = await aclient.chat.completions.create(
            model="router-test_keyword-0.5",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hard: explain monads"},
            ],
        )
    assert completion.model == "strong-model"


def test_streaming_with_usage(server):
    stream = client(server).chat.completions.create(
        model="router-test_keyword-0.5",
        messages=[{"role": "user", "content": "hard stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[strong-model] echo: hard stream please"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert {c.model for c in chunks} == {"strong-model"}


async def test_async_streaming_without_usage(server):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as aclient:
        stream = await aclient.chat.completions.create(
            model="router-test_keyword-0.5",
            messages=[{"role": "user", "content": "tell me a joke"}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("[weak-model]")


def test_tools_with_nested_schema_pass_through_untouched(server, fresh_backend):
    completion = client(server).chat.completions.create(
        model="router-test_keyword-0.5",
        messages=[{"role": "user", "content": "hard: weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert arguments["location"]["country"] == "FR" and arguments["units"] == "celsius"
    sent = fresh_backend.requests_for("strong-model")[-1].body
    assert sent["tools"] == [WEATHER_TOOL]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


def test_streamed_tool_call(server):
    stream = client(server).chat.completions.create(
        model="router-test_keyword-0.5",
        messages=[{"role": "user", "content": "weather in Berlin?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stream=True,
    )
    pieces = [c.choices[0].delta.tool_calls for c in stream if c.choices]
    arguments = "".join(p[0].function.arguments or "" for p in pieces if p)
    assert json.loads(arguments)["units"] == "celsius"


def test_models_endpoint_lists_served_routers(server):
    ids = [m.id for m in client(server).models.list()]
    assert ids == ["router-test_keyword-0.5", "router-random-0.5"]
    assert client(server).models.retrieve("router-random-0.2").id == "router-random-0.2"
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client(server).models.retrieve("router-bert-0.5")
    with pytest.raises(openai.NotFoundError, match="Bad threshold"):
        client(server).models.retrieve("router-random-2")


def test_listed_ids_carry_the_exact_default_threshold(start_server, fresh_backend):
    """A calibrated threshold such as 0.1234567 must not be listed rounded: the listed id is
    what clients send back."""
    server = start_server(threshold=0.1234567)
    (listed, _) = [m.id for m in client(server).models.list()]
    assert listed == "router-test_keyword-0.1234567"
    completion = client(server).chat.completions.with_raw_response.create(
        model=listed, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.headers["x-routellm-threshold"] == "0.1234567"


def test_custom_tools_and_their_calls_pass_through(server, fresh_backend):
    """OpenAI's custom tools (`type: "custom"`, free-text input) and their calls in the
    history are valid requests: forwarded untouched, not rejected by the schema."""
    tool = {"type": "custom", "custom": {"name": "code_exec", "description": "Run Python."}}
    history = [
        {"role": "user", "content": "hard: run print(1)"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "custom", "custom": {"name": "code_exec", "input": "print(1)"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "user", "content": "hard: and now 2?"},
    ]  # fmt: skip
    completion = client(server).chat.completions.create(
        model="router-test_keyword-0.5", messages=history, tools=[tool]
    )
    assert completion.choices[0].finish_reason  # answered (the local backend answers any tool)
    sent = fresh_backend.requests_for("strong-model")[-1].body
    assert sent["tools"] == [tool] and sent["messages"][1]["tool_calls"][0]["type"] == "custom"


def test_langchain_chat_openai_invoke_stream_and_tools(server):
    llm = ChatOpenAI(
        model="router-test_keyword-0.5", base_url=server.base_url, api_key="x", max_retries=0
    )
    message = llm.invoke("a hard proof")
    assert message.response_metadata["model_name"] == "strong-model"
    assert message.content.startswith("[strong-model]")

    chunks = list(llm.stream("say hello"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk)
    assert merged.content.startswith("[weak-model] echo: say hello")

    with_tools = llm.bind_tools([WEATHER_TOOL], tool_choice="get_weather")
    reply = with_tools.invoke("hard: the weather in London")
    assert reply.tool_calls[0]["name"] == "get_weather"
    assert reply.tool_calls[0]["args"]["location"]["city"]
