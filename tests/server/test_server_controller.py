"""`serve --strong-share`: a strong-share controller per router for `router-<router>` ids.

The controlled ids route as `RouteLLMChat(controller=...)` does (each request at the threshold
in force when it is scored, its score observed after, a batch's requests in order); ids with a
threshold keep its fixed meaning and are not observed; the state survives a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Sequence

import httpx
import numpy as np
import openai
import pytest

from routellm_lc import RouteLLMChat
from routellm_lc.budget import StrongShareController
from routellm_lc.cli import main
from routellm_lc.routers.base import Router, register_router
from routellm_lc.server.config import ServerConfig, ServerConfigError
from routellm_lc.server.routing import RoutingService

STRONG = "openai/strong-model"  # as conftest.py's server config
WEAK = "openai/weak-model"

TARGET = 0.3


def _hash_score(prompt: str) -> float:
    digest = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@register_router("test_share_hash")
class ShareHashRouter(Router):
    """A deterministic score in [0, 1) from the prompt's hash (spread over the whole range)."""

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.array([_hash_score(p) for p in prompts])


@register_router("test_share_slow")
class ShareSlowRouter(Router):
    """Hash scores after 2 ms per call (so it scores in the worker thread and batches); records
    the prompts in the order it scored them, and each batch's size."""

    def __init__(self) -> None:
        self.scored: list[str] = []
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        time.sleep(0.002)
        with self._lock:
            self.scored += prompts
            self.batches.append(len(prompts))
        return np.array([_hash_score(p) for p in prompts])


def _prompts(n: int, tag: str = "") -> list[str]:
    return [
        f"question {tag}{i}: how would you approach problem {i * 7919 % 1000}?" for i in range(n)
    ]


def _ask(client: httpx.Client, model: str, prompt: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response


def _gauges(server, name: str) -> dict[str, float]:
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            found[labels[len(name) + 1 : -1]] = float(value)
    return found


def _chat(router: str, controller: StrongShareController) -> RouteLLMChat:
    return RouteLLMChat(
        router=router, controller=controller, strong=STRONG, weak=WEAK, api_key="unused"
    )


def test_controlled_ids_hold_the_target_share_and_fixed_ids_are_unaffected(start_server):
    server = start_server(routers=["test_share_hash"], strong_share=TARGET, threshold=0.5)
    chat = _chat("test_share_hash", StrongShareController(TARGET, initial_threshold=0.5))
    controlled_routes, fixed_routes = [], []
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for index, prompt in enumerate(_prompts(400)):
            raw = _ask(client, "router-test_share_hash", prompt)
            expected = chat.decide([prompt])[0]  # the same controller, the same sequence
            assert float(raw.headers["x-routellm-score"]) == expected.score
            assert float(raw.headers["x-routellm-threshold"]) == expected.threshold
            assert raw.headers["x-routellm-route"] == expected.route
            assert raw.headers["x-routellm-model"] == expected.model
            controlled_routes.append(expected.route)
            if index % 3 == 0:  # a fixed threshold in between: RouteLLM's meaning, not observed
                fixed = _ask(client, "router-test_share_hash-0.5", f"fixed {prompt}")
                score = float(fixed.headers["x-routellm-score"])
                assert float(fixed.headers["x-routellm-threshold"]) == 0.5
                assert fixed.headers["x-routellm-route"] == ("strong" if score >= 0.5 else "weak")
                fixed_routes.append(fixed.headers["x-routellm-route"])
    after_warmup = controlled_routes[100:]
    share = after_warmup.count("strong") / len(after_warmup)
    assert abs(share - TARGET) < 0.06, share
    # the threshold moved off its start, and the controller counted the controlled calls only
    state = chat.controller.state()
    assert state.observed == 400 and state.threshold != 0.5
    assert _gauges(server, "routellm_threshold") == {'router="test_share_hash"': state.threshold}
    shares = _gauges(server, "routellm_controller_strong_share")
    assert shares == {'router="test_share_hash"': state.strong_share_window}
    # requests are counted per policy: the controlled ids' share is readable from the counter
    counted = _gauges(server, "routellm_requests_total")
    for policy, routes in (("controller", controlled_routes), ("fixed", fixed_routes)):
        for route in ("strong", "weak"):
            labels = f'router="test_share_hash",policy="{policy}",route="{route}",status="200"'
            assert counted.get(labels, 0) == routes.count(route)


def test_batched_requests_get_the_threshold_in_force_in_arrival_order(start_server):
    server = start_server(routers=["test_share_slow"], strong_share=TARGET, threshold=0.5)
    router = server.app.state.routellm.routing.slots["test_share_slow"].router
    router.scored.clear()
    router.batches.clear()  # start-up's warm-up calls are not requests
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for prompt in _prompts(60, "seq"):  # past the controller's warm-up (50 scores)
            _ask(client, "router-test_share_slow", prompt)

    async def burst() -> list:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="x", max_retries=0
        ) as client:
            return await asyncio.gather(
                *(
                    client.chat.completions.with_raw_response.create(
                        model="router-test_share_slow",
                        messages=[{"role": "user", "content": p}],
                    )
                    for p in _prompts(48, "burst")
                )
            )

    responses = asyncio.run(burst())
    assert max(router.batches) > 1  # some requests were scored together
    # replayed in the order the router scored them, the controller gives every request the
    # threshold it got from the server
    replay = StrongShareController(TARGET, initial_threshold=0.5)
    in_force = {}
    for prompt in router.scored:
        in_force[prompt] = replay.threshold()
        replay.observe([_hash_score(prompt)])
    assert len(router.scored) == 108
    for prompt, raw in zip(_prompts(48, "burst"), responses, strict=True):
        threshold = float(raw.headers["x-routellm-threshold"])
        assert threshold == in_force[prompt]
        strong = _hash_score(prompt) >= threshold
        assert raw.headers["x-routellm-route"] == ("strong" if strong else "weak")
    assert len(set(in_force.values())) > 3  # the threshold moved during the burst


