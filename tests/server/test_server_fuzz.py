"""Fuzzed bad input: random bodies never get a 500; errors always have OpenAI's shape."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALLOWED = {200, 400, 404, 413}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±inf serialise to invalid JSON: must be a 400
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
models = st.sampled_from(
    ["router-test_keyword-0.5", "router-random-0.2", "router-test_keyword", "router-random-1",
     "router-random-2", "router--0.5", "router-", "gpt-4o", "", "router-test_keyword-1e-3"]
) | st.text(max_size=30) | json_values  # fmt: skip
contents = (
    st.text(max_size=40)
    | st.none()
    | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"])}, optional={
            "text": st.text(max_size=20) | json_values,
            "image_url": json_values,
        }),
        max_size=3,
    )
    | json_values
)  # fmt: skip
messages = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "bot"])
        | json_values,
        "content": contents,
        "name": st.text(max_size=8) | json_values,
        "tool_call_id": st.text(max_size=8),
        "tool_calls": json_values,
    },
)
tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("function") | json_values},
        optional={
            "function": st.fixed_dictionaries(
                {"name": st.text(max_size=10) | json_values},
                optional={"parameters": json_values, "description": st.text(max_size=10)},
            )
            | json_values
        },
    ),
    max_size=2,
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": models,
        "messages": st.lists(messages, max_size=4) | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values}),
        "tools": tools | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required", "maybe"]) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "max_tokens": st.integers(-5, 50) | json_values,
        "n": st.integers(-1, 3) | json_values,
        "stop": json_values,
        "response_format": json_values,
        "extra_param": json_values,
    },
)


# Mostly valid requests (a real model name, well-formed messages) with random extras, so the
# fuzzer also reaches routing, forwarding and the backend, not only the validator.
valid_roles = st.sampled_from(["user", "system", "assistant", "developer"])
near_valid_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(
            ["router-test_keyword-0.5", "router-random-0.3", "router-test_keyword"]
        )
        | models,
        "messages": st.lists(
            st.fixed_dictionaries({"role": valid_roles, "content": st.text(max_size=40)}),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "temperature": st.floats(0, 2),
        "max_tokens": st.integers(0, 40),
        "tools": tools,
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "user": st.text(max_size=10),
        "extra_param": json_values,
    },
)


def encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


bodies = (
    near_valid_bodies.map(encode)
    | chat_bodies.map(encode)
    | json_values.map(encode)
    | st.binary(max_size=200)
)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_fuzzed_chat_requests_never_get_a_server_error(http, body):
    _post_fuzzed(http, body)


def _post_fuzzed(client: httpx.Client, body: bytes) -> None:
    response = client.post("/chat/completions", content=body)
    assert response.status_code in ALLOWED, (body, response.status_code, response.text[:300])
    if response.status_code != 200:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert error["type"] == "invalid_request_error"


@pytest.fixture
def litellm_http(start_server):
    """The LiteLLM path with a provider LiteLLM translates (Anthropic: unknown fields refused
    before routing, a strong model that fails here so the weak one answers), the strong-share
    controller and cost accounting on. One server for all of a test's examples."""
    server = start_server(
        strong="anthropic/claude-3-5-sonnet-20240620",
        forwarding="litellm",
        strong_share=0.3,
        prices={"openai/weak-model": {"input_per_million": 1, "output_per_million": 2}},
    )
    with httpx.Client(base_url=server.base_url, timeout=20) as client:
        yield client


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_fuzzed_requests_on_the_litellm_path_never_get_a_server_error(litellm_http, body):
    _post_fuzzed(litellm_http, body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(["/chat/completions", "/models", "/nothing", "/../health"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    headers=st.dictionaries(
        st.sampled_from(["content-type", "authorization", "content-length-x", "accept"]),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
        max_size=3,
    ),
)
def test_fuzzed_methods_paths_and_headers_never_get_a_server_error(http, path, method, headers):
    response = http.request(method, path, headers=headers, content=b'{"model": 1}')
    assert response.status_code < 500, (method, path, headers, response.text[:200])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
