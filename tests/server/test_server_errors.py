"""Bad requests, auth, and backend faults: OpenAI-shaped errors, fallback, never a hang."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from routellm_lc.testing import LocalBackend

HARD = [{"role": "user", "content": "a hard question"}]  # routed to the strong model
EASY = [{"role": "user", "content": "hello"}]  # routed to the weak model


def post(server, body=None, *, content=None, headers=None, timeout=10.0) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json=body,
        content=content,
        headers=headers,
        timeout=timeout,
    )


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code
    return error


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("gpt-4o", 404, "model_not_found"),  # a model this server does not have, as OpenAI
        ("", 400, "invalid_model"),  # no model named at all
        ("router-bert-0.5", 404, "model_not_found"),  # a real router, not served here
        ("router-nope-0.5", 404, "model_not_found"),
        ("router-test_keyword-1.5", 400, "invalid_threshold"),
        ("router-test_keyword-abc", 400, "invalid_threshold"),
        ("router-test_keyword-nan", 400, "invalid_threshold"),
        ("router-test_keyword-", 400, "invalid_threshold"),
    ],
)
def test_bad_model_names_get_openais_statuses(server, model, status, code):
    """As OpenAI: a model it does not have is 404 `model_not_found`, a malformed one 400."""
    error = assert_openai_error(post(server, {"model": model, "messages": EASY}), status, code)
    assert error["param"] == "model"


def test_bad_model_names_raise_the_sdks_usual_errors(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="test_keyword"):
        client.chat.completions.create(model="router-unknown-0.5", messages=EASY)
    with pytest.raises(openai.BadRequestError, match="threshold"):
        client.chat.completions.create(model="router-test_keyword-2", messages=EASY)
    with pytest.raises(openai.BadRequestError, match="temperature"):  # a schema violation
        client.chat.completions.create(
            model="router-test_keyword-0.5", messages=EASY, extra_body={"temperature": "hot"}
        )


def test_short_model_name_uses_the_default_threshold(server):
    response = post(server, {"model": "router-test_keyword", "messages": EASY})
    assert response.status_code == 200
    assert response.headers["x-routellm-threshold"] == "0.5"


def test_malformed_json_gets_400(server):
    assert_openai_error(post(server, content=b'{"model": "router-'), 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": EASY}, "model"),
        ({"model": "router-test_keyword-0.5"}, "messages"),
        ({"model": "router-test_keyword-0.5", "messages": []}, "messages"),
        ({"model": "router-test_keyword-0.5", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "router-test_keyword-0.5", "messages": EASY, "temperature": "hot"}, "temperature"),
        ({"model": "router-test_keyword-0.5", "messages": EASY, "tools": [{"type": "function"}]}, "tools[0]"),
        ({"model": "router-test_keyword-0.5", "messages": EASY, "tools": [{"type": "web", "function": {"name": "f"}}]}, "tools[0].type"),
        ({"model": "router-test_keyword-0.5", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "router-test_keyword-0.5", "messages": EASY, "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "router-test_keyword-0.5", "messages": EASY, "stop": 5}, "stop"),
        ({"model": "router-test_keyword-0.5", "messages": EASY, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"model": "router-test_keyword-0.5", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]}, "messages[0].tool_calls[0].function.arguments"),
        ([1, 2, 3], None),
    ],
)  # fmt: skip
def test_schema_violations_get_400(server, body, param):
    """400, as OpenAI answers an invalid parameter (FastAPI's default would be 422); `param`
    is the field's path as OpenAI writes it, without the validator's union-member names."""
    error = assert_openai_error(post(server, body), 400, "invalid_request")
    assert error["param"] == param
    assert error["message"].startswith(f"Invalid '{param}': " if param else "Invalid request body")


def test_messages_without_text_get_400(server):
    body = {"model": "router-test_keyword-0.5", "messages": [{"role": "user", "content": ""}]}
    assert_openai_error(post(server, body), 400, "empty_prompt")


def test_body_over_the_limit_gets_413(start_server):
    server = start_server(max_body_bytes=2000)
    big = [{"role": "user", "content": "x" * 5000}]
    assert_openai_error(
        post(server, {"model": "router-test_keyword-0.5", "messages": big}),
        413,
        "request_too_large",
    )
    chunks = (b'{"model": "router-test_keyword-0.5", "messages": [' + b" " * 100 for _ in range(40))
    streamed = httpx.post(f"{server.base_url}/chat/completions", content=iter(chunks), timeout=10)
    assert_openai_error(streamed, 413, "request_too_large")  # no content-length: counted


def test_unknown_path_gets_openai_404(server):
    response = httpx.get(f"{server.base_url}/completions", timeout=5)
    assert_openai_error(response, 404, "not_found")


# -- auth --------------------------------------------------------------------------------------


def test_server_keys_require_a_matching_bearer(start_server, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_SERVER_KEYS", "env-key-1, env-key-2")
    from routellm_lc.server.config import ServerConfig

    keys = ServerConfig.from_sources(server_keys=["flag-key"]).server_keys
    assert keys == ["flag-key", "env-key-1", "env-key-2"]
    server = start_server(server_keys=keys)
    body = {"model": "router-test_keyword-0.5", "messages": EASY}
    assert_openai_error(post(server, body), 401, "invalid_api_key")
    wrong = post(server, body, headers={"authorization": "Bearer nope"})
    assert_openai_error(wrong, 401, "invalid_api_key")
    assert post(server, body, headers={"authorization": "Bearer env-key-2"}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="bad", max_retries=0).models.list()
    good = openai.OpenAI(base_url=server.base_url, api_key="flag-key", max_retries=0)
    assert [m.id for m in good.models.list()][0] == "router-test_keyword-0.5"
    assert httpx.get(f"{server.base_url.removesuffix('/v1')}/health").status_code == 200


# -- backend faults ----------------------------------------------------------------------------


def test_chosen_model_5xx_falls_back_to_the_other_model(server, fresh_backend):
    fresh_backend.fail(status=503, times=None, model="strong-model")
    response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD})
    assert response.status_code == 200
    assert response.json()["model"] == "weak-model"
    assert response.headers["x-routellm-fallback-from"] == "openai/strong-model"
    assert response.headers["x-routellm-model"] == "openai/weak-model"
    assert response.headers["x-routellm-route"] == "weak"
    metrics = httpx.get(f"{server.base_url.removesuffix('/v1')}/metrics").text
    assert 'routellm_fallbacks_total{router="test_keyword",failed="strong"}' in metrics


def test_both_models_5xx_gets_502(server, fresh_backend):
    fresh_backend.fail(status=500, times=None)
    response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD})
    error = assert_openai_error(response, 502, "upstream_error")
    assert "strong-model" in error["message"] and "weak-model" in error["message"]
    assert response.headers["x-routellm-model"] == "openai/strong-model"


def test_a_fallback_is_logged_with_the_failed_models_error(server, fresh_backend, caplog):
    """A wrong key or model name on one side (401/403/404) falls back like a 5xx, which keeps
    the service up; the warning is how an operator sees it."""
    fresh_backend.fail(status=404, message="model strong-model does not exist", times=1)
    with caplog.at_level("WARNING", logger="routellm_lc.server"):
        response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD})
    assert response.status_code == 200
    assert response.headers["x-routellm-fallback-from"] == "openai/strong-model"
    (record,) = [r for r in caplog.records if r.name == "routellm_lc.server"]
    assert record.levelname == "WARNING"
    assert "strong-model" in record.getMessage() and "does not exist" in record.getMessage()


def test_both_models_rate_limited_get_429_with_retry_after(server, fresh_backend):
    """The SDKs raise RateLimitError on 429 and honour Retry-After; a 502 would hide it."""
    fresh_backend.fail(status=429, message="slow down", times=None)
    response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD})
    error = assert_openai_error(response, 429, "rate_limit_exceeded")
    assert "strong-model" in error["message"] and "weak-model" in error["message"]
    assert response.headers["retry-after"] == "0"  # the backend's
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0).chat.completions.create(
            model="router-test_keyword-0.5", messages=HARD
        )


def test_one_rate_limited_model_and_one_broken_get_502(server, fresh_backend):
    fresh_backend.fail(status=429, times=None, model="strong-model")
    fresh_backend.fail(status=500, times=None, model="weak-model")
    response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD})
    assert_openai_error(response, 502, "upstream_error")


def test_the_last_failure_is_logged_too(start_server, fresh_backend, caplog):
    """A 502 with no fallback (or after both models failed) used to leave no log line."""
    server = start_server(fallback=False)
    fresh_backend.fail(status=503, message="overloaded", times=None, model="weak-model")
    with caplog.at_level("WARNING", logger="routellm_lc.server"):
        assert_openai_error(
            post(server, {"model": "router-test_keyword-0.5", "messages": EASY}), 502
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "routellm_lc.server"]
    assert [m for m in lines if m.startswith("answered 502: ") and "weak-model" in m], lines


def test_no_fallback_for_a_client_that_has_gone(start_server, fresh_backend):
    """The client gave up while the chosen model was timing out: the other model used to be
    called anyway, a second paid call nobody reads."""
    server = start_server(timeout=1.0)
    fresh_backend.configure("strong-model", latency_ms=1500)
    with pytest.raises(httpx.TimeoutException):
        post(server, {"model": "router-test_keyword-0.5", "messages": HARD}, timeout=0.3)
    time.sleep(2.0)  # the strong call times out at 1 s; a fallback would have started by now
    assert len(fresh_backend.requests_for("strong-model")) == 1
    assert fresh_backend.requests_for("weak-model") == []
    metrics = httpx.get(f"{server.base_url.removesuffix('/v1')}/metrics").text
    assert 'status="499"' in metrics


@pytest.mark.parametrize("forwarding", ["auto", "litellm"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_upstream_call_of_a_client_that_has_gone_is_cancelled(
    start_server, fresh_backend, forwarding, stream
):
    """A client that gave up used to leave its upstream call running to the end: the model
    kept generating (and billing) an answer nobody would read. Now its connection is closed."""
    server = start_server(timeout=10.0, forwarding=forwarding)
    fresh_backend.configure("strong-model", latency_ms=3000)
    body = {"model": "router-test_keyword-0.5", "messages": HARD, "stream": stream}
    # The client goes once its call has reached the model (a client timeout could fire before
    # that on a busy machine, and then there is no upstream call to cancel).
    client = _raw_request(server, body)
    arrived = time.monotonic() + 10.0
    while not fresh_backend.requests_for("strong-model") and time.monotonic() < arrived:
        time.sleep(0.01)
    client.close()
    deadline = time.monotonic() + 2.0  # well before the 3 s answer
    while time.monotonic() < deadline:
        requests = fresh_backend.requests_for("strong-model")
        if requests and requests[0].abandoned:
            break
        time.sleep(0.05)
    requests = fresh_backend.requests_for("strong-model")
    assert len(requests) == 1 and requests[0].abandoned
    assert fresh_backend.requests_for("weak-model") == []
    metrics = httpx.get(f"{server.base_url.removesuffix('/v1')}/metrics").text
    assert 'status="499"' in metrics


def _raw_request(server, body):
    """A socket that has sent `body` to the server's chat endpoint and reads nothing."""
    import json
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(server.base_url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    client = socket.create_connection((url.hostname, url.port), timeout=10)
    client.sendall(head.encode() + payload)
    return client


def test_a_client_that_waits_is_answered_in_full(start_server, fresh_backend):
    """The watch for a gone client does not cut a slow answer short."""
    server = start_server(timeout=10.0)
    fresh_backend.configure("strong-model", latency_ms=600)
    response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD}, timeout=5.0)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("[strong-model]")
    assert not fresh_backend.requests_for("strong-model")[0].abandoned


