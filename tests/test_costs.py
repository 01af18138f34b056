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


def test_overrides_are_found_as_the_price_map_is():
    """A self-hosted model on an `api_base` is recorded as `openai/my-llama`: the README's
    `prices={"my-llama": ...}` prices it (full name first, then without the prefix), and an
    override wins over LiteLLM's own price."""
    usage = {"input_tokens": 100, "output_tokens": 50}
    calls = [
        ({"model": "openai/my-llama", "route": "weak"}, usage),
        ({"model": "openai/gpt-4o", "route": "strong"}, usage),
    ]
    report = SavingsReport.from_calls(calls, "gpt-4o", {"my-llama": Price(0, 0)})
    assert report.unpriced_calls == 0 and report.unpriced_models == []
    assert report.cost_per_model["openai/my-llama"] == 0.0
    assert report.cost == pytest.approx(call_cost("openai/gpt-4o", usage))
    exact_first = {"openai/x": Price(1.0, 1.0), "x": Price(2.0, 2.0)}
    assert model_price("openai/x", exact_first) == Price(1.0, 1.0)
    assert model_price("openai/gpt-4o", {"gpt-4o": Price(0, 0)}) == Price(0, 0)


def _litellm_cost(model: str, prompt: int, completion: int, **details: int) -> float:
    """`litellm.cost_per_token` for a usage block with OpenAI-shaped token details."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm.types.utils import (
        CompletionTokensDetailsWrapper,
        PromptTokensDetailsWrapper,
        Usage,
    )

    reasoning, cached = details.get("reasoning", 0), details.get("cached", 0)
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=cached) if cached else None,
        completion_tokens_details=(
            CompletionTokensDetailsWrapper(reasoning_tokens=reasoning) if reasoning else None
        ),
    )
    provider = model.split("/", 1)[0] if "/" in model else None
    return sum(
        litellm.cost_per_token(model=model, usage_object=usage, custom_llm_provider=provider)
    )


@pytest.mark.parametrize(
    "model",
    [
        "dashscope/qwen-plus-2025-04-28",  # thinking output at 3.3× the answer's rate
        "perplexity/sonar-deep-research",  # reasoning cheaper than the answer
        "o1",  # no separate rate: reasoning is output
    ],
)
def test_reasoning_tokens_bill_as_litellm_does(model):
    """Reasoning tokens are part of the output count; where the price map has a reasoning rate
    LiteLLM bills them at it and the rest of the output at the output rate."""
    expected = _litellm_cost(model, 1_000, 600, reasoning=400)
    langchain_usage = {
        "input_tokens": 1_000,
        "output_tokens": 600,
        "output_token_details": {"reasoning": 400},
    }
    openai_usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 600,
        "completion_tokens_details": {"reasoning_tokens": 400},
    }
    flat_usage = {"input_tokens": 1_000, "output_tokens": 600, "reasoning_output_tokens": 400}
    for usage in (langchain_usage, openai_usage, flat_usage):
        assert call_cost(model, usage) == pytest.approx(expected, rel=1e-9)
    price = model_price(model)
    plain = call_cost(model, {"input_tokens": 1_000, "output_tokens": 600})
    if price.reasoning is None:
        assert expected == pytest.approx(plain)
    else:
        assert expected == pytest.approx(plain + 400 * (price.reasoning - price.output))
        assert expected != pytest.approx(plain)


def test_fireworks_cache_reads_get_litellms_default_discount():
    """Fireworks lists no cache-read rate for most models; LiteLLM bills their cached input
    at half the input rate, and so does `call_cost`."""
    model = "fireworks_ai/accounts/fireworks/models/deepseek-coder-v2-instruct"
    price = model_price(model)
    assert price is not None and price.cache_read == pytest.approx(price.input / 2)
    usage = {
        "input_tokens": 1_000,
        "output_tokens": 500,
        "input_token_details": {"cache_read": 400},
    }
    assert call_cost(model, usage) == pytest.approx(
        _litellm_cost(model, 1_000, 500, cached=400), rel=1e-9
    )
    assert model_price("openai/gpt-3.5-turbo-0125").cache_read is None  # no default elsewhere


def test_strong_calls_in_a_pool_count_its_top_model_only():
    """Under `RouteLLMChat(strong=o1, weak=routed_pool([mini, 4o]))` gpt-4o's own level says
    "strong": the report counts o1's calls, as the `cascade` (outermost first) shows them."""
    usage = {"input_tokens": 10, "output_tokens": 10}
    o1 = {"route": "strong", "model": "openai/o1", "threshold": 0.8}
    to_pool = {"route": "weak", "model": "router-mf-0.4", "threshold": 0.8}
    mid = {"route": "strong", "model": "openai/gpt-4o", "threshold": 0.4}
    cheap = {"route": "weak", "model": "openai/gpt-4o-mini", "threshold": 0.4}
    calls = [
        ({**o1, "cascade": [o1]}, usage),
        ({**mid, "cascade": [to_pool, mid]}, usage),
        ({**cheap, "cascade": [to_pool, cheap]}, usage),
        ({**mid, "cascade": [to_pool, mid]}, usage),
    ]
    report = SavingsReport.from_calls(calls, "openai/o1")
    assert (report.calls, report.strong_calls, report.strong_share) == (4, 1, 0.25)
    # o1 failed, the pool's gpt-4o answered: not a strong call (the levels show the fallback)
    fell_back = {**to_pool, "fallback_from": "openai/o1"}
    report = SavingsReport.from_calls([({**mid, "cascade": [fell_back, mid]}, usage)], "openai/o1")
    assert report.strong_calls == 0


def test_a_cache_hit_costs_nothing_on_both_sides():
    """LangChain's cache hit (`total_cost: 0`) is priced at 0, also for an unpriced model."""
    prices = {"big": Price(10e-6, 30e-6), "small": Price(1e-6, 2e-6)}
    usage = {"input_tokens": 100, "output_tokens": 50, "total_tokens": 150}
    hit = {**usage, "total_cost": 0}
    assert call_cost("small", hit, prices) == 0.0
    assert call_cost("unknown-model", hit) == 0.0
    calls = [
        ({"model": "small", "route": "weak"}, usage),
        ({"model": "small", "route": "weak"}, hit),
    ]
    report = SavingsReport.from_calls(calls, strong_model="big", overrides=prices)
    assert (report.calls, report.cached_calls) == (2, 1)
    assert report.cost == pytest.approx(100e-6 + 100e-6)
    assert report.all_strong_cost == pytest.approx(1000e-6 + 1500e-6)
    assert report.to_dict()["cached_calls"] == 1


def test_langchains_model_spelling_is_priced_as_litellms():
    """`strong="openai:gpt-4o"` is recorded as `openai/gpt-4o`: the name the user gives
    `savings()` or a price in that spelling finds the same price."""
    assert model_price("openai:gpt-4o") == model_price("openai/gpt-4o") is not None
    assert model_price("openai/my-llama", {"openai:my-llama": Price(1e-6, 2e-6)}) == Price(
        1e-6, 2e-6
    )
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    report = SavingsReport.from_calls(
        [({"model": "openai/gpt-4o-mini", "route": "weak"}, usage)], "openai:gpt-4o"
    )
    assert report.unpriced_calls == 0 and report.all_strong_cost > report.cost > 0
