"""What of a request reaches the upstream, on the direct relay and on the LiteLLM path; and that
no request field can set one of LiteLLM's own options (where it calls, with which key)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from routellm_lc.server.forwarding import LITELLM_REQUEST_FIELDS, LiteLLMForwarder, build_target
from routellm_lc.testing import LocalBackend

EASY = [{"role": "user", "content": "hello"}]  # routed to the weak model


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[LocalBackend]:
    """A URL a client would like the server to call (with the server's key)."""
    with LocalBackend() as other:
        yield other


def post(server, **fields) -> httpx.Response:
    body = {"model": "router-test_keyword-0.5", "messages": EASY, **fields}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=20)


@pytest.mark.parametrize(
    "injected",
    [
        {"api_base": "ELSEWHERE"},
        {"base_url": "ELSEWHERE"},
        {"api_key": "client-chosen-key"},
        {"extra_headers": {"x-injected": "yes", "authorization": "Bearer client-chosen-key"}},
        {"mock_response": "a mocked answer"},
        {"custom_llm_provider": "anthropic"},
        {"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/x"}}]},
    ],
    ids=lambda injected: next(iter(injected)),
)
def test_request_fields_cannot_set_litellms_options(
    start_server, fresh_backend, elsewhere, injected
):
    """A client of a LiteLLM-path server adds `api_base` (and so on) to its request: the server
    still calls its own upstream with its own key and headers, and the field reaches that
    upstream as an ordinary (unknown) request field."""
    injected = {k: elsewhere.base_url if v == "ELSEWHERE" else v for k, v in injected.items()}
    server = start_server(forwarding="litellm")
    elsewhere.clear_requests()
    response = post(server, custom_vendor_flag=True, **injected)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("[weak-model] echo:")
    assert elsewhere.requests == []
    sent = fresh_backend.requests_for("weak-model")[-1]
    assert sent.headers["authorization"] == "Bearer backend-key"
    assert "x-injected" not in sent.headers
    assert sent.body["custom_vendor_flag"] is True
    for key, value in injected.items():
        assert sent.body[key] == value


SENT = {
    "user": "user-123",
    "metadata": {"team": "a"},
    "store": True,
    "seed": 7,
    "logit_bias": {"50256": -100},
    "parallel_tool_calls": False,
    "service_tier": "auto",
    "verbosity": "low",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "custom_vendor_flag": True,
    "extra_body": {"nested": 1},  # no SDK sends this key: it is just another unknown field
}


@pytest.mark.parametrize("forwarding", ["auto", "litellm"])
def test_openai_fields_and_unknown_fields_reach_the_upstream(
    start_server, fresh_backend, forwarding
):
    """`user` (which LiteLLM leaves out for models outside OpenAI's catalog) and `metadata`
    (which LiteLLM would take for its own logging) reach an OpenAI-compatible upstream."""
    server = start_server(forwarding=forwarding)
    response = post(server, **SENT)
    assert response.status_code == 200, response.text
    body = fresh_backend.requests_for("weak-model")[-1].body
    for key, value in SENT.items():
        if key != "tools":  # LiteLLM normalises tool schemas
            assert body.get(key) == value, key
    assert body["tools"][0]["function"]["name"] == "f"


LITELLM_OPTIONS = {
    "api_base": "http://attacker/v1",
    "api_key": "client-key",
    "extra_headers": {"x": "y"},
    "timeout": 999,
    "num_retries": 9,
    "mock_response": "mocked",
}


def test_litellm_path_calls_take_only_openai_fields_as_named_arguments():
    """An OpenAI-compatible endpoint: OpenAI's fields named, every other field in
    `extra_body` (which LiteLLM merges into the request it sends there)."""
    forwarder = LiteLLMForwarder(timeout=5.0, max_retries=1)
    body = {
        "model": "router-mf-0.5",
        "messages": EASY,
        "temperature": 0.2,
        "user": "u",
        "metadata": {"team": "a"},
        "azure_ad_token": "client-token",  # LiteLLM would take it out of extra_body as a credential
        **LITELLM_OPTIONS,
    }
    target = build_target("openai/small", "http://upstream/v1", "server-key", "litellm")
    params = forwarder._params(target, body)
    options = {"model", "timeout", "max_retries", "api_base", "api_key", "extra_body"}
    assert set(params) - options <= LITELLM_REQUEST_FIELDS
    assert params["model"] == "openai/small" and params["api_base"] == "http://upstream/v1"
    assert params["api_key"] == "server-key"
    assert params["timeout"] == 5.0 and params["max_retries"] == 1
    assert params["temperature"] == 0.2 and params["messages"] == EASY
    extra = params["extra_body"]
    assert extra["api_base"] == "http://attacker/v1" and extra["extra_headers"] == {"x": "y"}
    assert extra["metadata"] == {"team": "a"} and extra["num_retries"] == 9
    assert "azure_ad_token" not in extra and "model" not in extra
    # an OpenAI-compatible endpoint outside OpenAI's catalog gets `user` as sent
    assert "user" not in params and extra["user"] == "u"


