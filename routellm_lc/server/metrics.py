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
        self.requests: Counter[tuple[str, str, str, int]] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.routing = Histogram(ROUTING_BUCKETS)
        self.upstream = Histogram(UPSTREAM_BUCKETS)
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.cost: dict[str, float] = {}
        self.strong_equivalent_cost: dict[str, float] = {}
        self.unpriced: Counter[str] = Counter()

    def request(self, router: str, route: str, status: int, policy: str = "fixed") -> None:
        """One finished chat request; `route` is strong/weak (after fallback) or `none`;
        `policy` is "controller" for a `router-<r>` id routed by the strong-share controller,
        "fixed" for a `router-<r>-<threshold>` id (and "none" with router "none")."""
        self.requests[(router, policy, route, status)] += 1

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
        lines = _family(
            "routellm_requests_total",
            "counter",
            "Chat completion requests by router, threshold policy (fixed or controller), "
            "route and status.",
            {(("router", r), ("policy", policy), ("route", route), ("status", str(status))): n
             for (r, policy, route, status), n in self.requests.items()},
        )  # fmt: skip
        lines += _family(
            "routellm_fallbacks_total",
            "counter",
            "Calls answered by the other model after the chosen one failed, by router and the "
            "route that failed.",
            {(("router", r), ("failed", route)): n for (r, route), n in self.fallbacks.items()},
        )
        lines += _family(
            "routellm_errors_total",
            "counter",
            "Errors by kind (client errors and upstream failures).",
            {(("kind", kind),): n for kind, n in self.errors.items()},
        )
        lines += self.routing.render(
            "routellm_routing_seconds", "router", "Time to route one request (queue + scoring)."
        )
        lines += self.upstream.render(
            "routellm_upstream_seconds",
            "route",
            "Time until the model's response (or first stream event) arrived, by route.",
        )
        lines += _family(
            "routellm_tokens_total",
            "counter",
            "Tokens the upstream reported (usage), by the model that answered and kind "
            "(prompt, completion).",
            {(("model", m), ("kind", kind)): n for (m, kind), n in self.tokens.items()},
        )
        lines += _family(
            "routellm_cost_usd_total",
            "counter",
            "USD spent, priced per request from its usage, by the model that answered.",
            {(("model", m),): usd for m, usd in self.cost.items()},
        )
        lines += _family(
            "routellm_strong_equivalent_cost_usd_total",
            "counter",
            "USD the same requests' usage would have cost at the strong model's prices "
            "(all-strong counterfactual), by router.",
            {(("router", r),): usd for r, usd in self.strong_equivalent_cost.items()},
        )
        lines += _family(
            "routellm_unpriced_requests_total",
            "counter",
            "Answered requests with usage whose model has no price (left out of the cost totals).",
            {(("model", m),): n for m, n in self.unpriced.items()},
        )
        if thresholds:
            lines += _family(
                "routellm_threshold",
                "gauge",
                "The threshold router-<router> routes at now.",
                {(("router", r),): t for r, t in thresholds.items()},
            )
        if controller_shares:
            lines += _family(
                "routellm_controller_strong_share",
                "gauge",
                "Share of the strong-share controller's window of recent scores at or above "
                "its threshold.",
                {(("router", r),): share for r, share in controller_shares.items()},
            )
        return "\n".join(lines) + "\n"


def _family(
    name: str, kind: str, help_text: str, samples: Mapping[tuple[tuple[str, str], ...], float]
) -> list[str]:
    """One metric family: its HELP and TYPE lines, then a sample per label set, sorted."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in sorted(samples.items()):
        text = ",".join(f'{key}="{_escape(str(v))}"' for key, v in labels)
        lines.append(f"{name}{{{text}}} {value!r}")
    return lines


def _escape(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and newline
    escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
