"""`RoutingCallbackHandler`: records every routing decision of a run and summarises it.

Attach it like any LangChain callback (`config={"callbacks": [handler]}`) to a chain, an agent
or a graph: each `RouteLLMChat` call becomes a `RoutedCall` with its run ids, graph step and node,
the decision, the model call's latency and its token usage; `summary()` gives the strong share,
calls per model and tokens per model. In a pool (or a router over a pool) "strong" means the
most capable model answered: every level of the call's `cascade` went strong.

It reads the router's own run (its metadata carries the decision; see `RouteLLMChat`), so it sees
exactly one record per routed call; the chosen model's child run goes only to tracers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from routellm_lc.costs import SavingsReport, cache_hit, strongest_route
from routellm_lc.graph.events import ROUTING_ERROR_TAG

_TOKEN_KEYS = ("input_tokens", "output_tokens", "total_tokens")
#: Token counts priced apart (LangChain's `input_token_details` / `output_token_details` names →
#: the flat keys `RoutedCall.usage` keeps them under): input read from / written to the
#: provider's prompt cache, and output spent reasoning.
_DETAIL_KEYS = (
    ("input_token_details", "cache_read", "cache_read_input_tokens"),
    ("input_token_details", "cache_creation", "cache_creation_input_tokens"),
    ("output_token_details", "reasoning", "reasoning_output_tokens"),
)


@dataclass
class RoutedCall:
    """One routed model call."""

    run_id: str
    """The router's chat-model run (the chosen model's run is its child in traces)."""
    parent_run_id: str | None
    """The run that called the router (a graph node, a chain), if any."""
    step: int | None
    node: str | None
    router: str
    score: float
    threshold: float
    """The threshold of the decision that chose `model` (in a pool: the answering level's)."""
    model: str
    """The model that answered (after a fallback: the one that took over)."""
    route: str
    """The route of the decision that chose `model` (in a pool: the answering level's, so
    "strong" for a mid model too; `cascade` has every level's)."""
    routing_latency_ms: float
    """Time the router took to score the call."""
    call_latency_ms: float | None
    """Wall time of the router's run, None while unfinished: the model call (a fallback
    included), which starts once the prompt is scored (`routing_latency_ms` is the scoring)."""
    usage: dict[str, int] = field(default_factory=dict)
    """`input_tokens` / `output_tokens` / `total_tokens`, as the model reported them,
    `cache_read_input_tokens` / `cache_creation_input_tokens` when it reported prompt-cache use
    (part of `input_tokens`, priced at the cache's rates) and `reasoning_output_tokens` when it
    reported reasoning (part of `output_tokens`, priced at the reasoning rate)."""
    fallback_from: str | None = None
    error: str | None = None
    """The error message when the call failed (no model answered)."""
    cascade: list[dict[str, Any]] = field(default_factory=list)
    """In a pool: each level's decision, outermost first (`response_metadata["routing"]`'s
    `cascade`); empty for a plain router."""
    abandoned: bool = False
    """The caller stopped before the call finished (a stream closed early, a cancelled task):
    routed, and counted as a call, but with no usage to price."""
    parent_nodes: list[str] = field(default_factory=list)
    """In a subgraph (or an agent run as a node): the enclosing graphs' nodes, outermost
    first (`step` and `node` are the subgraph's own); empty at the top level."""
    cached: bool = False
    """Answered from a LangChain LLM cache (the router's `cache=` or the model's own): `usage`
    has the first call's counts, and the savings report prices the call at 0."""

    @property
    def strongest(self) -> bool:
        """Whether the most capable model answered: `route` is "strong" at every level."""
        return strongest_route({"route": self.route, "cascade": self.cascade}) == "strong"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RoutingSummary:
    """Totals over a run's routed calls."""

    calls: int
    strong_calls: int
    strong_share: float
    """Share of calls answered by the strong model (0 when there were none). In a pool, by its
    most capable model (`RoutedCall.strongest`): under `RouteLLMChat(strong="openai/o1",
    weak=routed_pool([...]), controller=...)`, o1's share, the one the controller holds."""
    calls_per_model: dict[str, int]
    tokens_per_model: dict[str, dict[str, int]]
    """Tokens each model processed for these calls: an answer from a LangChain LLM cache
    processed none (its usage is the first call's), so it adds nothing here."""
    calls_per_node: dict[str, Counter]
    """Per graph node: how many calls went to each route ("strong" as in `strong_calls`)."""
    fallbacks: int
    errors: int
    mean_routing_latency_ms: float | None
    cached: int = 0
    """Answered calls that came from a LangChain LLM cache (`RoutedCall.cached`)."""
    abandoned: int = 0
    """Calls the caller stopped before they finished (`RoutedCall.abandoned`): counted in
    `calls` and the shares, with no tokens."""
    routing_errors: int = 0
    """Calls that failed before any model was called (an empty prompt, the router or its
    remote embedder down; `RoutingCallbackHandler.routing_errors` has the errors): never
    routed, so not in `calls`."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["calls_per_node"] = {k: dict(v) for k, v in self.calls_per_node.items()}
        return data

    def format(self) -> str:
        """A short plain-text report."""
        lines = [
            f"routed calls: {self.calls}  strong: {self.strong_calls} "
            f"({self.strong_share:.0%})  fallbacks: {self.fallbacks}  errors: {self.errors}"
            + (f"  cached: {self.cached}" if self.cached else "")
            + (f"  abandoned: {self.abandoned}" if self.abandoned else "")
            + (f"  routing errors: {self.routing_errors}" if self.routing_errors else ""),
        ]
        if self.mean_routing_latency_ms is not None:
            lines.append(f"mean routing latency: {self.mean_routing_latency_ms:.2f} ms")
        for model, count in sorted(self.calls_per_model.items()):
            tokens = self.tokens_per_model.get(model, {})
            lines.append(
                f"  {model}: {count} calls, {tokens.get('input_tokens', 0)} in / "
                f"{tokens.get('output_tokens', 0)} out tokens"
            )
        for node, routes in sorted(self.calls_per_node.items()):
            shares = ", ".join(f"{route} {n}" for route, n in sorted(routes.items()))
            lines.append(f"  node {node}: {shares}")
        return "\n".join(lines)


class RoutingCallbackHandler(BaseCallbackHandler):
    """Records every `RouteLLMChat` decision seen by the callbacks of a run."""

    run_inline = True  # cheap bookkeeping: no thread hop in async runs
    raise_error = False

    def __init__(self) -> None:
        self.calls: list[RoutedCall] = []
        self.routing_errors: list[str] = []
        """Calls that failed before any model was called, as "ErrorType: message"."""
        self._started: dict[UUID, tuple[float, RoutedCall | None]] = {}
        # router runs of `generate()` / `agenerate()`, whose decision comes with the reply
        self._undecided: dict[UUID, tuple[UUID | None, dict[str, Any]]] = {}
        self._unrouted: set[UUID] = set()
        self._lock = threading.Lock()

    # -- callbacks -------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        routing = metadata.get("routing")
        if metadata.get("ls_provider") == "routellm" and ROUTING_ERROR_TAG in (tags or ()):
            with self._lock:  # a call that failed before it was routed: its error follows
                self._unrouted.add(run_id)
            return
        if metadata.get("ls_provider") != "routellm":
            return  # not a router run (e.g. another model in the same chain)
        if not isinstance(routing, Mapping):
            # `generate()` / `agenerate()` decide inside the run: the decision, on the reply,
            # completes the record when the run ends
            with self._lock:
                self._started[run_id] = (time.perf_counter(), None)
                self._undecided[run_id] = (parent_run_id, dict(metadata))
            return
        call = _call_from(routing, run_id, parent_run_id, metadata)
        with self._lock:
            self._started[run_id] = (time.perf_counter(), call)

    def _finish(self, run_id: UUID, routing: Mapping[str, Any] | None = None) -> RoutedCall | None:
        """The call started under `run_id` (None if it was not a router run), timed; a run
        started without its decision takes it from `routing` (None: unknown, not recorded)."""
        with self._lock:
            started = self._started.pop(run_id, None)
            undecided = self._undecided.pop(run_id, None)
        if started is None:
            return None
        start, call = started
        if call is None:
            if undecided is None or not isinstance(routing, Mapping):
                return None
            call = _call_from(routing, run_id, *undecided)
        call.call_latency_ms = (time.perf_counter() - start) * 1000.0
        return call

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        message = _first_message(response)
        routing = (message.response_metadata.get("routing") if message is not None else None) or (
            (response.llm_output or {}).get("routing")
        )
        call = self._finish(run_id, routing)
        if call is None:
            return
        if routing:  # the final decision: after a fallback (or in a pool), the model that
            call.model = routing["model"]  # answered, and the threshold its decision used
            call.route = routing["route"]
            call.threshold = float(routing["threshold"])
            call.fallback_from = routing.get("fallback_from")
            call.cascade = [dict(level) for level in routing.get("cascade") or ()]
        usage = getattr(message, "usage_metadata", None) or {}
        call.usage = {k: int(usage[k]) for k in _TOKEN_KEYS if k in usage}
        call.cached = cache_hit(usage)
        for side, detail, key in _DETAIL_KEYS:  # priced apart: the savings report needs them
            count = (usage.get(side) or {}).get(detail)
            if count:
                call.usage[key] = int(count)
        self._append(call)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            if run_id in self._unrouted:
                self._unrouted.discard(run_id)
                self.routing_errors.append(f"{type(error).__name__}: {error}")
                return
        call = self._finish(run_id)
        if call is None:
            return
        if isinstance(error, GeneratorExit | asyncio.CancelledError):
            call.abandoned = True  # the caller went away: no model failed
        else:
            call.error = f"{type(error).__name__}: {error}"
        self._append(call)

    # -- results ---------------------------------------------------------------------------
    def savings(self, strong_model: str, prices: Mapping[str, Any] | None = None) -> SavingsReport:
        """Cost of the recorded calls vs. all-strong (`routellm_lc.costs.SavingsReport`)."""
        with self._lock:
            calls = list(self.calls)
        return savings_report(calls, strong_model, prices)

    def _append(self, call: RoutedCall) -> None:
        with self._lock:
            self.calls.append(call)

    def reset(self) -> None:
        """Forget the recorded calls and routing errors. Calls still running are kept: they
        are recorded when they finish (clearing them lost every call that spanned a reset)."""
        with self._lock:
            self.calls.clear()
            self.routing_errors.clear()

    def take(self) -> RoutingCallbackHandler:
        """Move the recorded calls and routing errors, atomically, into a new handler (for its
        `summary()` and `savings()`) and start a fresh interval here: every call lands in
        exactly one interval, those running now in the next.

        ```python
        interval = handler.take()        # e.g. every minute
        report(interval.summary(), interval.savings("gpt-4o"))
        ```
        """
        interval = RoutingCallbackHandler()
        with self._lock:
            interval.calls, self.calls = self.calls, []
            interval.routing_errors, self.routing_errors = self.routing_errors, []
        return interval

    def summary(self) -> RoutingSummary:
        """Strong share, calls and tokens per model, routes per node, over recorded calls."""
        with self._lock:
            calls = list(self.calls)
            routing_errors = len(self.routing_errors)
        answered = [c for c in calls if c.error is None]
        strong = sum(c.strongest for c in answered)
        tokens: dict[str, dict[str, int]] = {}
        for call in answered:
            totals = tokens.setdefault(call.model, dict.fromkeys(_TOKEN_KEYS, 0))
            if call.cached:
                continue  # served from a cache: the model processed nothing
            for key, value in call.usage.items():
                totals[key] = totals.get(key, 0) + value
        per_node: dict[str, Counter] = {}
        for call in answered:
            if call.node is not None:
                per_node.setdefault(call.node, Counter())[
                    "strong" if call.strongest else "weak"
                ] += 1
        latencies = [c.routing_latency_ms for c in calls]
        return RoutingSummary(
            calls=len(answered),
            strong_calls=strong,
            strong_share=strong / len(answered) if answered else 0.0,
            calls_per_model=dict(Counter(c.model for c in answered)),
            tokens_per_model=tokens,
            calls_per_node=per_node,
            fallbacks=sum(c.fallback_from is not None for c in answered),
            errors=len(calls) - len(answered),
            mean_routing_latency_ms=sum(latencies) / len(latencies) if latencies else None,
            cached=sum(c.cached for c in answered),
            abandoned=sum(c.abandoned for c in answered),
            routing_errors=routing_errors,
        )


def savings_report(
    calls: list[RoutedCall], strong_model: str, prices: Mapping[str, Any] | None = None
) -> SavingsReport:
    """A `routellm_lc.costs.SavingsReport` over answered calls (LiteLLM's price map, or
    `prices`: model → `costs.Price`)."""
    # an abandoned call has no usage to price: left out, as its cost is unknown
    answered = [c for c in calls if c.error is None and not c.abandoned]
    return SavingsReport.from_calls(
        [
            (
                {"model": c.model, "route": c.route, "cascade": c.cascade},
                {**c.usage, "total_cost": 0} if c.cached else c.usage,
            )
            for c in answered
        ],
        strong_model,
        prices,
    )


def _call_from(
    routing: Mapping[str, Any],
    run_id: UUID,
    parent_run_id: UUID | None,
    metadata: Mapping[str, Any],
) -> RoutedCall:
    extra = routing.get("extra") or {}
    return RoutedCall(
        run_id=str(run_id),
        parent_run_id=str(parent_run_id) if parent_run_id else None,
        step=extra.get("step", metadata.get("langgraph_step")),
        node=extra.get("node", metadata.get("langgraph_node")),
        router=routing["router"],
        score=float(routing["score"]),
        threshold=float(routing["threshold"]),
        model=routing["model"],
        route=routing["route"],
        routing_latency_ms=float(routing["latency_ms"]),
        call_latency_ms=None,
        parent_nodes=list(extra.get("parent_nodes") or ()),
    )


def _first_message(response: LLMResult) -> Any:
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            if message is not None:
                return message
    return None