@pytest.mark.parametrize("option", sorted(LITELLM_OPTIONS))
def test_a_translated_provider_refuses_fields_it_cannot_be_sent(option):
    """Anthropic (and Gemini, Bedrock, Ollama...): LiteLLM translates OpenAI's fields for it
    and would send an `extra_body` as a literal field (Anthropic answers 400, Gemini rejects
    a top-level `top_k`, Ollama ignores it). Unknown fields get OpenAI's 400 instead, naming
    the field; never does one become a LiteLLM option."""
    import orjson

    from routellm_lc.server.forwarding import _Refused

    forwarder = LiteLLMForwarder(timeout=5.0, max_retries=1)
    target = build_target("anthropic/claude-3-5-sonnet-20240620", None, "server-key", "litellm")
    with pytest.raises(_Refused) as refused:
        forwarder._params(target, {"messages": EASY, option: LITELLM_OPTIONS[option]})
    reply = refused.value.reply
    assert reply.status == 400
    error = orjson.loads(reply.body)["error"]
    assert error["param"] == option and error["code"] == "unsupported_parameter"


def test_a_translated_provider_gets_openai_and_passthrough_fields_named():
    forwarder = LiteLLMForwarder(timeout=5.0, max_retries=1, passthrough=["top_k", "min_p"])
    target = build_target("anthropic/claude-3-5-sonnet-20240620", None, "server-key", "litellm")
    body = {"model": "router-mf-0.5", "messages": EASY, "user": "u", "top_k": 5, "min_p": 0.1}
    params = forwarder._params(target, body)
    assert (params["user"], params["top_k"], params["min_p"]) == ("u", 5, 0.1)
    assert "extra_body" not in params  # LiteLLM maps `user` for Anthropic (metadata.user_id)


def test_a_passthrough_field_that_is_a_litellm_option_fails_at_start_up():
    from routellm_lc.server.config import ServerConfigError

    with pytest.raises(ServerConfigError, match="mock_response"):
        LiteLLMForwarder(
            timeout=5.0, max_retries=0, passthrough=["mock_response"]
        ).check_passthrough()


def test_a_field_either_model_cannot_be_sent_is_refused_whatever_the_route(
    start_server, fresh_backend
):
    """With an Anthropic strong model (LiteLLM translates for it) and an OpenAI-compatible
    weak one, an unknown field used to pass when the prompt routed weak and get 400 when it
    routed strong: valid or not must not depend on the score. It is refused before routing,
    without a call, and counted; OpenAI's platform-only `metadata` is left out for Anthropic
    instead of refused."""
    server = start_server(strong="anthropic/claude-3-5-sonnet-20240620", forwarding="litellm")
    fresh_backend.clear_requests()
    response = post(server, custom_vendor_flag=True)  # EASY: routed to the weak model
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("custom_vendor_flag", "unsupported_parameter")
    assert "anthropic/claude-3-5-sonnet-20240620" in error["message"]
    assert fresh_backend.requests == []
    metrics = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    assert 'routellm_errors_total{kind="unsupported_parameter"} 1' in metrics
    response = post(server, metadata={"team": "a"}, top_k=3)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("field", [{"store": False}, {"parallel_tool_calls": True}])
def test_an_openai_field_litellm_refuses_for_a_provider_is_refused_whatever_the_route(
    start_server, fresh_backend, field
):
    """With an Ollama strong model, `store` (or ChatOpenAI's `parallel_tool_calls`) passed
    when the prompt routed weak and was LiteLLM's UnsupportedParamsError (400) when it routed
    strong. LiteLLM's own check is asked before routing: refused either way, naming it."""
    server = start_server(strong="ollama_chat/llama3", forwarding="litellm")
    fresh_backend.clear_requests()
    (name,) = field
    for content in ("hello", "a hard question"):  # weak, then strong
        body = {
            "model": "router-test_keyword-0.5",
            "messages": [{"role": "user", "content": content}],
        }
        response = httpx.post(
            f"{server.base_url}/chat/completions", json={**body, **field}, timeout=20
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (name, "unsupported_parameter")
        assert "'ollama_chat/llama3' (ollama_chat, served through LiteLLM)" in error["message"]
    assert fresh_backend.requests == []
    assert post(server, temperature=0.2, seed=1).status_code == 200  # fields Ollama takes


def test_litellms_verdict_is_cached_by_what_its_check_reads_of_the_values():
    """Cached by field names alone, `store: true` then `store: null` refused the null (which
    LiteLLM reads as unset), and `null` then `false` let the false through to a 400 when it
    routed to Ollama: validity depended on the route again."""
    forwarder = LiteLLMForwarder(timeout=5.0, max_retries=1)
    target = build_target("ollama_chat/llama3", None, None, "litellm")

    def refused(**fields):
        found = forwarder.unsupported(target, {"messages": EASY, **fields})
        return None if found is None else found[0]

    assert refused(store=True) == "store" and refused(store=None) is None
    assert refused(parallel_tool_calls=None) is None
    assert refused(parallel_tool_calls=False) == "parallel_tool_calls"
    assert refused(store=False) == "store" and refused(store=True) == "store"  # only null is unset
    assert refused(temperature=0.5) is None and refused(temperature=0.7) is None
    tools = [
        {"type": "function", "function": {"name": f"f{i}", "parameters": {}}} for i in range(3)
    ]
    assert refused(tools=tools) is None and refused(tools=tools[:1]) is None
    assert len(forwarder._refusals) == 8  # one per verdict key; tools lists share one
