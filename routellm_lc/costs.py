"""Cost accounting per decision, with LiteLLM's price map, and savings reports.

Prices come from the JSON price map that ships inside the `litellm` package (found and read
without importing LiteLLM: its import costs ~3 s and may try to download a fresher map), with
cached-input, long-prompt and reasoning-token rates where the map has them. Users pass their
own prices for self-hosted or negotiated models (`prices={"my-llama": Price(0, 0)}`, found as
the map's entries are: `openai/my-llama` by its full name, else without the provider prefix); a
call to a model with no price is left out of a savings report's sums and named in it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from routellm_lc.model_names import litellm_model_string


@dataclass(frozen=True)
class Price:
    """USD per token: input, output, and (where the provider prices them apart) cached input
    read from its prompt cache and input written to it (None: billed as input). `above`:
    (prompt-token threshold, Price) tiers; a prompt longer than a threshold bills all its
    tokens at that tier's rates (LiteLLM's `*_above_200k_tokens` keys, e.g. Gemini 2.5 Pro).
    `reasoning`: output tokens spent reasoning, where they cost more than the answer's (e.g.
    Qwen's thinking mode; None: billed as output)."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    above: tuple[tuple[int, Price], ...] = ()
    reasoning: float | None = None

    @classmethod
    def per_million(cls, input: float, output: float, cache_read: float | None = None) -> Price:
        return cls(input / 1e6, output / 1e6, None if cache_read is None else cache_read / 1e6)

    def for_prompt(self, prompt_tokens: int) -> Price:
        """The rates a prompt of this many tokens is billed at (its tier's)."""
        chosen = self
        for threshold, tier in sorted(self.above, key=lambda t: t[0]):
            if prompt_tokens > threshold:
                chosen = tier
        return chosen


def _litellm_price_file() -> Path | None:
    """LiteLLM's bundled price map, found without importing LiteLLM (its import costs ~3 s
    and, without LITELLM_LOCAL_MODEL_COST_MAP, tries to download a fresher map)."""
    spec = importlib.util.find_spec("litellm")
    for folder in (spec and spec.submodule_search_locations) or []:
        path = Path(folder) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=1)
def _price_map() -> dict[str, Any]:
    path = _litellm_price_file()
    return json.loads(path.read_text(encoding="utf-8")) if path is not None else {}


_TIER_KEY = re.compile(r"input_cost_per_token_above_(\d+)(k?)_tokens")
#: Providers whose unlisted cache-read rate is a share of the input rate, as LiteLLM bills
#: them (`litellm.constants.FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO`: Fireworks' serverless
#: prompt cache is half price).
_DEFAULT_CACHE_READ_RATIO = {"fireworks_ai": 0.5}


def _price_of(entry: Mapping[str, Any]) -> Price:
    def rates(suffix: str = "", base: Price | None = None) -> Price:
        def get(key: str, fallback: float | None) -> float | None:
            value = entry.get(key + suffix)
            return float(value) if value is not None else fallback

        return Price(
            float(get("input_cost_per_token", base.input if base else 0.0) or 0.0),
            float(get("output_cost_per_token", base.output if base else 0.0) or 0.0),
            get("cache_read_input_token_cost", base.cache_read if base else None),
            get("cache_creation_input_token_cost", base.cache_write if base else None),
            reasoning=get("output_cost_per_reasoning_token", base.reasoning if base else None),
        )

    base = rates()
    ratio = _DEFAULT_CACHE_READ_RATIO.get(str(entry.get("litellm_provider")))
    if ratio is not None and base.cache_read is None:
        base = replace(base, cache_read=base.input * ratio)
    tiers = []
    for key in entry:
        match = _TIER_KEY.fullmatch(key)
        if match:
            threshold = int(match[1]) * (1000 if match[2] else 1)
            tiers.append((threshold, rates(f"_above_{match[1]}{match[2]}_tokens", base)))
    return replace(base, above=tuple(sorted(tiers, key=lambda t: t[0])))


def model_entry(model: str) -> Mapping[str, Any] | None:
    """LiteLLM's price-map entry of `model` (prices, context window, capabilities), by its full
    name, then without the provider prefix; None for a model the map does not know."""
    prices = _price_map()
    for name in _lookup_names(model):
        entry = prices.get(name)
        if isinstance(entry, Mapping):
            return entry
    return None


