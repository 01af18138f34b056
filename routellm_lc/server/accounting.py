"""Token and cost accounting for `/metrics`: each answered request's `usage`, priced.

`usage` is read from what the relay parses anyway (the JSON answer; the stream events, where the
client asked for `stream_options.include_usage`), so counting costs a few dictionary lookups and
`costs.call_cost`'s arithmetic per request: no extra parsing, no LiteLLM. Both models' prices are
looked up once, at start-up (LiteLLM's bundled price map, read without importing LiteLLM, under
the configured overrides); a request is priced with the answering model's rates (tiers by prompt
length included) and, for the all-strong counterfactual, with the strong model's rates for the
same usage, as `SavingsReport` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from routellm_lc.costs import (
    OPTIONAL_USAGE_COUNTS,
    USAGE_DETAIL_COUNTS,
    Price,
    call_cost,
    model_price,
)
from routellm_lc.server.metrics import Metrics

log = logging.getLogger("routellm_lc.server")


class Accounting:
    """Prices of the served models (resolved once) and the per-request record into `metrics`."""

    def __init__(
        self,
        strong: str,
        models: Iterable[str],
        overrides: Mapping[str, Price],
        metrics: Metrics,
    ) -> None:
        self.strong = strong
        self.metrics = metrics
        self.prices: dict[str, Price | None] = {
            model: model_price(model, overrides) for model in dict.fromkeys(models)
        }
        # `call_cost` finds these by the full model name at once: no price-map lookup per call
        self._priced = {m: price for m, price in self.prices.items() if price is not None}
        for model, price in self.prices.items():
            if price is None:
                log.warning(
                    "no price for %s: its requests are counted in "
                    "routellm_unpriced_requests_total, not in the cost totals (give it one: "
                    "--price %s=IN,OUT in USD per million tokens)",
                    model,
                    model.split("/", 1)[-1],
                )

    def record(self, router: str, model: str, usage: Any) -> None:
        """Count one answered request's `usage` (an OpenAI-shaped dict; anything else, or
        none, is not counted)."""
        if not usage or not isinstance(usage, dict):
            return
        prompt = usage.get("prompt_tokens", 0)
        completion = usage.get("completion_tokens", 0)
        if not (_is_count(prompt) and _is_count(completion) and _counts_are_sane(usage)):
            self.metrics.error("malformed_usage")
            return
        cost = strong_cost = None
        if model in self._priced:
            try:
                cost = call_cost(model, usage, self._priced)
                if model == self.strong:
                    strong_cost = cost
                elif self.strong in self._priced:
                    strong_cost = call_cost(self.strong, usage, self._priced)
            except (TypeError, ValueError, AttributeError):  # e.g. a details field not a count
                self.metrics.error("malformed_usage")
                return
        self.metrics.usage(router, model, prompt, completion, cost, strong_cost)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counts_are_sane(usage: dict[str, Any]) -> bool:
    """Every optional count `call_cost` reads is absent, null or a count (a negative
    `cached_tokens` would raise the cost; OpenAI-compatible servers often send a null
    `prompt_tokens_details`)."""
    for key in OPTIONAL_USAGE_COUNTS:
        value = usage.get(key)
        if value is not None and not _is_count(value):
            return False
    for key, counts in USAGE_DETAIL_COUNTS.items():
        details = usage.get(key)
        if not details:  # as `call_cost` reads it: none
            continue
        if not isinstance(details, dict):
            return False
        for count in counts:
            value = details.get(count)
            if value is not None and not _is_count(value):
                return False
    return True
