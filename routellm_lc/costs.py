"""Cost accounting per decision, with LiteLLM's price map, and savings reports.

Prices come from the JSON price map that ships inside the `litellm` package (read directly:
importing LiteLLM costs ~3 s and its import may try to download a fresher map). Users can pass
their own prices (per million tokens) for self-hosted or negotiated models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Price:
    """USD per token."""

    input: float
    output: float

    @classmethod
    def per_million(cls, input: float, output: float) -> Price:
        return cls(input / 1e6, output / 1e6)


@lru_cache(maxsize=1)
def _price_map() -> dict[str, Any]:
    try:
        text = (
            resources.files("litellm") / "model_prices_and_context_window_backup.json"
        ).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return {}
    return json.loads(text)


def model_price(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model` (a LiteLLM string like `openai/gpt-4o` or a bare name), or None."""
    if overrides and model in overrides:
        return overrides[model]
    prices = _price_map()
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = prices.get(name)
        if entry and "input_cost_per_token" in entry:
            return Price(
                float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token", 0.0))
            )
    return None


def call_cost(
    model: str, usage: Mapping[str, Any] | None, overrides: Mapping[str, Price] | None = None
) -> float | None:
    """USD cost of one call from its usage metadata (input/output tokens), or None if unknown."""
    price = model_price(model, overrides)
    if price is None or not usage:
        return None
    input_tokens = int(usage.get("input_tokens", usage.get("prompt_tokens", 0)) or 0)
    output_tokens = int(usage.get("output_tokens", usage.get("completion_tokens", 0)) or 0)
    return input_tokens * price.input + output_tokens * price.output


@dataclass
class SavingsReport:
    """What routing saved against sending every call to the strong model.

    The all-strong cost prices each call's actual token counts at the strong model's rates (the
    strong model's answers would have had other lengths: an estimate, stated as such).
    """

    calls: int = 0
    strong_calls: int = 0
    cost: float = 0.0
    all_strong_cost: float = 0.0
    unpriced_calls: int = 0
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
        """`calls`: (decision dict with `model` and `route`, usage metadata) pairs."""
        report = cls()
        for decision, usage in calls:
            model = str(decision["model"])
            report.calls += 1
            report.strong_calls += decision.get("route") == "strong"
            report.calls_per_model[model] = report.calls_per_model.get(model, 0) + 1
            actual = call_cost(model, usage, overrides)
            counterfactual = call_cost(strong_model, usage, overrides)
            if actual is None or counterfactual is None:
                report.unpriced_calls += 1
                continue
            report.cost += actual
            report.all_strong_cost += counterfactual
            report.cost_per_model[model] = report.cost_per_model.get(model, 0.0) + actual
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
            "calls_per_model": dict(self.calls_per_model),
            "cost_per_model_usd": dict(self.cost_per_model),
        }