def test_controller_state_survives_a_restart(start_server, tmp_path):
    path = tmp_path / "state" / "controllers.json"
    first = start_server(
        routers=["test_share_hash", "random"], strong_share=TARGET, controller_state=str(path)
    )
    with httpx.Client(base_url=first.base_url, timeout=10) as client:
        for prompt in _prompts(80, "before"):
            _ask(client, "router-test_share_hash", prompt)
    threshold = _gauges(first, "routellm_threshold")['router="test_share_hash"']
    share = _gauges(first, "routellm_controller_strong_share")['router="test_share_hash"']
    assert threshold != 0.5
    first.stop()

    saved = json.loads(path.read_text())
    assert set(saved) == {"test_share_hash", "random"}
    assert saved["test_share_hash"]["observed"] == 80
    assert saved["test_share_hash"]["threshold"] == threshold
    assert saved["random"]["observed"] == 0
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left

    second = start_server(
        routers=["test_share_hash", "random"], strong_share=TARGET, controller_state=str(path)
    )
    assert _gauges(second, "routellm_threshold")['router="test_share_hash"'] == threshold
    assert _gauges(second, "routellm_controller_strong_share")['router="test_share_hash"'] == share
    with httpx.Client(base_url=second.base_url, timeout=10) as client:
        raw = _ask(client, "router-test_share_hash", "the first question after the restart")
    assert float(raw.headers["x-routellm-threshold"]) == threshold  # not the initial 0.5
    second.stop()
    assert json.loads(path.read_text())["test_share_hash"]["observed"] == 81


def test_a_state_file_names_its_problem_at_start_up(tmp_path):
    path = tmp_path / "state.json"

    def load() -> RoutingService:
        routing = RoutingService(
            ["test_share_hash"], {}, STRONG, WEAK, 0.5, strong_share=0.3, controller_state=path
        )
        routing.load()
        return routing

    for content, message in [
        ("{not json", "Cannot read the controller state"),
        ("[1, 2]", "must map router names"),
        ('{"test_share_hash": {"scores": [2.0]}}', "'test_share_hash' is invalid.*in \\[0, 1\\]"),
        ('{"test_share_hash": 3}', "'test_share_hash' is invalid"),
    ]:
        path.write_text(content)
        with pytest.raises(ServerConfigError, match=message):
            load()
    # a router not served now keeps its saved state in the file
    path.write_text(json.dumps({"gone": {"threshold": 0.2, "observed": 1, "scores": [0.2]}}))
    routing = load()
    routing.save_controller_state()
    assert set(json.loads(path.read_text())) == {"gone", "test_share_hash"}


def test_models_lists_the_controlled_ids(start_server):
    server = start_server(routers=["test_share_hash", "random"], strong_share=0.2)
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["router-test_share_hash", "router-random"]
    assert client.models.retrieve("router-test_share_hash").id == "router-test_share_hash"


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.2, float("nan")])
def test_a_share_outside_0_1_is_refused_at_start_up(share, capsys):
    with pytest.raises(ServerConfigError, match="strong_share must be strictly between 0 and 1"):
        ServerConfig(routers=["random"], strong_share=share)
    code = main(["serve", "--routers", "random", "--port", "0", "--strong-share", str(share)])
    assert code == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_strong_share_settings_are_checked(tmp_path):
    with pytest.raises(ServerConfigError, match="strong_share must be a number"):
        ServerConfig(routers=["random"], strong_share="0.3")
    with pytest.raises(ServerConfigError, match="set strong_share"):
        ServerConfig(routers=["random"], controller_state="state.json")
    config_file = tmp_path / "server.yaml"
    config_file.write_text("strong_share: 0.25\ncontroller_state: /tmp/s.json\n")
    config = ServerConfig.from_sources(config_file, env={})
    assert config.strong_share == 0.25 and config.controller_state == "/tmp/s.json"
    config = ServerConfig.from_sources(config_file, env={}, strong_share=0.4)
    assert config.strong_share == 0.4
    assert ServerConfig(routers=["random"]).strong_share is None  # off unless asked for
