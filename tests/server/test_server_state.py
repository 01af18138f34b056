"""The controllers' state file while serving, and start-up checks that used to pass a broken
setting on to a crashed lifespan, a lost state or a wrong cost.

Saved every `SAVE_EVERY_S` seconds when it changed (not only on a shutdown that may never come),
re-reading the entries of routers another server sharing the file serves; its folder checked at
start-up; a LiteLLM option given as a passthrough field refused before `serve` announces its
URL; config types, saved states and nested usage counts checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import httpx
import numpy as np
import pytest

from routellm_lc.budget import StrongShareController
from routellm_lc.cli import main
from routellm_lc.costs import Price, call_cost
from routellm_lc.routers.base import Router, register_router
from routellm_lc.server import routing as routing_module
from routellm_lc.server.accounting import Accounting
from routellm_lc.server.config import ServerConfig, ServerConfigError
from routellm_lc.server.metrics import Metrics
from routellm_lc.server.routing import RoutingService

STRONG = "openai/strong-model"  # as conftest.py's server config
WEAK = "openai/weak-model"


@register_router("test_state_fixed")
class FixedRouter(Router):
    """0.25 for every prompt."""

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.full(len(prompts), 0.25)


def _service(path, router: str = "test_state_fixed") -> RoutingService:
    routing = RoutingService(
        [router], {}, STRONG, WEAK, 0.5, strong_share=0.3, controller_state=path
    )
    routing.load()
    return routing


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _observed(path, router: str = "test_state_fixed") -> int | None:
    try:
        return json.loads(path.read_text())[router]["observed"]
    except (OSError, ValueError, KeyError):
        return None


# -- saved while serving ----------------------------------------------------------------------


def test_the_state_is_saved_while_serving_when_it_changed(start_server, tmp_path, monkeypatch):
    """A server killed before its lifespan shutdown (a second Ctrl+C while connections drain,
    `docker stop`'s grace period, SIGKILL) keeps what it adapted up to the last save."""
    monkeypatch.setattr(routing_module, "SAVE_EVERY_S", 0.05)
    path = tmp_path / "controllers.json"
    server = start_server(routers=["test_state_fixed"], strong_share=0.3, controller_state=path)
    body = {"model": "router-test_state_fixed", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(5):
            assert client.post("/chat/completions", json=body).status_code == 200
        assert _wait_for(lambda: _observed(path) == 5)  # the server still running
        path.unlink()
        time.sleep(0.3)  # several periods, nothing routed: nothing to write
        assert not path.exists()
        assert client.post("/chat/completions", json=body).status_code == 200
        assert _wait_for(lambda: _observed(path) == 6)
    assert not [p for p in tmp_path.iterdir() if p != path]  # no temporary file left
    server.stop()
    assert _observed(path) == 6


def test_a_failing_periodic_save_is_logged_and_retried(tmp_path, monkeypatch, caplog):
    import asyncio

    monkeypatch.setattr(routing_module, "SAVE_EVERY_S", 0.01)
    path = tmp_path / "controllers.json"
    routing = _service(path)
    routing.slots["test_state_fixed"].controller.observe([0.4])
    calls = []

    def save(*, only_if_changed):
        calls.append(only_if_changed)
        if len(calls) < 3:
            raise OSError(28, "No space left on device")
        return path

    monkeypatch.setattr(routing, "save_controller_state", save)

    async def run() -> None:
        task = asyncio.create_task(routing.save_periodically())
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run())
    assert all(calls)  # only when changed
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len([w for w in warnings if "No space left" in w]) == 1  # once, not every period
    assert any("saved to" in w and "again" in w for w in warnings)
    routing.close()


# -- servers sharing one state file -------------------------------------------------------------


def test_servers_sharing_a_state_file_keep_each_others_latest_entries(tmp_path):
    path = tmp_path / "shared.json"
    first = _service(path, "random")
    first.slots["random"].controller.observe([0.1] * 60)
    first.save_controller_state()
    second = _service(path)  # loads first's entry as it was then
    first.slots["random"].controller.observe([0.9] * 40)
    first.save_controller_state()
    latest = json.loads(path.read_text())["random"]
    assert latest["observed"] == 100
    second.slots["test_state_fixed"].controller.observe([0.3] * 7)
    second.save_controller_state()  # e.g. the last to stop
    saved = json.loads(path.read_text())
    assert saved["random"] == latest  # not the stale copy second loaded at start-up
    assert saved["test_state_fixed"]["observed"] == 7
    first.save_controller_state()
    assert json.loads(path.read_text())["test_state_fixed"]["observed"] == 7
    # a third server starting after both never saw a stale copy either
    third = _service(path, "random")
    assert third.slots["random"].controller.state().to_dict() == latest
    for routing in (first, second, third):
        routing.close()


def test_a_planted_symlink_at_the_old_temporary_name_is_not_written_through(tmp_path):
    """The state was written to `.<name>.<pid>.tmp` next to it: in a shared folder, a symlink
    planted at that predictable name made the save overwrite the link's target."""
    import os

    path = tmp_path / "state.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    service = _service(path, "random")
    os.symlink(victim, tmp_path / f".state.json.{os.getpid()}.tmp")  # planted while serving
    service.slots["random"].controller.observe([0.2] * 5)
    service.save_controller_state()
    assert victim.read_text() == "keep me"
    assert json.loads(path.read_text())["random"]["observed"] == 5
    service.close()


def test_an_unreadable_state_file_at_save_keeps_the_entries_last_read(tmp_path):
    path = tmp_path / "shared.json"
    other = {"gone": {"threshold": 0.2, "observed": 1, "scores": [0.2]}}
    path.write_text(json.dumps(other))
    routing = _service(path)
    path.write_text("{half written")
    routing.save_controller_state()
    assert json.loads(path.read_text())["gone"] == other["gone"]
    path.unlink()  # removed: the routers not served here are gone with it
    routing.save_controller_state()
    assert set(json.loads(path.read_text())) == {"test_state_fixed"}
    routing.close()


# -- the state file's folder ------------------------------------------------------------------


def test_a_state_file_that_cannot_be_written_fails_at_start_up(tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    for path, message in [
        (a_file / "state.json", "its folder .*not-a-folder cannot be created or written to"),
        (a_file / "sub" / "state.json", "cannot be created or written to"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(ServerConfigError, match=message):
            _service(path)
    missing = tmp_path / "new" / "folder" / "state.json"
    _service(missing).close()  # a missing folder is created, as saving would
    assert missing.parent.is_dir() and not list(missing.parent.iterdir())


def test_serve_refuses_an_unwritable_state_file_before_it_announces(tmp_path, monkeypatch, capsys):
    import uvicorn

    served = []

    def run(self, sockets=None):
        served.append(True)
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    args = ["serve", "--routers", "random", "--port", "0", "--strong-share", "0.3"]
    code = main([*args, "--controller-state", str(a_file / "state.json")])
    out, err = capsys.readouterr()
    assert code == 2 and not served
    assert "routellm-lc serve: error: Cannot save the controller state" in err
    assert "routellm-lc serve:" not in out and "Traceback" not in err


# -- passthrough fields -------------------------------------------------------------------------


def test_a_litellm_option_as_passthrough_field_fails_before_serve_announces(monkeypatch, capsys):
    import uvicorn

    served = []

    def run(self, sockets=None):
        served.append(True)
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    code = main(
        ["serve", "--routers", "random", "--port", "0", "--strong", "anthropic/claude-3-5-sonnet",
         "--weak", "openai/gpt-4o-mini", "--passthrough-field", "api_base"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and not served
    assert "routellm-lc serve: error: passthrough_fields ['api_base'] are LiteLLM's own" in err
    assert "routellm-lc serve:" not in out and "Traceback" not in err


@pytest.mark.parametrize(
    "text",
    ["passthrough_fields: null", "passthrough_fields: {top_k: 1}", "passthrough_fields: [1]",
     "passthrough_fields: 5", "passthrough_field: [top_k, {a: 1}]"],
)  # fmt: skip
def test_passthrough_fields_of_the_wrong_type_are_config_errors(tmp_path, text):
    file = tmp_path / "server.yaml"
    file.write_text(text + "\n")
    with pytest.raises(ServerConfigError, match="passthrough_fields must be a list of strings"):
        ServerConfig.from_sources(file, env={})


@pytest.mark.parametrize("value", [None, {"top_k": 1}, [1], ["top_k", None], 3])
def test_passthrough_fields_are_type_checked(value):
    with pytest.raises(ServerConfigError, match="passthrough_fields must be a list of strings"):
        ServerConfig(routers=["random"], passthrough_fields=value)
    with pytest.raises(ServerConfigError, match="must be field names"):
        ServerConfig(routers=["random"], passthrough_fields=["top_k", ""])
    assert ServerConfig(routers=["random"], passthrough_fields="top_k").passthrough_fields == [
        "top_k"
    ]
    assert ServerConfig(routers=["random"], passthrough_fields=[]).passthrough_fields == []


# -- saved states -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "observed", [float("inf"), float("-inf"), float("nan"), 1.5, "5", True, None, [3]]
)
def test_load_state_refuses_an_observed_count_that_is_not_a_count(observed):
    controller = StrongShareController(0.3)
    with pytest.raises(ValueError, match="observed must be a whole number"):
        controller.load_state({"observed": observed, "scores": [0.5]})
    controller.load_state({"observed": 7.0, "scores": [0.5]})  # JSON may write 7 as 7.0
    assert controller.state().observed == 7
    controller.load_state({"observed": np.int64(3), "scores": [0.5]})
    assert controller.state().observed == 3


def test_a_state_file_with_an_infinite_count_is_a_clear_error(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"test_state_fixed": {"observed": Infinity, "scores": [0.5]}}')
    with pytest.raises(ServerConfigError, match="'test_state_fixed' is invalid: observed must"):
        _service(path)


# -- nested usage counts ------------------------------------------------------------------------

PRICES = {
    STRONG: Price.per_million(10.0, 30.0, 1.0),
    WEAK: Price.per_million(0.5, 1.5, 0.05),
}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 100}


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt_tokens_details": {"cached_tokens": -100}},
        {"prompt_tokens_details": {"cached_tokens": 1.5}},
        {"prompt_tokens_details": {"cached_tokens": "100"}},
        {"prompt_tokens_details": {"cached_tokens": True}},
        {"prompt_tokens_details": "cached"},
        {"completion_tokens_details": {"reasoning_tokens": -50}},
        {"input_token_details": {"cache_creation": -1}},
        {"output_token_details": {"reasoning": float("inf")}},
        {"cache_read_input_tokens": -10},
        {"input_tokens": -1000},
    ],
)
def test_negative_or_fractional_nested_counts_are_malformed_usage(extra):
    metrics = Metrics()
    accounting = Accounting(STRONG, [STRONG, WEAK], PRICES, metrics)
    accounting.record("r", WEAK, {**USAGE, **extra})
    assert metrics.errors["malformed_usage"] == 1
    assert not metrics.tokens and not metrics.cost and not metrics.strong_equivalent_cost


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"prompt_tokens_details": None, "completion_tokens_details": None},
        {"prompt_tokens_details": {"cached_tokens": None, "audio_tokens": None}},
        {"prompt_tokens_details": {"cached_tokens": 400, "cache_creation_token_details": {}}},
        {"completion_tokens_details": {"reasoning_tokens": 60, "audio_tokens": 0}},
    ],
)
def test_well_formed_nested_counts_are_priced_as_call_cost_prices_them(extra):
    metrics = Metrics()
    accounting = Accounting(STRONG, [STRONG, WEAK], PRICES, metrics)
    usage = {**USAGE, **extra}
    accounting.record("r", WEAK, usage)
    assert not metrics.errors
    assert metrics.tokens[(WEAK, "prompt")] == 1000
    assert metrics.cost[WEAK] == pytest.approx(call_cost(WEAK, usage, PRICES))
    assert metrics.strong_equivalent_cost["r"] == pytest.approx(call_cost(STRONG, usage, PRICES))