def test_without_fallback_a_5xx_gets_502_at_once(start_server, fresh_backend):
    server = start_server(fallback=False)
    fresh_backend.fail(status=503, times=None, model="weak-model")
    assert_openai_error(post(server, {"model": "router-test_keyword-0.5", "messages": EASY}), 502)
    assert fresh_backend.requests_for("strong-model") == []


def test_backend_client_error_is_relayed_not_retried(server, fresh_backend):
    fresh_backend.fail(status=400, message="context too long", times=1)
    response = post(server, {"model": "router-test_keyword-0.5", "messages": EASY})
    assert assert_openai_error(response, 400)["message"] == "context too long"
    assert fresh_backend.requests_for("strong-model") == []


def test_backend_timeout_gets_504_fast(start_server, fresh_backend):
    server = start_server(timeout=0.3)
    fresh_backend.fail(kind="timeout", sleep_s=20, times=None)
    started = time.monotonic()
    response = post(server, {"model": "router-test_keyword-0.5", "messages": EASY})
    assert_openai_error(response, 504, "upstream_timeout")
    assert time.monotonic() - started < 3  # two attempts of 0.3 s, not 20 s


def test_streaming_timeout_before_first_event_gets_504(start_server, fresh_backend):
    server = start_server(timeout=0.3, fallback=False)
    fresh_backend.fail(kind="timeout", sleep_s=20, times=None)
    body = {"model": "router-test_keyword-0.5", "messages": EASY, "stream": True}
    assert_openai_error(post(server, body), 504, "upstream_timeout")


