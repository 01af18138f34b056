"""The local OpenAI-compatible backend, exercised with the real ``openai`` SDK over HTTP."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from routellm_lc.testing import LocalBackend

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "number"}},
            "required": ["query", "limit"],
        },
    },
}


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client(fresh_backend: LocalBackend) -> openai.OpenAI:
    return openai.OpenAI(base_url=fresh_backend.base_url, api_key="k", max_retries=0, timeout=5)


@pytest.fixture
def aclient(fresh_backend: LocalBackend) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=fresh_backend.base_url, api_key="k", max_retries=0, timeout=5
    )


# ----------------------------------------------------------------------------- chat: JSON


def test_chat_reply_names_the_model_and_echoes_the_prompt(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="weak-model", messages=_user("What is the capital of France?")
    )
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.model == "weak-model"
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "[weak-model] echo: What is the capital of France?"
    usage = response.usage
    assert usage.prompt_tokens >= 6
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_request_log_records_bodies_and_params(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    client.chat.completions.create(model="strong-model", messages=_user("hi"), temperature=0.25)
    client.chat.completions.create(model="weak-model", messages=_user("yo"), max_tokens=7)
    assert [r.model for r in fresh_backend.requests] == ["strong-model", "weak-model"]
    strong = fresh_backend.requests_for("strong-model")[0]
    assert strong.body["temperature"] == 0.25
    assert strong.body["messages"] == _user("hi")
    assert strong.path == "/v1/chat/completions"
    assert strong.headers["authorization"] == "Bearer k"
    assert fresh_backend.last_request.body["max_tokens"] == 7
    fresh_backend.reset()
    assert fresh_backend.requests == []


def test_scripted_reply_per_model_and_max_tokens_truncates(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.configure("strong-model", reply="The answer is 42 because reasons")
    strong = client.chat.completions.create(model="strong-model", messages=_user("q"))
    weak = client.chat.completions.create(model="weak-model", messages=_user("q"))
    assert strong.choices[0].message.content == "The answer is 42 because reasons"
    assert weak.choices[0].message.content == "[weak-model] echo: q"
    short = client.chat.completions.create(model="strong-model", messages=_user("q"), max_tokens=2)
    assert short.choices[0].message.content == "The answer"
    assert short.choices[0].finish_reason == "length"


def test_unknown_setting_is_rejected(fresh_backend: LocalBackend) -> None:
    with pytest.raises(TypeError, match="latency"):
        fresh_backend.configure(latncy_ms=3)


# ----------------------------------------------------------------------------- streaming


def test_stream_joins_to_the_same_text_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="weak-model",
        messages=_user("stream me some words"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[weak-model] echo: stream me some words"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 6
    assert all(c.object == "chat.completion.chunk" and c.model == "weak-model" for c in chunks)


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=_user("a b"), stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_async_client_and_async_stream(aclient: openai.AsyncOpenAI) -> None:
    response = await aclient.chat.completions.create(model="strong-model", messages=_user("hi"))
    assert response.choices[0].message.content == "[strong-model] echo: hi"
    stream = await aclient.chat.completions.create(
        model="strong-model", messages=_user("hi there"), stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream]
    assert "".join(pieces) == "[strong-model] echo: hi there"


# ----------------------------------------------------------------------------- tools


def test_tool_call_fills_required_arguments_by_type(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="strong-model", messages=_user("weather in Paris?"), tools=[WEATHER_TOOL, SEARCH_TOOL]
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "days", "unit"}
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    assert arguments["unit"] == "celsius"


def test_tool_choice_forces_the_named_function_and_none_disables_tools(
    client: openai.OpenAI,
) -> None:
    forced = client.chat.completions.create(
        model="m",
        messages=_user("find it"),
        tools=[WEATHER_TOOL, SEARCH_TOOL],
        tool_choice={"type": "function", "function": {"name": "search"}},
    )
    call = forced.choices[0].message.tool_calls[0]
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": "example query", "limit": 1.5}
    plain = client.chat.completions.create(
        model="m", messages=_user("find it"), tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].message.content == "[m] echo: find it"


def test_scripted_tool_arguments_and_tool_result_round_trip(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.configure("m", tool_arguments={"get_weather": {"city": "Oslo", "days": 2}})
    first = client.chat.completions.create(
        model="m", messages=_user("weather"), tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Oslo", "days": 2}
    history = _user("weather") + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "rainy, 7C"},
    ]
    second = client.chat.completions.create(model="m", messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "[m] tool result: rainy, 7C"


def test_a_required_tool_is_called_after_tool_results_too(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    """With "auto" the reply to tool results is text (agent loops end); "required" or a named
    function forces a call whatever came last, as OpenAI does (structured output after an AI
    turn relies on it)."""
    history = _user("weather") + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "rainy"},
    ]  # fmt: skip
    auto = client.chat.completions.create(model="m", messages=history, tools=[WEATHER_TOOL])
    assert auto.choices[0].message.tool_calls is None
    for choice in ("required", {"type": "function", "function": {"name": "search"}}):
        forced = client.chat.completions.create(
            model="m", messages=history, tools=[WEATHER_TOOL, SEARCH_TOOL], tool_choice=choice
        )
        assert forced.choices[0].finish_reason == "tool_calls"
        assert forced.choices[0].message.tool_calls[0].function.name == (
            "search" if isinstance(choice, dict) else "get_weather"
        )


def test_streamed_tool_call_reassembles(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m", messages=_user("weather"), tools=[WEATHER_TOOL], stream=True
    )
    name, call_id, arguments, finish = None, None, "", None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0
            name = name or delta.function.name
            call_id = call_id or delta.id
            arguments += delta.function.arguments or ""
    assert name == "get_weather" and call_id.startswith("call_")
    assert set(json.loads(arguments)) == {"city", "days", "unit"}
    assert finish == "tool_calls"


def test_structured_output_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "confidence": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "source": {"anyOf": [{"$ref": "#/$defs/Source"}, {"type": "null"}]},
        },
        "required": ["answer", "confidence", "tags", "source"],
        "$defs": {
            "Source": {
                "type": "object",
                "properties": {"url": {"type": "string"}, "year": {"type": "integer"}},
                "required": ["url", "year"],
            }
        },
    }
    response = client.chat.completions.create(
        model="m",
        messages=_user("answer in JSON"),
        response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema}},
    )
    parsed = json.loads(response.choices[0].message.content)
    assert parsed == {
        "answer": "example answer",
        "confidence": 1.5,
        "tags": ["example tags"],
        "source": {"url": "example url", "year": 1},
    }


# ----------------------------------------------------------------------------- embeddings, models


def test_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model="emb", input=["alpha", "beta", "alpha"])  # base64
    floats = client.embeddings.create(model="emb", input="alpha", encoding_format="float")
    vectors = [d.embedding for d in first.data]
    assert [d.index for d in first.data] == [0, 1, 2]
    assert len(vectors[0]) == 64
    assert vectors[0] == pytest.approx(vectors[2])
    assert vectors[0] != pytest.approx(vectors[1])
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    sized = client.embeddings.create(model="emb", input="x", dimensions=8, encoding_format="float")
    assert len(sized.data[0].embedding) == 8


def test_models_endpoint_lists_configured_models(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.configure("my-model", latency_ms=0)
    ids = [m.id for m in client.models.list()]
    assert {"strong-model", "weak-model", "my-model"} <= set(ids)


# ----------------------------------------------------------------------------- failure modes


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
    ],
)
def test_injected_status_for_n_requests_of_one_model(
    client: openai.OpenAI, fresh_backend: LocalBackend, status: int, error: type
) -> None:
    fresh_backend.fail(status=status, times=2, model="strong-model")
    for _ in range(2):
        with pytest.raises(error) as info:
            client.chat.completions.create(model="strong-model", messages=_user("x"))
        assert info.value.status_code == status
        assert info.value.body["message"] == "injected fault"
    assert client.chat.completions.create(model="weak-model", messages=_user("x")).choices
    assert client.chat.completions.create(model="strong-model", messages=_user("x")).choices
    assert [r.status for r in fresh_backend.requests] == [status, status, 200, 200]


def test_always_failing_fault_until_reset(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.fail(status=503, times=None)
    for model in ("a", "b", "a"):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model=model, messages=_user("x"))
    fresh_backend.reset()
    assert client.chat.completions.create(model="a", messages=_user("x")).choices


def test_timeout_fault_exceeds_client_timeout(fresh_backend: LocalBackend) -> None:
    fresh_backend.fail("timeout", sleep_s=5)
    client = openai.OpenAI(base_url=fresh_backend.base_url, api_key="k", max_retries=0, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=_user("x"))
    assert time.perf_counter() - started < 2
    assert client.chat.completions.create(model="m", messages=_user("x")).choices


def test_latency_setting_delays_the_reply(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.configure("slow", latency_ms=150)
    started = time.perf_counter()
    client.chat.completions.create(model="slow", messages=_user("x"))
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    client.chat.completions.create(model="fast", messages=_user("x"))
    assert time.perf_counter() - started < 0.15


def test_chunk_delay_spaces_stream_chunks(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.configure(chunk_delay_ms=40)
    stream = client.chat.completions.create(model="m", messages=_user("one two"), stream=True)
    arrivals = [time.perf_counter() for _ in stream]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(gaps) >= 4 and min(gaps) >= 0.02


def _wait_abandoned(backend: LocalBackend, model: str) -> bool:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if backend.requests_for(model)[0].abandoned:
            return True
        time.sleep(0.02)
    return False


def test_a_client_giving_up_is_recorded_as_abandoned(fresh_backend: LocalBackend) -> None:
    """`abandoned`: what a provider sees when a caller closes its connection before the
    answer; answered requests and the backend's own drops are not abandoned."""
    fresh_backend.configure("slow", latency_ms=3000)
    quick = openai.OpenAI(base_url=fresh_backend.base_url, api_key="k", max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        quick.chat.completions.create(model="slow", messages=_user("x"))
    assert _wait_abandoned(fresh_backend, "slow")

    fresh_backend.configure("streamed", chunk_delay_ms=200)
    client = openai.OpenAI(base_url=fresh_backend.base_url, api_key="k", max_retries=0, timeout=5)
    stream = client.chat.completions.create(
        model="streamed", messages=_user("one two three four"), stream=True
    )
    next(iter(stream))
    stream.close()  # stops reading mid-stream
    assert _wait_abandoned(fresh_backend, "streamed")

    client.chat.completions.create(model="fast", messages=_user("x"))
    list(client.chat.completions.create(model="fast2", messages=_user("x"), stream=True))
    fresh_backend.fail("drop", model="dropped")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="dropped", messages=_user("x"))
    time.sleep(0.1)
    for model in ("fast", "fast2", "dropped"):
        assert not fresh_backend.requests_for(model)[0].abandoned, model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "timeout"}, r"a timeout is fail\('timeout'\)"),
        ({"status": 42}, "HTTP status code"),
        ({"status": True}, "HTTP status code"),
        ({"times": 0}, "at least 1"),
        ({"times": 1.5}, "whole number"),
    ],
)
def test_a_fault_that_would_inject_nothing_meant_is_refused(
    fresh_backend: LocalBackend, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fresh_backend.fail(**kwargs)
    assert fresh_backend.fail(status=429, times=None).times is None


def test_connection_refused_url(fresh_backend: LocalBackend) -> None:
    client = openai.OpenAI(
        base_url=LocalBackend.refused_url(), api_key="k", max_retries=0, timeout=2
    )
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=_user("x"))