def _lookup_names(model: str) -> list[str]:
    """The names `model` is looked up by: LiteLLM's spelling, then without the provider."""
    model = litellm_model_string(model)
    return [model, model.split("/", 1)[1]] if "/" in model else [model]


def model_price(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model` (a LiteLLM string like `openai/gpt-4o` or a bare name), or None.

    `overrides` win over LiteLLM's map, and both are looked up by the full name, then without
    the provider prefix: a self-hosted model on an `api_base`, recorded as `openai/my-llama`,
    is priced by `{"my-llama": ...}`. LangChain's spelling (`openai:gpt-4o`) is LiteLLM's
    (`openai/gpt-4o`), in `model` and in the keys of `overrides`."""
    candidates = _lookup_names(model)
    if overrides:
        for name in candidates:
            if name in overrides:
                return overrides[name]
        for key, price in overrides.items():  # a key in LangChain's spelling
            if ":" in key and litellm_model_string(key) in candidates:
                return price
    prices = _price_map()
    for name in candidates:
        entry = prices.get(name)
        if entry and "input_cost_per_token" in entry:
            return _price_of(entry)
    return None


#: The optional counts `_tokens` reads besides input/output: top-level keys, and per details
#: mapping the keys in it (for callers that check a usage before pricing it).
OPTIONAL_USAGE_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_output_tokens",
)
USAGE_DETAIL_COUNTS = {
    "prompt_tokens_details": ("cached_tokens",),
    "completion_tokens_details": ("reasoning_tokens",),
    "input_token_details": ("cache_read", "cache_creation"),
    "output_token_details": ("reasoning",),
}


def _tokens(usage: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """(input, output, cached input read, input written to the cache, reasoning output) from
    LangChain's usage metadata or an OpenAI-shaped `usage`."""
    input_tokens = int(usage.get("input_tokens", usage.get("prompt_tokens", 0)) or 0)
    output_tokens = int(usage.get("output_tokens", usage.get("completion_tokens", 0)) or 0)
    details = usage.get("input_token_details") or {}
    openai_details = usage.get("prompt_tokens_details") or {}
    cache_read = int(
        details.get("cache_read")
        or openai_details.get("cached_tokens")
        or usage.get("cache_read_input_tokens")  # `RoutingCallbackHandler`'s flat key
        or 0
    )
    cache_write = int(
        details.get("cache_creation") or usage.get("cache_creation_input_tokens") or 0
    )
    reasoning = int(
        (usage.get("output_token_details") or {}).get("reasoning")
        or (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
        or usage.get("reasoning_output_tokens")  # `RoutingCallbackHandler`'s flat key
        or 0
    )
    return input_tokens, output_tokens, cache_read, cache_write, reasoning


def call_cost(
    model: str, usage: Mapping[str, Any] | None, overrides: Mapping[str, Price] | None = None
) -> float | None:
    """USD cost of one call from its usage metadata, or None if the model has no price.

    Input tokens read from the provider's prompt cache (`input_token_details.cache_read`) and
    written to it (`cache_creation`), and output tokens spent reasoning
    (`output_token_details.reasoning`, part of `output_tokens`), are billed at their own rates
    where the price has them, and a long prompt at its length tier's rates, as LiteLLM's
    `cost_per_token` bills them (service tiers, batch, regional and off-peak rates aside).
    An answer from a LangChain LLM cache (`cache_hit`) cost nothing: 0.0, priced or not."""
    if cache_hit(usage):
        return 0.0
    price = model_price(model, overrides)
    if price is None or not usage:
        return None
    input_tokens, output_tokens, cache_read, cache_write, reasoning = _tokens(usage)
    rates = price.for_prompt(input_tokens)
    plain = max(input_tokens - cache_read - cache_write, 0)
    read_rate = rates.input if rates.cache_read is None else rates.cache_read
    write_rate = rates.input if rates.cache_write is None else rates.cache_write
    reasoning_rate = rates.output if rates.reasoning is None else rates.reasoning
    return (
        plain * rates.input
        + cache_read * read_rate
        + cache_write * write_rate
        + max(output_tokens - reasoning, 0) * rates.output
        + reasoning * reasoning_rate
    )


def cache_hit(usage: Mapping[str, Any] | None) -> bool:
    """Whether usage metadata is a LangChain LLM cache hit's: LangChain marks the answer it
    returns from a cache with `usage_metadata["total_cost"] = 0` (its token counts are the
    first call's, which no provider billed again)."""
    return bool(usage) and usage.get("total_cost") == 0


def strongest_route(decision: Mapping[str, Any]) -> str:
    """The call's route counted as strong or weak: "strong" iff its most capable model answered.

    For a plain router, its `route`. In a pool the answering level's `route` is "strong" for a
    mid model too (gpt-4o over gpt-4o-mini, under o1); the top model answered only when every
    level of `cascade` (outermost first) went strong, failed levels aside."""
    levels = [d for d in decision.get("cascade") or [decision] if not d.get("failed")]
    return "strong" if levels and all(d.get("route") == "strong" for d in levels) else "weak"


@dataclass
class SavingsReport:
    """What routing saved against sending every call to the strong model.

    The all-strong cost prices each call's actual token counts at the strong model's rates (the
    strong model's answers would have had other lengths: an estimate, stated as such).
    """

    calls: int = 0
    strong_calls: int = 0
    """Calls the strong model answered (in a pool: its most capable one, `strongest_route`)."""
    cost: float = 0.0
    all_strong_cost: float = 0.0
    unpriced_calls: int = 0
    """Calls left out of both sums: their model, or the strong model, has no price."""
    cached_calls: int = 0
    """Calls answered from a LangChain LLM cache (`cache_hit`): counted, and priced at 0 in
    both sums (an all-strong setup with the same cache would have hit it too)."""
    unpriced_models: list[str] = field(default_factory=list)
    calls_per_model: dict[str, int] = field(default_factory=dict)
    cost_per_model: dict[str, float] = field(default_factory=dict)

    @property
    def strong_share(self) -> float:
        return self.strong_calls / self.calls if self.calls else 0.0

    @property
    def savings(self) -> float:
        return self.all_strong_cost - self.cost

    @property
    def savings_pct(self) -> float:
        return 100.0 * self.savings / self.all_strong_cost if self.all_strong_cost else 0.0

    @classmethod
    def from_calls(
        cls,
        calls: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
        strong_model: str,
        overrides: Mapping[str, Price] | None = None,
    ) -> SavingsReport:
        """`calls`: (decision dict with `model` and `route`, and `cascade` in a pool, as in
        `response_metadata["routing"]`; usage metadata) pairs."""
        report = cls()
        for decision, usage in calls:
            model = str(decision["model"])
            report.calls += 1
            report.strong_calls += strongest_route(decision) == "strong"
            report.calls_per_model[model] = report.calls_per_model.get(model, 0) + 1
            report.cached_calls += cache_hit(usage)
            actual = call_cost(model, usage, overrides)
            counterfactual = call_cost(strong_model, usage, overrides)
            if actual is None or counterfactual is None:
                report.unpriced_calls += 1
                for name, cost in ((model, actual), (strong_model, counterfactual)):
                    if cost is None and usage and name not in report.unpriced_models:
                        report.unpriced_models.append(name)
                continue
            report.cost += actual
            report.all_strong_cost += counterfactual
            report.cost_per_model[model] = report.cost_per_model.get(model, 0.0) + actual
        if report.unpriced_calls:
            named = ", ".join(report.unpriced_models) or "calls without usage metadata"
            warnings.warn(
                f"{report.unpriced_calls} of {report.calls} calls are left out of the savings "
                f"report: no price for {named}. A self-hosted model needs one: "
                'prices={"<model>": Price(input, output)} (Price(0, 0) if it costs nothing).',
                RuntimeWarning,
                stacklevel=2,
            )
        return report

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "strong_calls": self.strong_calls,
            "strong_share": self.strong_share,
            "cost_usd": self.cost,
            "all_strong_cost_usd": self.all_strong_cost,
            "savings_usd": self.savings,
            "savings_pct": self.savings_pct,
            "unpriced_calls": self.unpriced_calls,
            "unpriced_models": list(self.unpriced_models),
            "cached_calls": self.cached_calls,
            "calls_per_model": dict(self.calls_per_model),
            "cost_per_model_usd": dict(self.cost_per_model),
        }
