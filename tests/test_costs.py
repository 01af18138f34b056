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
    with pytest.warns(RuntimeWarning, match=r"1 of 4 calls .* no price for other"):
        report = SavingsReport.from_calls(calls, strong_model="big", overrides=prices)
    assert report.unpriced_models == ["other"]
    assert report.calls == 4 and report.strong_calls == 1 and report.unpriced_calls == 1
    assert report.cost == pytest.approx(0.04 + 2 * 0.003)
    assert report.all_strong_cost == pytest.approx(3 * 0.04)
    assert report.savings_pct == pytest.approx(100 * (0.12 - 0.046) / 0.12)
    assert report.to_dict()["calls_per_model"] == {"big": 1, "small": 2, "other": 1}


# What LiteLLM itself bills (`litellm.cost_per_token`), for the cases our reader handles.
LITELLM_CASES = [
    ("gpt-4o", 10_000, 500, 0),  # plain
    ("gpt-4o", 10_000, 500, 8_000),  # 8k of the 10k input tokens read from the prompt cache
    ("o1", 4_000, 2_000, 1_000),
    ("gemini/gemini-2.5-pro", 300_000, 1_000, 0),  # above the 200k-token tier
    ("gemini/gemini-2.5-pro", 300_000, 1_000, 100_000),  # the tier's cached rate
    ("gemini/gemini-2.5-pro", 150_000, 1_000, 0),  # below it
]


@pytest.mark.parametrize(("model", "prompt", "completion", "cached"), LITELLM_CASES)
def test_call_cost_bills_as_litellm_does(model, prompt, completion, cached):
    """Cached input and long-prompt tiers priced as LiteLLM prices them (a prompt cache is
    what agents with long repeated prompts hit; Gemini bills past 200k tokens at 2×)."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    expected = sum(
        litellm.cost_per_token(
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cache_read_input_tokens=cached,
        )
    )
    langchain_usage = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "input_token_details": {"cache_read": cached},
    }
    openai_usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    assert call_cost(model, langchain_usage) == pytest.approx(expected, rel=1e-9)
    assert call_cost(model, openai_usage) == pytest.approx(expected, rel=1e-9)


def test_the_price_map_is_read_without_importing_litellm():
    """Importing LiteLLM costs ~3 s and, without LITELLM_LOCAL_MODEL_COST_MAP, downloads."""
    import subprocess
    import sys

    probe = (
        "import sys; from routellm_lc.costs import call_cost; "
        "cost = call_cost('openai/gpt-4o', {'input_tokens': 10, 'output_tokens': 10}); "
        "print(cost > 0, 'litellm' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["True", "False"], done.stderr