def test_refused_connection_gets_502(start_server):
    server = start_server(api_base=LocalBackend.refused_url())
    error = assert_openai_error(
        post(server, {"model": "router-test_keyword-0.5", "messages": EASY}), 502, "upstream_error"
    )
    assert "cannot connect" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_backend_response_gets_502(server, fresh_backend, stream):
    fresh_backend.fail(kind="malformed", times=None)
    body = {"model": "router-test_keyword-0.5", "messages": EASY, "stream": stream}
    # nothing reached the client yet (the broken event came in the first read): a clean 502
    assert_openai_error(post(server, body), 502, "upstream_error")


def test_malformed_event_after_the_answer_began_ends_it_with_an_error_event(server, fresh_backend):
    fresh_backend.configure(chunk_delay_ms=20)  # the first events arrive on their own
    fresh_backend.fail(kind="malformed", after_chunks=3, times=None)
    body = {"model": "router-test_keyword-0.5", "messages": EASY, "stream": True}
    response = post(server, body)
    assert response.status_code == 200
    events = [event for event in response.text.split("\n\n") if event]
    assert len(events) == 4 and '"chatcmpl-broken"' not in response.text
    assert '"error"' in events[-1] and "not valid JSON" in events[-1]


def test_streams_broken_before_their_answers_began_are_a_clean_502(server, fresh_backend):
    fresh_backend.configure(chunk_delay_ms=20)
    fresh_backend.fail(kind="malformed", after_chunks=1, times=None)  # both models
    body = {"model": "router-test_keyword-0.5", "messages": EASY, "stream": True}
    assert_openai_error(post(server, body), 502, "upstream_error")


