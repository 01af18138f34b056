"""Configuration (flags, files, env), model-name parsing, the CLI parser, /metrics, OpenAPI."""

from __future__ import annotations

import json
import logging
import os
import time

import httpx
import numpy as np
import openai
import pytest

from routellm_lc.cli import build_parser
from routellm_lc.commands.serve import _checkpoints
from routellm_lc.routers.base import Router, register_router
from routellm_lc.server.config import ServerConfig, ServerConfigError
from routellm_lc.server.errors import APIError
from routellm_lc.server.forwarding import build_target
from routellm_lc.server.routing import parse_model_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("router-mf-0.11", ("mf", 0.11)),
        ("router-sw_ranking-1", ("sw_ranking", 1.0)),
        ("router-mf-1e-05", ("mf", 1e-05)),
        ("router-mf", ("mf", 0.25)),  # the server's default threshold
    ],
)
def test_model_names_parse_like_routellm(name, expected):
    assert parse_model_name(name, ["mf", "sw_ranking"], 0.25) == expected


@pytest.mark.parametrize(
    "name",
    ["mf-0.5", "router-bert-0.5", "router-mf-x", "router-mf--1", None,
     "router-mf-0.1_1", "router-mf- 0.2", "router-mf-+0.2", "router-mf-nan"],
)  # fmt: skip
def test_bad_model_names_raise_400(name):
    """400 for a malformed router model name; OpenAI's 404 for a name this server does not
    have (`mf-0.5`, a router it does not serve)."""
    with pytest.raises(APIError) as caught:
        parse_model_name(name, ["mf"], 0.5)
    assert caught.value.status == (404 if name in ("router-bert-0.5", "mf-0.5") else 400)
    assert caught.value.param == "model"
    if name in ("mf-0.5", None):
        assert "(served routers: mf)" in caught.value.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("router-keyword-router-0.5", ("keyword-router", 0.5)),
        ("router-keyword-router", ("keyword-router", 0.25)),
        ("router-keyword-router-1e-05", ("keyword-router", 1e-05)),
        ("router-keyword-0.5", ("keyword", 0.5)),
        ("router-keyword-router-x-1", ("keyword-router-x", 1.0)),
    ],
)
def test_router_names_with_hyphens_parse_as_the_longest_served_name(name, expected):
    served = ["keyword", "keyword-router", "keyword-router-x"]
    assert parse_model_name(name, served, 0.25) == expected


def test_an_unknown_hyphenated_router_is_named_in_the_404():
    with pytest.raises(APIError) as caught:
        parse_model_name("router-other-router-0.5", ["keyword-router"], 0.5)
    assert caught.value.status == 404 and "'other-router'" in caught.value.message


@register_router("test-hyphen-router")
class HyphenRouter(Router):
    def strong_win_rate(self, prompts):
        return np.array([0.9 if "hard" in p else 0.1 for p in prompts])


def test_a_hyphenated_router_is_served_under_the_ids_it_is_listed_as(start_server):
    server = start_server(routers=["test-hyphen-router", "test_keyword"])
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    ids = [model.id for model in client.models.list()]
    assert ids == ["router-test-hyphen-router-0.5", "router-test_keyword-0.5"]
    for model in [*ids, "router-test-hyphen-router", "router-test-hyphen-router-1e-1"]:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "a hard one"}]
        )
        router = "test-hyphen-router" if "hyphen" in model else "test_keyword"
        assert raw.headers["x-routellm-router"] == router
        assert raw.parse().choices[0].message.content.startswith("[strong-model]")
        assert client.models.retrieve(model).id == model


