"""The LiteLLM forwarding path (used for non-OpenAI providers), forced with forwarding=litellm."""

from __future__ import annotations

import time

import httpx
import openai
import pytest


@pytest.fixture
def litellm_server(start_server):
    return start_server(forwarding="litellm", timeout=5.0)


def test_json_and_stream_through_litellm(litellm_server, fresh_backend):
    client = openai.OpenAI(base_url=litellm_server.base_url, api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="router-test_keyword-0.5", messages=[{"role": "user", "content": "a hard one"}]
    )
    assert raw.parse().choices[0].message.content.startswith("[strong-model] echo: a hard one")
    assert raw.headers["x-routellm-model"] == "openai/strong-model"
    stream = client.chat.completions.create(
        model="router-test_keyword-0.5",
        messages=[{"role": "user", "content": "easy"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith(
        "[weak-model]"
    )
    assert any(c.usage is not None and c.usage.total_tokens > 0 for c in chunks)
    assert fresh_backend.requests_for("weak-model")[-1].headers["authorization"] == (
        "Bearer backend-key"
    )


def test_litellm_stream_chunks_carry_finish_reason_and_logprobs_as_openai_sends_them(
    litellm_server,
):
    """Dumped without LiteLLM's empty fields, intermediate chunks lost the `finish_reason:
    null` and `logprobs: null` every OpenAI chunk carries (RouteLLM's server kept them)."""
    import json

    body = {"model": "router-test_keyword-0.5", "stream": True}
    body["messages"] = [{"role": "user", "content": "easy"}]
    with httpx.stream("POST", f"{litellm_server.base_url}/chat/completions", json=body) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: {")]
    choices = [c for event in events for c in json.loads(event).get("choices", [])]
    assert len(choices) >= 2
    assert all("finish_reason" in c and "logprobs" in c for c in choices)
    assert [c["finish_reason"] for c in choices][:-1] == [None] * (len(choices) - 1)
    assert choices[-1]["finish_reason"] == "stop"


def test_litellm_5xx_falls_back_and_both_failing_gets_502(litellm_server, fresh_backend):
    fresh_backend.fail(status=503, times=None, model="strong-model")
    body = {"model": "router-test_keyword-0.5", "messages": [{"role": "user", "content": "hard"}]}
    response = httpx.post(f"{litellm_server.base_url}/chat/completions", json=body, timeout=20)
    assert response.status_code == 200
    assert response.headers["x-routellm-fallback-from"] == "openai/strong-model"

    fresh_backend.reset()
    fresh_backend.fail(status=500, times=None)
    response = httpx.post(f"{litellm_server.base_url}/chat/completions", json=body, timeout=20)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_litellm_timeout_gets_504_fast(start_server, fresh_backend):
    server = start_server(forwarding="litellm", timeout=0.5)
    fresh_backend.fail(kind="timeout", sleep_s=20, times=None)
    body = {"model": "router-test_keyword-0.5", "messages": [{"role": "user", "content": "hi"}]}
    started = time.monotonic()
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=20)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5


def test_litellm_stream_failing_after_its_role_only_event_falls_back(litellm_server, fresh_backend):
    fresh_backend.configure(chunk_delay_ms=20)
    fresh_backend.fail(kind="drop", after_chunks=1, times=None, model="strong-model")
    body = {
        "model": "router-test_keyword-0.5",
        "messages": [{"role": "user", "content": "a hard question"}],
        "stream": True,
    }
    response = httpx.post(f"{litellm_server.base_url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["x-routellm-fallback-from"] == "openai/strong-model"
    assert "[weak-model]" in response.text and '"error"' not in response.text
    assert response.text.rstrip().endswith("data: [DONE]")


def test_litellm_mid_stream_drop_ends_the_stream_with_an_error_event(litellm_server, fresh_backend):
    fresh_backend.fail(kind="drop", after_chunks=3, times=None)
    client = openai.OpenAI(base_url=litellm_server.base_url, api_key="x", max_retries=0, timeout=10)
    started = time.monotonic()
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="router-test_keyword-0.5",
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
        ):
            pass
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("retries", "sent"), [(0, 1), (2, 3)])
def test_litellm_path_retries_as_many_times_as_max_retries(
    start_server, fresh_backend, retries, sent
):
    """`--max-retries N` means N retries of the chosen model before the fallback model (LiteLLM
    ignored it while `num_retries=0` was passed beside it)."""
    server = start_server(forwarding="litellm", fallback=False, max_retries=retries)
    fresh_backend.fail(status=503, times=None)
    body = {"model": "router-test_keyword-0.5", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=60)
    assert response.status_code == 502
    assert len(fresh_backend.requests_for("weak-model")) == sent


_STARTUP_PROBE = """
import sys
from routellm_lc.server.config import ServerConfig
from routellm_lc.server.runner import ServerThread

config = ServerConfig(routers=["random"], strong="anthropic/claude-x", weak="openai/small",
                      api_base="http://127.0.0.1:9/v1", port=0)
assert "litellm" not in sys.modules
with ServerThread(config):
    print("imported at start-up" if "litellm" in sys.modules else "not imported")
"""


def test_a_server_with_litellm_providers_imports_litellm_before_serving():
    """Its ~3 s import would otherwise stall the event loop inside the first request."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", _STARTUP_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert "imported at start-up" in done.stdout, done.stdout + done.stderr


def test_an_upstream_client_error_keeps_its_code_and_param_through_litellm(
    litellm_server, fresh_backend
):
    """LiteLLM's BadRequestError became `{"message": "litellm.BadRequestError: ...", "code":
    null}`: a client branching on `code` (`context_length_exceeded`, Azure's `content_filter`)
    could not; the direct relay passed the upstream's body as it was."""
    fresh_backend.fail(
        status=400,
        times=None,
        message="This model's maximum context length is 8192 tokens.",
        code="context_length_exceeded",
        param="messages",
    )
    client = openai.OpenAI(base_url=litellm_server.base_url, api_key="x", max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="router-test_keyword-0.5", messages=[{"role": "user", "content": "hi"}]
        )
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "messages")
    assert caught.value.body["message"] == "This model's maximum context length is 8192 tokens."
