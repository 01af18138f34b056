"""Token and cost accounting in `/metrics`: usage from JSON answers and usage-carrying stream
events, priced per request with `costs.call_cost` (overrides for self-hosted models), the
all-strong counterfactual at the strong model's prices, unpriced models counted as such."""

from __future__ import annotations

import math

import httpx
import pytest

from routellm_lc.cli import build_parser
from routellm_lc.commands.serve import _prices
from routellm_lc.costs import Price, _price_map, call_cost
from routellm_lc.server.app import create_app
from routellm_lc.server.config import ServerConfig, ServerConfigError, parse_prices

STRONG = "openai/strong-model"  # as conftest.py's server config
WEAK = "openai/weak-model"
PRICES = {
    "strong-model": {"input_per_million": 10.0, "output_per_million": 30.0},
    "weak-model": {"input_per_million": 0.5, "output_per_million": 1.5},
}
OVERRIDES = {name: Price.per_million(p["input_per_million"], p["output_per_million"]) for name, p in PRICES.items()}  # fmt: skip
HARD = "a hard question about topology"  # test_keyword routes it strong
EASY = "an easy question about lunch"


def _metrics(server) -> dict[str, float]:
    """`/metrics`' samples as {'name{labels}': value}."""
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def _post(server, content: str, **extra) -> httpx.Response:
    body = {
        "model": "router-test_keyword-0.5",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response


def _stream_usage(response: httpx.Response) -> dict | None:
    import json

    usage = None
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[6:]).get("usage") or usage
    return usage


def test_json_answers_are_counted_and_priced_per_request(start_server, fresh_backend):
    server = start_server(prices=PRICES)
    weak_usage = _post(server, EASY).json()["usage"]
    strong_usage = _post(server, HARD + " " + "more words " * 20).json()["usage"]
    samples = _metrics(server)
    assert (
        samples['routellm_tokens_total{model="openai/weak-model",kind="prompt"}']
        == (weak_usage["prompt_tokens"])
    )
    assert (
        samples['routellm_tokens_total{model="openai/weak-model",kind="completion"}']
        == (weak_usage["completion_tokens"])
    )
    assert (
        samples['routellm_tokens_total{model="openai/strong-model",kind="prompt"}']
        == (strong_usage["prompt_tokens"])
    )
    weak_cost = call_cost(WEAK, weak_usage, OVERRIDES)
    strong_cost = call_cost(STRONG, strong_usage, OVERRIDES)
    assert weak_cost > 0 and strong_cost > 0
    assert samples['routellm_cost_usd_total{model="openai/weak-model"}'] == pytest.approx(weak_cost)
    assert samples['routellm_cost_usd_total{model="openai/strong-model"}'] == pytest.approx(
        strong_cost
    )
    # the all-strong counterfactual: the weak answer's usage at the strong model's prices
    counterfactual = call_cost(STRONG, weak_usage, OVERRIDES) + strong_cost
    assert counterfactual > weak_cost + strong_cost
    assert samples[
        'routellm_strong_equivalent_cost_usd_total{router="test_keyword"}'
    ] == pytest.approx(counterfactual)
    assert not [k for k in samples if k.startswith("routellm_unpriced_requests_total")]


def test_streams_with_usage_are_counted_and_streams_without_are_not(start_server, fresh_backend):
    server = start_server(prices=PRICES)
    _post(server, EASY, stream=True)  # no include_usage: nothing to count
    samples = _metrics(server)
    assert not [k for k in samples if k.startswith(("routellm_tokens", "routellm_cost"))]

    response = _post(server, EASY, stream=True, stream_options={"include_usage": True})
    usage = _stream_usage(response)
    assert usage and usage["completion_tokens"] > 0
    samples = _metrics(server)
    assert (
        samples['routellm_tokens_total{model="openai/weak-model",kind="prompt"}']
        == (usage["prompt_tokens"])
    )
    assert (
        samples['routellm_tokens_total{model="openai/weak-model",kind="completion"}']
        == (usage["completion_tokens"])
    )
    assert samples['routellm_cost_usd_total{model="openai/weak-model"}'] == pytest.approx(
        call_cost(WEAK, usage, OVERRIDES)
    )
    assert samples[
        'routellm_strong_equivalent_cost_usd_total{router="test_keyword"}'
    ] == pytest.approx(call_cost(STRONG, usage, OVERRIDES))