def test_config_file_yaml_and_json_with_flags_and_env_on_top(tmp_path):
    yaml_file = tmp_path / "server.yaml"
    yaml_file.write_text(
        "routers: [mf, random]\nstrong: openai/big\nweak: openai/small\n"
        "api_base: http://127.0.0.1:9/v1\nserver_keys: [file-key]\ntimeout: 12\n"
    )
    config = ServerConfig.from_sources(
        yaml_file, env={"ROUTELLM_LC_SERVER_KEYS": "env-key"}, port=7000
    )
    assert config.routers == ["mf", "random"] and config.port == 7000 and config.timeout == 12
    assert config.server_keys == ["file-key", "env-key"]
    json_file = tmp_path / "server.json"
    json_file.write_text(json.dumps({"routers": "random", "route_on": "conversation"}))
    config = ServerConfig.from_sources(json_file, env={}, routers=None)
    assert config.routers == ["random"] and config.route_on == "conversation"
    assert config.host == "127.0.0.1"  # local only unless told otherwise


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("routers: [mf]\nbogus: 1\n", "Unknown settings"),
        ("- a list\n", "must hold a mapping"),
        ("routers: [mf]\nthreshold: 3\n", "threshold"),
        ("routers: []\n", "at least one router"),
        ("routers: [mf]\nroute_on: everything\n", "route_on"),
        ("routers: [mf]\ntimeout: '30'\n", "timeout must be a number, got '30'"),
        ("routers: [mf]\nmax_body_bytes: '1000'\n", "max_body_bytes must be an integer"),
        ("routers: [mf]\nfallback: 'false'\n", "fallback must be true or false"),
        ("routers: [mf]\nlog_level: bogus\n", "log_level must be one of"),
        ("routers: [mf]\nserver_key: a\nserver_keys: [b]\n", "both server_key and server_keys"),
        ("routers: [mf]\ncheckpoint: mf\n", "checkpoint takes ROUTER=PATH"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(Exception, match=message):
        ServerConfig.from_sources(path, env={})


def test_config_files_take_the_flags_own_names_too(tmp_path):
    """README: a config file holds "the flags' names with underscores", so `server_key`,
    `checkpoint` and `no_fallback` (the flags) mean what `server_keys`, `checkpoints` and
    `fallback` (the fields) do."""
    path = tmp_path / "flags.yaml"
    path.write_text(
        "routers: [mf]\nserver_key: k1\ncheckpoint: [mf=/ckpt/mf]\nno_fallback: true\n"
        "log_level: INFO\n"
    )
    config = ServerConfig.from_sources(path, env={})
    assert config.server_keys == ["k1"] and config.checkpoints == {"mf": "/ckpt/mf"}
    assert config.fallback is False and config.log_level == "info"


def test_cli_log_level_is_checked(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--log-level", "bogus"])
    assert exited.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    assert build_parser().parse_args(["serve", "--log-level", "INFO"]).log_level == "info"


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ServerConfigError, match="Cannot read"):
        ServerConfig.from_sources(tmp_path / "absent.yaml", env={})


def test_cli_serve_flags():
    args = build_parser().parse_args(
        ["serve", "--routers", "mf", "random", "--strong", "openai/a", "--weak", "openai/b",
         "--api-base", "http://x/v1", "--server-key", "k1", "--server-key", "k2",
         "--checkpoint", "mf=/tmp/ckpt", "--timeout", "3", "--no-fallback"]
    )  # fmt: skip
    assert args.routers == ["mf", "random"] and args.server_keys == ["k1", "k2"]
    assert args.fallback is False and args.timeout == 3.0 and args.host is None
    assert _checkpoints(args.checkpoint) == {"mf": "/tmp/ckpt"}
    with pytest.raises(ServerConfigError):
        _checkpoints(["mf"])


def test_openai_models_are_relayed_directly_others_through_litellm():
    direct = build_target("openai/gpt-4o", "http://h:1/v1/", "k")
    assert (direct.url, direct.wire_model) == ("http://h:1/v1/chat/completions", "gpt-4o")
    assert build_target("my-model", "http://h:1/v1", None).url == "http://h:1/v1/chat/completions"
    assert build_target("anthropic/claude-3-5-sonnet-latest", None, None).url is None
    assert build_target("openai/gpt-4o", "http://h:1/v1", "k", forwarding="litellm").url is None


def test_metrics_count_routes_statuses_and_routing_latency(start_server):
    server = start_server()
    root = server.base_url.removesuffix("/v1")
    for content in ("hard one", "easy one", "easy two"):
        body = {
            "model": "router-test_keyword-0.5",
            "messages": [{"role": "user", "content": content}],
        }
        assert httpx.post(f"{server.base_url}/chat/completions", json=body).status_code == 200
    httpx.post(f"{server.base_url}/chat/completions", json={"model": "router-x-1"})
    text = httpx.get(f"{root}/metrics").text
    assert (
        'routellm_requests_total{router="test_keyword",policy="fixed",route="strong",status="200"} 1'
        in text
    )
    assert (
        'routellm_requests_total{router="test_keyword",policy="fixed",route="weak",status="200"} 2'
        in text
    )
    assert (
        'routellm_requests_total{router="none",policy="none",route="none",status="400"} 1' in text
    )
    assert 'routellm_routing_seconds_count{router="test_keyword"} 3' in text
    assert 'routellm_errors_total{kind="invalid_request"} 1' in text
    assert "# TYPE routellm_upstream_seconds histogram" in text


def test_openapi_declares_the_request_and_error_models(server):
    root = server.base_url.removesuffix("/v1")
    schema = httpx.get(f"{root}/openapi.json").json()
    post = schema["paths"]["/v1/chat/completions"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    request_schema = schema["components"]["schemas"][name]
    assert {"model", "messages", "tools", "tool_choice", "stream"} <= set(
        request_schema["properties"]
    )
    for status in ("400", "401", "404", "413", "429", "502", "504"):
        assert post["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorResponse"
        )
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_health(server):
    health = httpx.get(server.base_url.removesuffix("/v1") + "/health").json()
    assert health == {
        "status": "ok",
        "routers": ["test_keyword", "random"],
        "strong": "openai/strong-model",
        "weak": "openai/weak-model",
    }


def test_health_answers_head_too(server):
    """Load balancers and uptime checks often probe with HEAD."""
    response = httpx.head(server.base_url.removesuffix("/v1") + "/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json" and response.content == b""


def test_access_log_logs_every_request_at_the_default_level(start_server, caplog):
    """`--access-log` alone (log level warning) must log requests: uvicorn logs them at INFO."""
    server = start_server(access_log=True)  # (re)configures uvicorn's loggers
    assert server.config.log_level == "warning"
    access = logging.getLogger("uvicorn.access")
    access.addHandler(caplog.handler)  # uvicorn's access logger does not propagate
    try:
        httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=5)
        deadline = time.monotonic() + 5  # the line is written just after the response
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        access.removeHandler(caplog.handler)
    assert any("GET /health" in r.getMessage() for r in caplog.records)


def test_serve_leaves_the_hub_settings_to_the_user(monkeypatch):
    """`serve` loads checkpoints like every other command: a Hub id downloads unless the user
    set HF_HUB_OFFLINE (it used to force offline mode, so `--checkpoint bert=<hub id>` failed
    with advice to unset a variable the user never set)."""
    import routellm_lc.server.runner as runner

    seen = {}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(runner, "serve", lambda config, **_: seen.update(os.environ))
    args = build_parser().parse_args(["serve", "--routers", "random", "--port", "0"])
    assert args.func(args) == 0
    assert seen and "HF_HUB_OFFLINE" not in seen


def test_serve_takes_connections_from_the_moment_it_announces_its_url(monkeypatch):
    """A client that connects on the announcement waits for the app's start-up (LiteLLM's
    import takes seconds), rather than being refused."""
    import socket

    import uvicorn

    from routellm_lc.server import runner

    connected = []

    def run(self, sockets=None):  # before uvicorn's loop starts: nothing accepts yet
        port = sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            connected.append(port)
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    runner.serve(ServerConfig(routers=["random"], port=0), announce=lambda url: None)
    assert connected


def test_serve_announces_the_port_it_bound_after_loading_its_routers(monkeypatch):
    import numpy as np
    import uvicorn

    from routellm_lc.errors import RouterOutputError
    from routellm_lc.routers import Router, register_router
    from routellm_lc.server import runner

    served = {}

    def run(self, sockets=None):  # stands in for the blocking loop: records what it was given
        served["port"] = sockets[0].getsockname()[1]
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    announced = []
    runner.serve(ServerConfig(routers=["random"], port=0), announce=announced.append)
    assert served["port"] > 0
    assert announced == [f"http://127.0.0.1:{served['port']}/v1"]

    @register_router("test_config_nan")
    class NaNRouter(Router):
        def strong_win_rate(self, prompts):
            return np.full(len(prompts), np.nan)

    served.clear()
    with pytest.raises(RouterOutputError, match="not win rates"):
        runner.serve(ServerConfig(routers=["test_config_nan"], port=0), announce=announced.append)
    assert len(announced) == 1 and not served  # a broken router: nothing bound or announced


def test_passthrough_fields_from_flags_and_config_files(tmp_path):
    from routellm_lc.server.config import ServerConfig

    assert ServerConfig().passthrough_fields == ["top_k"]
    file = tmp_path / "server.yaml"
    file.write_text("passthrough_field: min_p\n")
    assert ServerConfig.from_sources(file).passthrough_fields == ["min_p"]
    file.write_text("passthrough_fields: [top_k, min_p]\n")
    assert ServerConfig.from_sources(file).passthrough_fields == ["top_k", "min_p"]
    # the flag adds one, to the file's fields or to the default
    flags = ServerConfig.from_sources(file, passthrough_fields=["repetition_penalty"])
    assert flags.passthrough_fields == ["top_k", "min_p", "repetition_penalty"]
    alone = ServerConfig.from_sources(None, passthrough_fields=["min_p", "top_k"])
    assert alone.passthrough_fields == ["top_k", "min_p"]


def test_langchain_spelled_models_are_taken_as_litellm_strings():
    config = ServerConfig(strong="openai:gpt-4o", weak="ollama:llama3:8b")
    assert (config.strong, config.weak) == ("openai/gpt-4o", "ollama/llama3:8b")


# -- RouteLLM's own spellings ---------------------------------------------------------------------
ROUTELLM_CONFIG_EXAMPLE = """\
sw_ranking:
  arena_battle_datasets:
    - lmsys/lmsys-arena-human-preference-55k
    - routellm/gpt4_judge_battles
  arena_embedding_datasets:
    - routellm/arena_battles_embeddings
    - routellm/gpt4_judge_battles_embeddings
causal_llm:
  checkpoint_path: routellm/causal_llm_gpt4_augmented
bert:
  checkpoint_path: routellm/bert_gpt4_augmented
mf:
  checkpoint_path: routellm/mf_gpt4_augmented
"""


def test_routellm_server_command_runs_as_written(monkeypatch, tmp_path):
    """`python -m routellm.openai_server --routers mf --config config.example.yaml
    --strong-model ... --weak-model ... --base-url ... --api-key ...`, with `routellm-lc serve`
    in front: the same models, endpoint and checkpoints (RouteLLM's config file read as
    checkpoints)."""
    import routellm_lc.server.runner as runner

    (tmp_path / "config.example.yaml").write_text(ROUTELLM_CONFIG_EXAMPLE)
    seen = {}
    monkeypatch.setattr(runner, "serve", lambda config, **_: seen.update(config=config))
    args = build_parser().parse_args(
        ["serve", "--routers", "mf", "--config", str(tmp_path / "config.example.yaml"),
         "--strong-model", "gpt-4-1106-preview", "--weak-model", "openai/mixtral",
         "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "--port", "6060"]
    )  # fmt: skip
    assert args.func(args) == 0
    config = seen["config"]
    assert (config.strong, config.weak) == ("gpt-4-1106-preview", "openai/mixtral")
    assert config.api_base == "http://127.0.0.1:9/v1" and config.api_key == "k"
    assert config.routers == ["mf"] and config.port == 6060
    assert config.checkpoints == {
        "causal_llm": "routellm/causal_llm_gpt4_augmented",
        "bert": "routellm/bert_gpt4_augmented",
        "mf": "routellm/mf_gpt4_augmented",
    }


def test_routellm_server_flags_verbose_and_workers(monkeypatch, capsys):
    import routellm_lc.server.runner as runner

    seen = {}
    monkeypatch.setattr(runner, "serve", lambda config, **_: seen.update(config=config))
    args = build_parser().parse_args(
        ["serve", "--routers", "random", "--verbose", "--workers", "4"]
    )
    assert args.func(args) == 0
    assert seen["config"].access_log is True
    assert "note: --workers 4 is RouteLLM's; routellm-lc serves from one process" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("keys", [[""], ["  "], ["good", ""]])
def test_an_empty_server_key_is_refused(keys):
    """`--server-key "$KEY"` with KEY unset: the empty key matched a request with no key, so
    auth was off while the start-up line said "auth 1 key(s)"."""
    with pytest.raises(ServerConfigError, match="A server key is empty"):
        ServerConfig(routers=["random"], server_keys=keys)


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_a_set_but_empty_server_keys_variable_or_field_is_refused(tmp_path, value):
    """`ROUTELLM_LC_SERVER_KEYS="$KEYS"` (or a config file's `server_keys: "${KEYS}"`) with
    KEYS unset served without auth."""
    with pytest.raises(ServerConfigError, match="ROUTELLM_LC_SERVER_KEYS is set but holds no"):
        ServerConfig.from_sources(env={"ROUTELLM_LC_SERVER_KEYS": value}, routers=["random"])
    config = tmp_path / "server.yaml"
    config.write_text(f"routers: [random]\nserver_keys: {json.dumps(value)}\n")
    with pytest.raises(ServerConfigError, match="server_keys in the config file is set but"):
        ServerConfig.from_sources(config, env={})
    for empty in ("", "[]", "null"):  # `server_keys: ${KEYS}` unquoted, KEYS unset
        config.write_text(f"routers: [random]\nserver_keys: {empty}\n")
        with pytest.raises(ServerConfigError, match="server_keys in the config file is set"):
            ServerConfig.from_sources(config, env={})
    # keys from another source: the empty one is no mistake that turns auth off
    cli = ServerConfig.from_sources(
        config, env={"ROUTELLM_LC_SERVER_KEYS": value}, server_keys=["cli-key"]
    )
    assert cli.server_keys == ["cli-key"]
    # unset, or left out: no auth, as documented; a key from either source is kept
    assert ServerConfig.from_sources(env={}, routers=["random"]).server_keys == []
    keys = ServerConfig.from_sources(env={"ROUTELLM_LC_SERVER_KEYS": "a, b"}, routers=["random"])
    assert keys.server_keys == ["a", "b"]


def test_server_keys_of_any_length_are_checked(start_server):
    """Keys are compared as SHA-256 digests (one length), so timing reveals no key's length."""
    server = start_server(server_keys=["short", "a-much-longer-server-key-0123456789"])
    url = f"{server.base_url}/models"
    for key, status in (("short", 200), ("a-much-longer-server-key-0123456789", 200),
                        ("shor", 401), ("x" * 35, 401), (None, 401)):  # fmt: skip
        headers = {"authorization": f"Bearer {key}"} if key is not None else {}
        assert httpx.get(url, headers=headers).status_code == status, key


def test_graceful_timeout_reaches_uvicorn(tmp_path):
    from routellm_lc.server.runner import _uvicorn_config

    args = build_parser().parse_args(["serve", "--graceful-timeout", "20"])
    assert args.graceful_timeout == 20.0
    config = ServerConfig(routers=["random"], graceful_timeout=20.0)
    assert _uvicorn_config(object(), config).timeout_graceful_shutdown == 20.0
    assert (
        _uvicorn_config(object(), ServerConfig(routers=["random"])).timeout_graceful_shutdown
        is None
    )


def test_a_port_in_use_is_one_clear_error():
    import socket

    from routellm_lc.server import runner

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerConfigError, match=f"Cannot listen on 127.0.0.1:{port}"):
            runner.serve(ServerConfig(routers=["random"], port=port, log_level="critical"))


def test_log_level_trace_shows_the_servers_own_info_lines(monkeypatch):
    import logging

    import routellm_lc.server.runner as runner

    seen = {}
    monkeypatch.setattr(runner, "serve", lambda config, **_: None)
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    args = build_parser().parse_args(["serve", "--routers", "random", "--log-level", "trace"])
    assert args.func(args) == 0
    assert seen["level"] == 5 < logging.INFO


def test_checkpoint_flags_add_to_the_config_files_checkpoints(tmp_path):
    """`--config config.example.yaml --checkpoint bert=DIR` used to drop the file's mf."""
    (tmp_path / "c.yaml").write_text(ROUTELLM_CONFIG_EXAMPLE)
    config = ServerConfig.from_sources(
        tmp_path / "c.yaml", env={}, checkpoints={"bert": "/tmp/mybert"}
    )
    assert config.checkpoints == {
        "causal_llm": "routellm/causal_llm_gpt4_augmented",
        "bert": "/tmp/mybert",
        "mf": "routellm/mf_gpt4_augmented",
    }


def test_a_routellm_config_with_settings_we_do_not_read_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("mf:\n  checkpoint_path: x\n  hidden_size: 128\n")
    with pytest.raises(ServerConfigError, match="hidden_size"):
        ServerConfig.from_sources(path, env={})
    path.write_text("mf:\n  checkpoint_path: x\nport: 1\n")  # a settings file after all
    with pytest.raises(ServerConfigError, match="Unknown settings.*mf"):
        ServerConfig.from_sources(path, env={})


def test_long_model_names_are_refused_before_any_regex(start_server):
    """A 32 KB model name of digits took the old decimal regex 15 s (quadratic), with the
    event loop blocked: /health waited. Names are capped at 256 characters."""
    from routellm_lc.model_names import _DECIMAL, MAX_MODEL_NAME_CHARS

    for ok in ("0.5", "1e-05", ".5", "1.", "0", "0.11593", "1E+2"):
        assert _DECIMAL.fullmatch(ok), ok
    for bad in ("0.1_1", " 0.2", "+0.2", "nan", "1..2", ".", "1e", "e5"):
        assert not _DECIMAL.fullmatch(bad), bad
    name = "router-test_keyword-" + "1" * 32_000 + "x"
    with pytest.raises(APIError) as caught:
        parse_model_name(name, ["test_keyword"], 0.5)
    assert caught.value.status == 400 and f"at most {MAX_MODEL_NAME_CHARS}" in caught.value.message
    server = start_server()
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_model"
