"""Routing over a pool of more than two models: the cheapest model predicted good enough.

RouteLLM routes between two models. A pool orders models from cheapest to most capable and
cuts the router's score into bands with increasing thresholds t1 < t2 < …: a prompt scoring
below t1 goes to the cheapest model, one in [t1, t2) to the next, and so on; at or above the
last threshold, the most capable model answers. With two models it is exactly RouteLLM's rule.

It is built from `RouteLLMChat` itself — each level is a strong/weak router whose strong side
is the rest of the pool — so everything a `RouteLLMChat` does (tools, structured output,
streaming, batch, fallback, tracing, graph events) works unchanged. All levels share one
router instance, and a prompt is scored once: each inner level cuts the score the level above
gave the call, so every model answers exactly its band, even with a non-deterministic router
(`random`), and a slow router runs once per prompt, not once per level.

Options given to `routed_pool` go to every level (a copy of the pool, `model_copy(update=...)`
or `configurable_fields`, gives them to every level too), but the per-call and observability
ones (callbacks, tags, metadata, verbose, cache, rate_limiter, name), which belong to the
outermost level, the pool's one run per call: a handler sees each call once, a rate limiter is
acquired once, and the cache keys an answer by the model of the prompt's band.

Each answer's `response_metadata["routing"]` names the model that answered (its `model`,
`route`, `score` and `threshold` are the answering level's), `cascade` lists the decision of
every level the call went through, outermost first, and `fallback_from` names the first model
that failed when any level fell back (so `RoutingCallbackHandler` counts the fallback). When
every model of an inner level failed (say gpt-4o and o1 for a mid-band prompt) and an outer
level's cheaper model answered, that inner level is in `cascade` too, marked `"failed": True`.
Decision events (`astream_events`, LangGraph's custom stream) name real models only: one per
model tried, all on the outermost router run. In traces, a level whose choice is the rest of
the pool is tagged with its route only: the next level's run names the model
(`routellm:model=<model>`), never the pool's `router-<name>-<threshold>`.

A pool takes no `controller`: a `StrongShareController` moves one threshold and a pool has one
per band, and how the others should move with it is a policy of its own. To hold the share of
the most capable model, route between it and a pool of the others — the controller moves that
one cut, the fixed cuts split the rest:

```python
RouteLLMChat(
    strong="openai/o1",
    weak=routed_pool(["openai/gpt-4o-mini", "openai/gpt-4o"], [0.4]),
    controller=StrongShareController(0.2),
)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel

from routellm_lc.chat_model import POOL_OUTER_ONLY, RouteLLMChat, shared_router
from routellm_lc.decision import validate_threshold
from routellm_lc.routers.base import Router


def routed_pool(
    models: Sequence[BaseChatModel | str],
    thresholds: Sequence[float],
    *,
    router: str | Router = "mf",
    router_checkpoint: str | None = None,
    **options: Any,
) -> RouteLLMChat:
    """A chat model that routes each call to one model of `models`.

    Args:
        models: LangChain chat models or LiteLLM strings, cheapest (weakest) first.
        thresholds: len(models) − 1 increasing cut points in [0, 1]; model i answers scores in
            [thresholds[i − 1], thresholds[i]).
        router, router_checkpoint: the router every level shares.
        options: any other `RouteLLMChat` field but `controller` (see the module's
            docstring). Pool-wide options (api_base, api_key, timeout, max_retries, route_on,
            fallback, …) go to every level, and a copy with others (`model_copy(update=...)`,
            `configurable_fields`) gives them to every level too. The per-call and
            observability ones (callbacks, tags, metadata, verbose, cache, rate_limiter, name:
            `POOL_OUTER_ONLY`) go to the outermost level only, the pool's one run per call:
            a handler sees each call once, a rate limiter is acquired once.
    """
    if options.get("controller") is not None:
        raise ValueError(
            "routed_pool takes no controller: a StrongShareController moves one threshold, and "
            "a pool has one per band. To hold the share of the most capable model, route "
            "between it and a pool of the others: RouteLLMChat(strong=models[-1], "
            "weak=routed_pool(models[:-1], thresholds[:-1]), controller=...); for two models, "
            "RouteLLMChat(strong=..., weak=..., controller=...). Or calibrate fixed thresholds "
            "on your traffic (`routellm-lc calibrate --prompts ...`)."
        )
    if len(models) < 2:
        raise ValueError("A pool needs at least two models.")
    if len(thresholds) != len(models) - 1:
        raise ValueError(
            f"A pool of {len(models)} models needs {len(models) - 1} thresholds, "
            f"got {len(thresholds)}."
        )
    cuts = [validate_threshold(t) for t in thresholds]
    if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
        raise ValueError(f"Pool thresholds must increase strictly, got {cuts}.")
    shared = router if isinstance(router, Router) else shared_router(router, router_checkpoint)
    outer_only = {name: options.pop(name) for name in list(options) if name in POOL_OUTER_ONLY}
    pool: BaseChatModel | str = models[-1]
    for index in reversed(range(len(cuts))):
        level = RouteLLMChat(
            weak=models[index],
            strong=pool,
            threshold=cuts[index],
            router=shared,
            **options,
            **(outer_only if index == 0 else {}),
        )
        level._follows_outer = index > 0  # an inner level: a copy of the pool gives it options
        pool = level
    assert isinstance(pool, RouteLLMChat)
    return pool