def test_drop_before_reply_is_a_connection_error(
    client: openai.OpenAI, fresh_backend: LocalBackend
) -> None:
    fresh_backend.fail("drop")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=_user("x"))
    assert client.chat.completions.create(model="m", messages=_user("x")).choices


def test_mid_stream_drop_after_k_chunks(client: openai.OpenAI, fresh_backend: LocalBackend) -> None:
    fresh_backend.fail("drop", after_chunks=3, model="m")
    stream = client.chat.completions.create(
        model="m", messages=_user("a long enough prompt to stream"), stream=True
    )
    received = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3


def test_malformed_json_body(client: openai.OpenAI, fresh_backend: LocalBackend) -> None:
    fresh_backend.fail("malformed")
    raw = client.chat.completions.with_raw_response.create(model="m", messages=_user("x"))
    assert raw.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw.text)


def test_malformed_stream_event(client: openai.OpenAI, fresh_backend: LocalBackend) -> None:
    fresh_backend.fail("malformed")
    stream = client.chat.completions.create(model="m", messages=_user("x y z"), stream=True)
    with pytest.raises(json.JSONDecodeError):
        list(stream)


def test_a_200_holding_an_error_or_null_choices(fresh_backend: LocalBackend) -> None:
    """OpenRouter and LiteLLM's proxy answer a failed upstream with 200 and `{"error": ...}`;
    vLLM can answer `"choices": null`. In a stream, the event comes after `after_chunks`
    events, and before the closing [DONE] however large `after_chunks` is."""
    url = f"{fresh_backend.base_url}/chat/completions"
    body = {"model": "m", "messages": _user("x y z")}
    fresh_backend.fail("error_body", status=502, message="upstream overloaded")
    reply = httpx.post(url, json=body).json()
    assert reply == {"error": {"message": "upstream overloaded", "code": 502}}
    fresh_backend.fail("null_choices")
    reply = httpx.post(url, json=body).json()
    assert reply["choices"] is None and reply["usage"]["total_tokens"] > 0

    def stream_events() -> list[str]:
        with httpx.stream("POST", url, json={**body, "stream": True}) as response:
            return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]

    answer = stream_events()  # no fault: the answer's events, then [DONE]
    for after, kept in ((1, 1), (50, len(answer) - 1)):
        fresh_backend.fail("error_body", after_chunks=after)
        events = stream_events()
        choices = [json.loads(e).get("choices") for e in events[:kept]]
        assert choices == [json.loads(e).get("choices") for e in answer[:kept]]
        assert len(events) == kept + 2
        assert json.loads(events[-2]) == {"error": {"message": "injected fault", "code": 500}}
        assert events[-1] == "[DONE]"


