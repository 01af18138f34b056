"""Cost accounting from LiteLLM's shipped price map, custom prices, and savings reports."""

from __future__ import annotations

import pytest

from routellm_lc.costs import Price, SavingsReport, call_cost, model_price


def test_prices_come_from_litellms_map_with_or_without_provider_prefix():
    bare, prefixed = model_price("gpt-4o"), model_price("openai/gpt-4o")
    assert bare is not None and bare == prefixed
    assert bare.output > bare.input > 0
    assert model_price("openai/no-such-model") is None


def test_call_cost_and_overrides():
    usage = {"input_tokens": 1_000_000, "output_tokens": 500_000}
    assert call_cost("mine", usage, {"mine": Price.per_million(1.0, 4.0)}) == pytest.approx(3.0)
    price = model_price("gpt-4o-mini")
    assert call_cost("openai/gpt-4o-mini", usage) == pytest.approx(
        1e6 * price.input + 5e5 * price.output
    )
    assert call_cost("unknown-model", usage) is None


def test_savings_report_against_all_strong():
    prices = {"big": Price.per_million(10.0, 30.0), "small": Price.per_million(1.0, 2.0)}
    usage = {"input_tokens": 1000, "output_tokens": 1000}
    calls = [
        ({"model": "big", "route": "strong"}, usage),
        ({"model": "small", "route": "weak"}, usage),
        ({"model": "small", "route": "weak"}, usage),
        ({"model": "other", "route": "weak"}, usage),
    ]
    report = SavingsReport.from_calls(calls, strong_model="big", overrides=prices)
    assert report.calls == 4 and report.strong_calls == 1 and report.unpriced_calls == 1
    assert report.cost == pytest.approx(0.04 + 2 * 0.003)
    assert report.all_strong_cost == pytest.approx(3 * 0.04)
    assert report.savings_pct == pytest.approx(100 * (0.12 - 0.046) / 0.12)
    assert report.to_dict()["calls_per_model"] == {"big": 1, "small": 2, "other": 1}