def test_malformed_first_answer_falls_back(server, fresh_backend):
    fresh_backend.fail(kind="malformed", times=1, model="weak-model")
    response = post(server, {"model": "router-test_keyword-0.5", "messages": EASY})
    assert response.status_code == 200
    assert response.headers["x-routellm-fallback-from"] == "openai/weak-model"


@pytest.mark.parametrize("fault", ["null_choices", "error_body"])
def test_a_200_without_a_choices_list_falls_back(server, fresh_backend, fault):
    """A plain (non-streamed) 200 with `"choices": null` (vLLM) reached the client, whose SDK
    then failed on `choices[0]`; the same in a stream, or `{"error": ...}`, fell back."""
    fresh_backend.fail(kind=fault, times=1, model="weak-model")
    response = post(server, {"model": "router-test_keyword-0.5", "messages": EASY})
    assert response.status_code == 200, response.text
    assert response.headers["x-routellm-fallback-from"] == "openai/weak-model"
    assert response.json()["choices"][0]["message"]["content"].startswith("[strong-model]")


def test_connection_dropped_before_answer_falls_back(server, fresh_backend):
    fresh_backend.fail(kind="drop", times=1, model="strong-model")
    response = post(server, {"model": "router-test_keyword-0.5", "messages": HARD, "stream": True})
    assert response.status_code == 200
    assert response.headers["x-routellm-fallback-from"] == "openai/strong-model"
    assert response.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("kind", ["drop", "malformed"])
