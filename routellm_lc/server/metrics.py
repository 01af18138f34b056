"""Prometheus metrics in the text exposition format, kept in plain dicts.

Recording is a dict increment or a bisect (no locks: the server is one event loop), so the
hot path pays microseconds; `/metrics` renders on demand.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

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
    """Requests by router / route / status, fallbacks, errors, routing and upstream latency."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.routing = Histogram(ROUTING_BUCKETS)
        self.upstream = Histogram(UPSTREAM_BUCKETS)

    def request(self, router: str, route: str, status: int) -> None:
        """One finished chat request; `route` is strong/weak (after fallback) or `none`."""
        self.requests[(router, route, status)] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def fallback(self, router: str, failed_route: str) -> None:
        self.fallbacks[(router, failed_route)] += 1

    def render(self) -> str:
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
        return "\n".join(lines) + "\n"