def test_cached_and_reasoning_tokens_and_tiers_are_priced_as_call_cost_prices_them(
    start_server, fresh_backend
):
    tiered = Price(
        1e-6,
        2e-6,
        cache_read=0.1e-6,
        reasoning=8e-6,
        above=((12, Price(4e-6, 9e-6, cache_read=0.4e-6, reasoning=20e-6)),),
    )
    server = start_server(prices={"weak-model": tiered, "strong-model": OVERRIDES["strong-model"]})
    fresh_backend.configure(
        usage_details={
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    )
    short = _post(server, "easy").json()["usage"]
    long = _post(server, "an easy question " + "with many words " * 10).json()["usage"]
    assert short["prompt_tokens"] <= 12 < long["prompt_tokens"]  # one per tier
    overrides = {"weak-model": tiered, "strong-model": OVERRIDES["strong-model"]}
    expected = call_cost(WEAK, short, overrides) + call_cost(WEAK, long, overrides)
    summed = {k: short[k] + long[k] for k in ("prompt_tokens", "completion_tokens")}
    assert expected != pytest.approx(call_cost(WEAK, summed, overrides))  # per request counts
    samples = _metrics(server)
    assert samples['routellm_cost_usd_total{model="openai/weak-model"}'] == pytest.approx(expected)


def test_unpriced_models_are_counted_as_such(start_server, fresh_backend):
    server = start_server(prices={"strong-model": PRICES["strong-model"]})
    usage = _post(server, EASY).json()["usage"]
    _post(server, HARD)
    samples = _metrics(server)
    assert samples['routellm_unpriced_requests_total{model="openai/weak-model"}'] == 1
    assert (
        samples['routellm_tokens_total{model="openai/weak-model",kind="prompt"}']
        == (usage["prompt_tokens"])
    )
    assert 'routellm_cost_usd_total{model="openai/weak-model"}' not in samples
    assert 'routellm_cost_usd_total{model="openai/strong-model"}' in samples
    assert 'routellm_unpriced_requests_total{model="openai/strong-model"}' not in samples


def test_fallback_answers_are_charged_to_the_model_that_answered(start_server, fresh_backend):
    server = start_server(prices=PRICES)
    fresh_backend.fail(status=503, times=None, model="strong-model")
    response = _post(server, HARD)
    assert response.headers["x-routellm-fallback-from"] == STRONG
    usage = response.json()["usage"]
    samples = _metrics(server)
    assert samples['routellm_cost_usd_total{model="openai/weak-model"}'] == pytest.approx(
        call_cost(WEAK, usage, OVERRIDES)
    )
    assert not [k for k in samples if 'model="openai/strong-model"' in k]
    assert samples[
        'routellm_strong_equivalent_cost_usd_total{router="test_keyword"}'
    ] == pytest.approx(call_cost(STRONG, usage, OVERRIDES))


def test_models_in_litellms_price_map_need_no_override(start_server, fresh_backend):
    server = start_server(strong="openai/gpt-4o", weak="openai/gpt-4o-mini")
    usage = _post(server, EASY).json()["usage"]
    cost = call_cost("openai/gpt-4o-mini", usage)
    assert cost is not None and cost > 0
    samples = _metrics(server)
    assert samples['routellm_cost_usd_total{model="openai/gpt-4o-mini"}'] == pytest.approx(cost)
    assert samples[
        'routellm_strong_equivalent_cost_usd_total{router="test_keyword"}'
    ] == pytest.approx(call_cost("openai/gpt-4o", usage))


def test_the_litellm_path_is_counted_too(start_server, fresh_backend):
    server = start_server(prices=PRICES, forwarding="litellm")
    usage = _post(server, EASY).json()["usage"]
    streamed = _stream_usage(
        _post(server, EASY, stream=True, stream_options={"include_usage": True})
    )
    assert streamed
    samples = _metrics(server)
    prompt = usage["prompt_tokens"] + streamed["prompt_tokens"]
    assert samples['routellm_tokens_total{model="openai/weak-model",kind="prompt"}'] == prompt
    expected = call_cost(WEAK, usage, OVERRIDES) + call_cost(WEAK, streamed, OVERRIDES)
    assert samples['routellm_cost_usd_total{model="openai/weak-model"}'] == pytest.approx(expected)


def test_malformed_usage_is_not_counted_and_does_not_fail_the_request(start_server, fresh_backend):
    server = start_server(prices=PRICES)
    fresh_backend.configure(usage_details={"prompt_tokens": "many"})
    _post(server, EASY)
    samples = _metrics(server)
    assert samples['routellm_errors_total{kind="malformed_usage"}'] == 1
    assert not [k for k in samples if k.startswith(("routellm_tokens", "routellm_cost"))]


def test_the_price_map_is_read_at_start_up():
    _price_map.cache_clear()
    create_app(ServerConfig(routers=["random"], strong="openai/gpt-4o", weak="openai/gpt-4o-mini"))
    assert _price_map.cache_info().currsize == 1  # before any request


def test_price_flags_and_config_keys(tmp_path):
    args = build_parser().parse_args(
        ["serve", "--price", "my-llama=0.2,0.6", "--price", "openai/x=1,2.5"]
    )
    assert _prices(args.price) == {
        "my-llama": {"input_per_million": 0.2, "output_per_million": 0.6},
        "openai/x": {"input_per_million": 1.0, "output_per_million": 2.5},
    }
    config = ServerConfig(routers=["random"], prices=_prices(args.price))
    assert config.price_overrides()["my-llama"] == Price.per_million(0.2, 0.6)

    path = tmp_path / "server.yaml"
    path.write_text(
        "prices:\n  my-llama: {input_per_million: 0.1, output_per_million: 0.3}\n"
        "  other: {input_per_million: 5, output_per_million: 6, cache_read_per_million: 1}\n"
    )
    config = ServerConfig.from_sources(path, env={}, prices=parse_prices(["my-llama=1,2"]))
    assert config.price_overrides() == {  # the flag wins for its model; the file's others stay
        "my-llama": Price.per_million(1, 2),
        "other": Price.per_million(5, 6, 1),
    }
    path.write_text('price: ["my-llama=0.1,0.3"]\n')  # the flag's own name (quoted: YAML)
    config = ServerConfig.from_sources(path, env={})
    assert config.price_overrides() == {"my-llama": Price.per_million(0.1, 0.3)}


@pytest.mark.parametrize(
    "prices",
    [
        {"m": {"input_per_million": 1}},
        {"m": {"input_per_million": 1, "output_per_million": -2}},
        {"m": {"input_per_million": "1", "output_per_million": 2}},
        {"m": {"input_per_million": 1, "output_per_million": 2, "per_token": 3}},
        {"m": {"input_per_million": math.inf, "output_per_million": 2}},
        {"m": [1, 2]},
        ["m=1,2"],
    ],
)
def test_bad_prices_are_refused_at_start_up(prices):
    with pytest.raises(ServerConfigError, match="prices"):
        ServerConfig(routers=["random"], prices=prices)


@pytest.mark.parametrize("pair", ["m", "m=1", "m=1,2,3", "=1,2", "m=a,b", "m=-1,2", "m=nan,1"])
def test_bad_price_flags_are_refused(pair):
    with pytest.raises(ServerConfigError, match="--price takes MODEL=IN,OUT"):
        parse_prices([pair])


def test_metric_label_values_are_escaped():
    """Model names are the operator's strings: a quote, backslash or newline in one must not
    break the Prometheus text format."""
    from routellm_lc.server.metrics import Metrics

    metrics = Metrics()
    metrics.usage("mf", 'odd"model\\name\nx', 3, 4, 0.5, 1.0)
    text = metrics.render()
    assert 'routellm_cost_usd_total{model="odd\\"model\\\\name\\nx"} 0.5' in text
    assert text.count("# TYPE routellm_cost_usd_total counter") == 1
