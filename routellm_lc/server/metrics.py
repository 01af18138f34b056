"""Prometheus metrics in the text exposition format, kept in plain dicts.

Recording is a dict increment or a bisect (no locks: the server is one event loop), so the
hot path pays microseconds; `/metrics` renders on demand.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence

#: Routing-step latency buckets (seconds): the default router decides in about a millisecond.
ROUTING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
#: Upstream (chosen model) latency buckets (seconds).
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """A cumulative Prometheus histogram per label value."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts: dict[str, list[int]] = {}
        self.sums: Counter[str] = Counter()

    def observe(self, label: str, seconds: float) -> None:
        counts = self.counts.get(label)
        if counts is None:
            counts = self.counts[label] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sums[label] += seconds

    def render(self, name: str, label_name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for label, counts in sorted(self.counts.items()):
            total = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                total += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'{name}_bucket{{{label_name}="{label}",le="{le}"}} {total}')
            lines.append(f'{name}_sum{{{label_name}="{label}"}} {self.sums[label]!r}')
            lines.append(f'{name}_count{{{label_name}="{label}"}} {total}')
        return lines


class Metrics:
    """Requests by router / route / status, fallbacks, errors, routing and upstream latency,
    tokens and their cost (see `accounting.py`)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.routing = Histogram(ROUTING_BUCKETS)
        self.upstream = Histogram(UPSTREAM_BUCKETS)
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.cost: dict[str, float] = {}
        self.strong_equivalent_cost: dict[str, float] = {}
        self.unpriced: Counter[str] = Counter()

    def request(self, router: str, route: str, status: int) -> None:
        """One finished chat request; `route` is strong/weak (after fallback) or `none`."""
        self.requests[(router, route, status)] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def fallback(self, router: str, failed_route: str) -> None:
        self.fallbacks[(router, failed_route)] += 1

    def usage(
        self,
        router: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float | None,
        strong_cost: float | None,
    ) -> None:
        """One answered request's usage: `cost` None = `model` has no price; `strong_cost`
        (its tokens at the strong model's prices) None = no counterfactual for it."""
        self.tokens[(model, "prompt")] += prompt_tokens
        self.tokens[(model, "completion")] += completion_tokens
        if cost is None:
            self.unpriced[model] += 1
            return
        self.cost[model] = self.cost.get(model, 0.0) + cost
        if strong_cost is not None:
            self.strong_equivalent_cost[router] = (
                self.strong_equivalent_cost.get(router, 0.0) + strong_cost
            )

    def render(
        self,
        thresholds: Mapping[str, float] | None = None,
        controller_shares: Mapping[str, float] | None = None,
    ) -> str:
        """The text exposition; `thresholds` and `controller_shares` (per router) are gauges
        read at the time of the scrape."""
        lines = [
            "# HELP routellm_requests_total Chat completion requests by router, route and status.",
            "# TYPE routellm_requests_total counter",
        ]
        for (router, route, status), count in sorted(self.requests.items()):
            lines.append(
                f'routellm_requests_total{{router="{router}",route="{route}",'
                f'status="{status}"}} {count}'
            )
        lines += [
            "# HELP routellm_fallbacks_total Calls answered by the other model after the chosen "
            "one failed, by router and the route that failed.",
            "# TYPE routellm_fallbacks_total counter",
        ]
        for (router, route), count in sorted(self.fallbacks.items()):
            lines.append(f'routellm_fallbacks_total{{router="{router}",failed="{route}"}} {count}')
        lines += [
            "# HELP routellm_errors_total Errors by kind (client errors and upstream failures).",
            "# TYPE routellm_errors_total counter",
        ]
        for kind, count in sorted(self.errors.items()):
            lines.append(f'routellm_errors_total{{kind="{kind}"}} {count}')
        lines += self.routing.render(
            "routellm_routing_seconds", "router", "Time to route one request (queue + scoring)."
        )
        lines += self.upstream.render(
            "routellm_upstream_seconds",
            "route",
            "Time until the model's response (or first stream event) arrived, by route.",
        )
        lines += [
            "# HELP routellm_tokens_total Tokens the upstream reported (usage), by the model "
            "that answered and kind (prompt, completion).",
            "# TYPE routellm_tokens_total counter",
        ]
        for (model, kind), count in sorted(self.tokens.items()):
            lines.append(f'routellm_tokens_total{{model="{model}",kind="{kind}"}} {count}')
        lines += [
            "# HELP routellm_cost_usd_total USD spent, priced per request from its usage, by the "
            "model that answered.",
            "# TYPE routellm_cost_usd_total counter",
        ]
        for model, usd in sorted(self.cost.items()):
            lines.append(f'routellm_cost_usd_total{{model="{model}"}} {usd!r}')
        lines += [
            "# HELP routellm_strong_equivalent_cost_usd_total USD the same requests' usage "
            "would have cost at the strong model's prices (all-strong counterfactual), by router.",
            "# TYPE routellm_strong_equivalent_cost_usd_total counter",
        ]
        for router, usd in sorted(self.strong_equivalent_cost.items()):
            lines.append(f'routellm_strong_equivalent_cost_usd_total{{router="{router}"}} {usd!r}')
        lines += [
            "# HELP routellm_unpriced_requests_total Answered requests with usage whose model "
            "has no price (left out of the cost totals).",
            "# TYPE routellm_unpriced_requests_total counter",
        ]
        for model, count in sorted(self.unpriced.items()):
            lines.append(f'routellm_unpriced_requests_total{{model="{model}"}} {count}')
        if thresholds:
            lines += [
                "# HELP routellm_threshold The threshold router-<router> routes at now.",
                "# TYPE routellm_threshold gauge",
            ]
            for router, threshold in sorted(thresholds.items()):
                lines.append(f'routellm_threshold{{router="{router}"}} {threshold!r}')
        if controller_shares:
            lines += [
                "# HELP routellm_controller_strong_share Share of the strong-share controller's "
                "window of recent scores at or above its threshold.",
                "# TYPE routellm_controller_strong_share gauge",
            ]
            for router, share in sorted(controller_shares.items()):
                lines.append(f'routellm_controller_strong_share{{router="{router}"}} {share!r}')
        return "\n".join(lines) + "\n"