def test_a_stream_failing_after_its_role_only_event_falls_back(server, fresh_backend, kind):
    # the backend's first event is the role-only one (as OpenAI's): no answer has begun
    fresh_backend.configure(chunk_delay_ms=20)  # the first event arrives on its own
    fresh_backend.fail(kind=kind, after_chunks=1, times=None, model="strong-model")
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(
        model="router-test_keyword-0.5", messages=HARD, stream=True
    )
    assert raw.headers["x-routellm-fallback-from"] == "openai/strong-model"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[weak-model]")
    assert [c.choices[0].delta.role for c in chunks if c.choices][0] == "assistant"


def test_mid_stream_drop_ends_with_an_error_event_and_no_hang(server, fresh_backend):
    fresh_backend.fail(kind="drop", after_chunks=3, times=None)
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    started = time.monotonic()
    received = []
    with pytest.raises(openai.APIError, match="strong-model"):
        for chunk in client.chat.completions.create(
            model="router-test_keyword-0.5", messages=HARD, stream=True
        ):
            received.append(chunk)
    assert len(received) == 3  # what the backend sent before dropping reached the client
    assert time.monotonic() - started < 5


def test_client_leaving_mid_stream_releases_the_upstream_connection(start_server, fresh_backend):
    server = start_server()
    fresh_backend.configure(chunk_delay_ms=500)  # each upstream stream would last ~4 s
    baseline = len(fresh_backend._connections)  # idle pooled connections of other servers
    body = {"model": "router-test_keyword-0.5", "messages": EASY, "stream": True}
    for _ in range(3):
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=5) as r:
            next(line for line in r.iter_lines() if line)  # read one event, then hang up
    deadline = time.monotonic() + 2
    while len(fresh_backend._connections) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    # the server closed its three upstream streams, long before the backend would have ended them
    assert len(fresh_backend._connections) <= baseline
    fresh_backend.configure(chunk_delay_ms=0)
    assert post(server, {"model": "router-test_keyword-0.5", "messages": EASY}).status_code == 200


def test_an_upstream_error_cannot_forge_a_log_line(start_server, fresh_backend, caplog):
    """An upstream's error text is copied into our log and error body: a newline in it used
    to start a line of its own in the log."""
    server = start_server(fallback=False)
    fresh_backend.fail(status=500, message="boom\nFAKE LOG LINE: admin login ok", times=1)
    with caplog.at_level("WARNING", logger="routellm_lc.server"):
        response = post(server, {"model": "router-test_keyword-0.5", "messages": EASY})
    error = assert_openai_error(response, 502, "upstream_error")
    assert "\n" not in error["message"] and "boom FAKE LOG LINE" in error["message"]
    assert all("\n" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True])
def test_the_upstreams_request_id_and_rate_limit_headers_reach_the_client(
    server, fresh_backend, stream
):
    """Only the x-routellm-* headers were sent: the provider's `x-request-id` (the openai
    SDK's `_request_id`, what a provider's support asks for) was lost, on answers and on
    relayed 400s alike."""
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(
        model="router-test_keyword-0.5", messages=EASY, stream=stream
    )
    answered = fresh_backend.requests_for("weak-model")[-1]
    assert raw.headers["x-request-id"] == answered.request_id.lower() != ""
    assert raw.headers["x-routellm-model"] == "openai/weak-model"
    fresh_backend.fail(status=400, message="bad request", model="weak-model")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="router-test_keyword-0.5", messages=EASY)
    assert caught.value.request_id == fresh_backend.requests_for("weak-model")[-1].request_id