def test_required_api_key() -> None:
    with LocalBackend(api_key="secret") as backend:
        wrong = openai.OpenAI(base_url=backend.base_url, api_key="nope", max_retries=0, timeout=2)
        with pytest.raises(openai.AuthenticationError) as info:
            wrong.chat.completions.create(model="m", messages=_user("x"))
        assert info.value.body["code"] == "invalid_api_key"
        right = openai.OpenAI(base_url=backend.base_url, api_key="secret", max_retries=0, timeout=2)
        assert right.chat.completions.create(model="m", messages=_user("x")).choices


def test_stop_closes_the_port() -> None:
    backend = LocalBackend().start()
    url = backend.base_url
    backend.stop()
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=1)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


def test_control_api_configures_over_http(fresh_backend: LocalBackend) -> None:
    root = fresh_backend.base_url.removesuffix("/v1")
    with httpx.Client(base_url=root, timeout=2) as http:
        assert http.post("/_control/configure", json={"model": "m", "reply": "hi"}).json()["ok"]
        assert http.post("/_control/fail", json={"status": 502, "times": 1}).status_code == 200
        first = http.post("/v1/chat/completions", json={"model": "m", "messages": _user("x")})
        second = http.post("/v1/chat/completions", json={"model": "m", "messages": _user("x")})
        assert first.status_code == 502
        assert second.json()["choices"][0]["message"]["content"] == "hi"
        assert [r["status"] for r in http.get("/_control/requests").json()] == [502, 200]
        assert http.post("/_control/configure", json={"bogus": 1}).status_code == 400


def test_bad_requests_get_openai_errors(fresh_backend: LocalBackend) -> None:
    root = fresh_backend.base_url
    with httpx.Client(base_url=root, timeout=2) as http:
        not_json = http.post("/chat/completions", content=b"{nope")
        no_model = http.post("/chat/completions", json={"messages": _user("x")})
        missing = http.get("/nothing")
    assert not_json.status_code == 400 and "error" in not_json.json()
    assert no_model.status_code == 400
    assert missing.status_code == 404


def test_expect_100_continue_is_answered(fresh_backend: LocalBackend) -> None:
    body = json.dumps({"model": "m", "messages": _user("big body")}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", fresh_backend.port), timeout=2) as sock:
        sock.sendall(head.encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert b"[m] echo: big body" in reply
