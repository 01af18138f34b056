"""The server and RouteLLMChat decide identically; slow routers are batched off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from routellm_lc import RouteLLMChat
from routellm_lc.chat_model import shared_router
from routellm_lc.decision import decide
from routellm_lc.routers.base import Router, register_router

PROMPTS = [
    "What is 2 + 2?",
    "Prove that there are infinitely many primes.",
    "Write a haiku about the sea.",
    "Explain how a B-tree keeps itself balanced on insertion.",
    "hi",
    "Derive the closed form of the Fibonacci sequence.",
    "Which is larger, 9.11 or 9.9?",
    "Refactor this function to be tail recursive: def f(n): return 1 if n == 0 else n * f(n-1)",
]
MF_CHECKPOINT = Path(__file__).resolve().parents[2] / "routellm_lc" / "checkpoints" / "mf_default"


@register_router("test_hash")
class HashRouter(Router):
    """A deterministic score in [0, 1) from the prompt's hash (spread across thresholds)."""

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        digests = [hashlib.blake2b(p.encode(), digest_size=8).digest() for p in prompts]
        return np.array([int.from_bytes(d, "big") / 2**64 for d in digests])


@register_router("test_slow")
class SlowRouter(Router):
    """Takes 2 ms per call (whatever the batch size) and records each batch's size and thread."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        time.sleep(0.002)
        self.batches.append(len(prompts))
        self.threads.add(threading.current_thread().name)
        return np.array([min(len(p) / 100, 1.0) for p in prompts])


def routers_under_test() -> list:
    mf = pytest.param(
        "mf",
        marks=pytest.mark.skipif(
            not (MF_CHECKPOINT / "config.json").is_file(), reason="bundled mf checkpoint not built"
        ),
    )
    return ["test_hash", mf]


@pytest.mark.parametrize("router", routers_under_test())
@pytest.mark.parametrize("quantile", [0.25, 0.5, 0.75])
def test_server_and_routellm_chat_make_the_same_decisions(start_server, backend, router, quantile):
    server = start_server(routers=[router])
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    # a threshold inside the prompts' score range, so both routes are exercised
    scores = shared_router(router).strong_win_rate(PROMPTS)
    threshold_text = f"{np.quantile(scores, quantile):.6f}"
    chat = RouteLLMChat(
        router=router,
        threshold=float(threshold_text),
        strong="openai/strong-model",
        weak="openai/weak-model",
        api_base=backend.base_url,
        api_key="backend-key",
    )
    routes = set()
    for prompt in PROMPTS:
        raw = client.chat.completions.with_raw_response.create(
            model=f"router-{router}-{threshold_text}",
            messages=[{"role": "user", "content": prompt}],
        )
        message = chat.invoke(prompt)
        routing = message.response_metadata["routing"]
        assert float(raw.headers["x-routellm-score"]) == routing["score"]
        assert float(raw.headers["x-routellm-threshold"]) == routing["threshold"]
        assert raw.headers["x-routellm-model"] == routing["model"]
        assert raw.headers["x-routellm-route"] == routing["route"]
        assert raw.parse().model == message.response_metadata["model_name"].split("/")[-1]
        routes.add(routing["route"])
    assert routes == {"strong", "weak"}


def test_route_on_conversation_matches_routellm_chat(start_server, backend):
    server = start_server(routers=["test_hash"], route_on="conversation")
    chat = RouteLLMChat(
        router="test_hash",
        threshold=0.5,
        route_on="conversation",
        strong="openai/strong-model",
        weak="openai/weak-model",
        api_base=backend.base_url,
        api_key="k",
    )
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Write a sort in Python."},
        {"role": "assistant", "content": "sorted(xs)"},
        {"role": "user", "content": "and now in Rust?"},
    ]
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="router-test_hash-0.5", messages=messages
    )
    expected = chat.decide([[(m["role"], m["content"]) for m in messages]])[0]
    assert float(raw.headers["x-routellm-score"]) == expected.score


async def test_slow_router_scores_in_a_worker_thread_and_batches_concurrent_requests(
    start_server,
):
    server = start_server(routers=["test_slow"])
    router = shared_router("test_slow")
    router.batches.clear()
    router.threads.clear()  # start-up warm-up ran on the server thread
    prompts = [f"prompt number {i} " + "x" * (i * 7) for i in range(24)]
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        responses = await asyncio.gather(
            *(
                client.chat.completions.with_raw_response.create(
                    model="router-test_slow-0.5", messages=[{"role": "user", "content": p}]
                )
                for p in prompts
            )
        )
    assert router.threads == {"routellm-lc-routing_0"}  # never on the event loop's thread
    assert sum(router.batches) == len(prompts) and max(router.batches) > 1
    for prompt, raw in zip(prompts, responses, strict=True):
        (expected,) = decide(
            router,
            [prompt],
            0.5,
            strong_model="openai/strong-model",
            weak_model="openai/weak-model",
        )
        assert float(raw.headers["x-routellm-score"]) == expected.score
        assert raw.headers["x-routellm-model"] == expected.model


def test_a_router_whose_scores_are_not_win_rates_stops_the_server_starting():
    from routellm_lc.routers.base import RouterOutputError
    from routellm_lc.server.routing import RouterSlot

    class NaNRouter(Router):
        name = "nan_router"

        def strong_win_rate(self, prompts):
            return np.full(len(prompts), np.nan)

    slot = RouterSlot("nan_router", NaNRouter(), "strong", "weak", None)
    with pytest.raises(RouterOutputError, match="'nan_router'.*not win rates"):
        slot.warm_up()


def test_a_remote_embedder_failing_on_a_request_is_a_502_naming_it(start_server):
    """RouteLLM's own mf embeds with OpenAI's API: when that fails mid-service the request
    gets a 502 saying why, not a 500 internal error."""
    from routellm_lc.errors import EmbeddingError
    from routellm_lc.routers.base import register_router

    @register_router("test_remote_embedder")
    class RemoteEmbedderRouter(Router):
        def strong_win_rate(self, prompts):
            if any("outage" in p for p in prompts):
                raise EmbeddingError("embedder litellm:text-embedding-3-small failed (down)")
            return np.full(len(prompts), 0.4)

    server = start_server(routers=["test_remote_embedder"])
    body = {"model": "router-test_remote_embedder-0.5", "messages": [{"role": "user"}]}
    body["messages"][0]["content"] = "during the outage"
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "router_unavailable" and "text-embedding-3-small" in error["message"]
    body["messages"][0]["content"] = "after it"
    assert (
        httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10).status_code == 200
    )
