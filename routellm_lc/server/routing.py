"""The server's routing step: model names → (router, threshold) → `decide`, as RouteLLMChat does.

Routers come from `shared_router` and decisions from `routellm_lc.decision.decide`, so the
server and `RouteLLMChat` give the same decision for the same router, threshold and prompt.

Routers that score in microseconds (`random`) are called inline. Routers that take a
millisecond or more (`mf` embeds the prompt) run in one worker thread, so the event loop keeps
relaying other requests meanwhile; requests that arrive while the worker is busy are scored
together in the next call (batch-first routers are much faster per prompt in a batch). Nothing
waits to fill a batch: a lone request is scored at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from routellm_lc.decision import RoutingDecision, decide, validate_threshold
from routellm_lc.errors import InvalidThresholdError
from routellm_lc.routers.base import as_probabilities, router_label
from routellm_lc.server.errors import APIError

MODEL_PREFIX = "router-"
#: Routers whose warm single-prompt call is faster than this are called on the event loop:
#: a hop to the worker thread and back costs more than they do.
INLINE_BELOW_S = 0.0002
MAX_BATCH = 64


def parse_model_name(
    name: Any, served: Sequence[str], default_threshold: float
) -> tuple[str, float]:
    """`router-<router>-<threshold>` (or `router-<router>`) → (router, threshold), else 400."""
    if not isinstance(name, str) or not name.startswith(MODEL_PREFIX):
        raise APIError(
            400,
            f"Model {name!r} is not a router model name. Use 'router-<router>-<threshold>', "
            f"e.g. 'router-{served[0]}-0.5' (served routers: {', '.join(served)}).",
            param="model",
            code="invalid_model",
        )
    rest = name[len(MODEL_PREFIX) :]
    # router names may hold hyphens (a plugin's `keyword-router`), and so may thresholds
    # (`1e-05`): the longest served name that the model name starts with is the router
    matches = [r for r in served if rest == r or rest.startswith(r + "-")]
    if not matches:  # OpenAI answers a model it does not have with 404
        asked = _NAMED_THRESHOLD.fullmatch(rest)
        router = asked.group(1) if asked else rest
        raise APIError(
            404,
            f"Router {router!r} is not served here. Served routers: {', '.join(served)} "
            f"(model names 'router-<router>-<threshold>').",
            param="model",
            code="model_not_found",
        )
    router = max(matches, key=len)
    if rest == router:
        return router, default_threshold
    threshold_text = rest[len(router) + 1 :]
    try:
        if not _DECIMAL.fullmatch(threshold_text):  # `float` would take "0.1_1" and " 0.2"
            raise InvalidThresholdError(
                f"threshold must be a decimal number in [0, 1], got {threshold_text!r}."
            )
        return router, validate_threshold(float(threshold_text))
    except InvalidThresholdError as exc:
        raise APIError(
            400,
            f"Bad threshold in model {name!r}: {exc} Use 'router-{router}-<threshold>', "
            f"e.g. 'router-{router}-0.5'.",
            param="model",
            code="invalid_threshold",
        ) from None


_DECIMAL = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_NAMED_THRESHOLD = re.compile(r"(.+?)-(?:" + _DECIMAL.pattern + r")?")


class RouterSlot:
    """One served router: scores inline or through the batching worker."""

    def __init__(
        self,
        name: str,
        router: Any,
        strong: str,
        weak: str,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.name = name
        self.router = router
        self.strong = strong
        self.weak = weak
        self.executor = executor
        self.inline = False
        self._pending: list[tuple[str, float, asyncio.Future]] = []
        self._draining = False
        self._drainer: asyncio.Task | None = None  # held: the loop keeps only weak references

    def warm_up(self) -> float:
        """Score once (first calls build sessions), time a second call, pick inline or worker."""
        scores = self.router.strong_win_rate(["warm-up"])
        as_probabilities(scores, 1, router_label(self.router))  # a broken router
        started = time.perf_counter()  # stops the server starting, not every request
        self.router.strong_win_rate(["How do I sort a list in Python?"])
        elapsed = time.perf_counter() - started
        self.inline = elapsed < INLINE_BELOW_S
        return elapsed

    def decide_now(self, texts: Sequence[str], threshold: float) -> list[RoutingDecision]:
        return decide(
            self.router,
            texts,
            threshold,
            strong_model=self.strong,
            weak_model=self.weak,
            router_name=self.name,
        )

    async def decide(self, text: str, threshold: float) -> RoutingDecision:
        if self.inline:
            return self.decide_now([text], threshold)[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((text, threshold, future))
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    decisions = await loop.run_in_executor(self.executor, self._score, batch)
                except Exception as exc:  # a router failure fails its batch, not the server
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), decision in zip(batch, decisions, strict=True):
                    if not future.done():  # the client may have gone away
                        future.set_result(decision)
        finally:
            self._draining = False

    def _score(self, batch: list[tuple[str, float, Any]]) -> list[RoutingDecision]:
        """One `decide` call per distinct threshold in the batch (almost always one)."""
        by_threshold: dict[float, list[int]] = {}
        for index, (_, threshold, _) in enumerate(batch):
            by_threshold.setdefault(threshold, []).append(index)
        results: list[Any] = [None] * len(batch)
        for threshold, indices in by_threshold.items():
            decisions = self.decide_now([batch[i][0] for i in indices], threshold)
            for index, decision in zip(indices, decisions, strict=True):
                results[index] = decision
        return results


class RoutingService:
    """The served routers, loaded once (through `shared_router`) at start-up."""

    def __init__(
        self,
        routers: Sequence[str],
        checkpoints: Mapping[str, str],
        strong: str,
        weak: str,
        default_threshold: float,
        device: str | None = None,
    ) -> None:
        self.names = list(dict.fromkeys(routers))
        self.device = device
        self.checkpoints = dict(checkpoints)
        self.strong = strong
        self.weak = weak
        self.default_threshold = default_threshold
        self.slots: dict[str, RouterSlot] = {}
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: Any) -> RoutingService:
        """The routers a `ServerConfig` names (not loaded yet: call `load`)."""
        return cls(
            config.routers,
            config.checkpoints,
            config.strong,
            config.weak,
            config.threshold,
            device=config.device,
        )

    def load(self) -> dict[str, float]:
        """Load and warm every router; returns the warm single-prompt latency per router."""
        from routellm_lc.chat_model import shared_router
        from routellm_lc.routers.base import get_router_class

        for name in self.names:
            get_router_class(name)  # unknown names fail before anything heavy loads
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="routellm-lc-routing")
        timings = {}
        for name in self.names:
            router = shared_router(name, self.checkpoints.get(name), device=self.device)
            slot = RouterSlot(name, router, self.strong, self.weak, self._executor)
            timings[name] = slot.warm_up()
            self.slots[name] = slot
        return timings

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def resolve(self, model: Any) -> tuple[RouterSlot, float]:
        router, threshold = parse_model_name(model, self.names, self.default_threshold)
        return self.slots[router], threshold

    def model_ids(self) -> list[str]:
        # repr: the shortest text that reads back as the same float (":g" rounded 0.1234567)
        return [f"{MODEL_PREFIX}{name}-{self.default_threshold!r}" for name in self.names]
