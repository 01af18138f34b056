"""The server's routing step: model names → (router, threshold) → `decide`, as RouteLLMChat does.

Routers come from `shared_router` and decisions from `routellm_lc.decision.decide`, so the
server and `RouteLLMChat` give the same decision for the same router, threshold and prompt.

With a target strong share (`serve --strong-share`), `router-<router>` (no threshold) routes
through one `StrongShareController` per router: each such request gets the threshold in force
when it is scored, and its score then moves the controller, in arrival order (a batch's items
in order), as `RouteLLMChat(controller=...)` routes. Named thresholds are never observed.

Routers that score in microseconds (`random`) are called inline. Routers that take a
millisecond or more (`mf` embeds the prompt) run in one worker thread, so the event loop keeps
relaying other requests meanwhile; requests that arrive while the worker is busy are scored
together in the next call (batch-first routers are much faster per prompt in a batch). Nothing
waits to fill a batch: a lone request is scored at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from routellm_lc.budget import StrongShareController
from routellm_lc.decision import RoutingDecision, decide
from routellm_lc.errors import RouterModelNameError
from routellm_lc.files import atomic_write
from routellm_lc.model_names import ROUTER_MODEL_PREFIX, parse_router_model
from routellm_lc.routers.base import as_probabilities, router_label
from routellm_lc.server.config import ServerConfigError
from routellm_lc.server.errors import APIError

log = logging.getLogger("routellm_lc.server")

MODEL_PREFIX = ROUTER_MODEL_PREFIX
#: Routers whose warm single-prompt call is faster than this are called on the event loop:
#: a hop to the worker thread and back costs more than they do.
INLINE_BELOW_S = 0.0002
MAX_BATCH = 64
#: Seconds between saves of the controllers' state while it changes (and one on shutdown).
SAVE_EVERY_S = 10.0


_STATUS = {"invalid_model": 400, "model_not_found": 404, "invalid_threshold": 400}


def parse_model_name(
    name: Any, served: Sequence[str], default_threshold: float | None
) -> tuple[str, float | None]:
    """`router-<router>-<threshold>` (or `router-<router>`: `default_threshold`) → (router,
    threshold), else 400 (404 for a router not served, as OpenAI answers a model it does not
    have)."""
    try:
        return parse_router_model(name, served, default_threshold)
    except RouterModelNameError as exc:
        raise APIError(_STATUS[exc.code], str(exc), param="model", code=exc.code) from None


class RouterSlot:
    """One served router: scores inline or through the batching worker. With a `controller`,
    a request without a threshold (None) routes at the controller's."""

    def __init__(
        self,
        name: str,
        router: Any,
        strong: str,
        weak: str,
        executor: ThreadPoolExecutor,
        controller: StrongShareController | None = None,
    ) -> None:
        self.name = name
        self.router = router
        self.strong = strong
        self.weak = weak
        self.executor = executor
        self.controller = controller
        self.inline = False
        self._pending: list[tuple[str, float | None, asyncio.Future]] = []
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

    def decide_controlled(self, texts: Sequence[str]) -> list[RoutingDecision]:
        """One router call for `texts`; each gets the controller's threshold in force at its
        position, and the controller sees its score after (RouteLLMChat's `_in_order`): a batch
        routes as its requests would one by one."""
        controller = self.controller
        assert controller is not None, f"router {self.name!r} has no controller"
        decisions = self.decide_now(texts, controller.threshold())
        thresholds = controller.route_in_order([d.score for d in decisions])
        routed = []
        for decision, threshold in zip(decisions, thresholds, strict=True):
            strong = decision.score >= threshold
            routed.append(
                replace(
                    decision,
                    threshold=threshold,
                    route="strong" if strong else "weak",
                    model=self.strong if strong else self.weak,
                    extra={**decision.extra, "controller": True},
                )
            )
        return routed

    async def decide(self, text: str, threshold: float | None) -> RoutingDecision:
        """The decision at `threshold`, or (None) at the controller's."""
        if self.inline:
            if threshold is None:
                return self.decide_controlled([text])[0]
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

    def _score(self, batch: list[tuple[str, float | None, Any]]) -> list[RoutingDecision]:
        """One `decide` call per distinct threshold in the batch (almost always one); the
        controller's requests (None) in arrival order."""
        by_threshold: dict[float | None, list[int]] = {}
        for index, (_, threshold, _) in enumerate(batch):
            by_threshold.setdefault(threshold, []).append(index)
        results: list[Any] = [None] * len(batch)
        for threshold, indices in by_threshold.items():
            texts = [batch[i][0] for i in indices]
            if threshold is None:
                decisions = self.decide_controlled(texts)
            else:
                decisions = self.decide_now(texts, threshold)
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
        strong_share: float | None = None,
        controller_state: str | None = None,
    ) -> None:
        self.names = list(dict.fromkeys(routers))
        self.device = device
        self.strong_share = strong_share
        """Target of the per-router `StrongShareController`s (None: fixed thresholds)."""
        self.controller_state = controller_state
        """Where the controllers' state is loaded from (if there) and saved to (every
        `SAVE_EVERY_S` seconds when it changed, and on shutdown)."""
        self._other_states: dict[str, Any] = {}  # saved states of routers not served now
        self._saved: dict[str, Any] | None = None  # the served states last saved or loaded
        self._save_lock = threading.Lock()  # one write at a time (they share a temporary file)
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
            strong_share=config.strong_share,
            controller_state=config.controller_state,
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
            controller = None
            if self.strong_share is not None:
                controller = StrongShareController(
                    self.strong_share, initial_threshold=self.default_threshold
                )
            slot = RouterSlot(name, router, self.strong, self.weak, self._executor, controller)
            timings[name] = slot.warm_up()  # not observed: it is no request
            self.slots[name] = slot
        self.load_controller_state()
        return timings

    def load_controller_state(self) -> None:
        """Resume the controllers from `controller_state`, if that file exists
        (ServerConfigError if it cannot be read or does not hold controller states)."""
        if self.controller_state is None or self.strong_share is None:
            return
        path = Path(self.controller_state)
        self._check_state_folder(path)
        if not path.exists():
            log.info("controller state %s does not exist yet: controllers start afresh", path)
            self._saved = self._served_states()
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ServerConfigError(f"Cannot read the controller state {path}: {exc}.") from None
        if not isinstance(data, dict):
            raise ServerConfigError(
                f"The controller state {path} must map router names to controller states."
            )
        for name, state in data.items():
            slot = self.slots.get(name)
            if slot is None or slot.controller is None:
                log.warning("controller state %s: router %r is not served (kept as is)", path, name)
                self._other_states[name] = state
                continue
            try:
                if not isinstance(state, dict):
                    raise ValueError("not a controller state (a mapping)")
                slot.controller.load_state(state)
            except (ValueError, TypeError) as exc:
                raise ServerConfigError(
                    f"The controller state {path} for router {name!r} is invalid: {exc}."
                ) from None
            log.info(
                "router %s: controller state loaded from %s (threshold %r)",
                name,
                path,
                slot.controller.threshold(),
            )
        self._saved = self._served_states()

    @staticmethod
    def _check_state_folder(path: Path) -> None:
        """The state is written to a temporary file next to `path`, then renamed over it: its
        folder must exist (created if missing) and take files, or the state would be lost at
        the first save (ServerConfigError now instead)."""
        if path.is_dir():
            raise ServerConfigError(f"The controller state {path} is a folder: name a file.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if isinstance(exc, FileExistsError | NotADirectoryError):
                why = "a file stands in its path"
            raise ServerConfigError(
                f"Cannot save the controller state to {path}: its folder {path.parent} cannot "
                f"be created or written to ({why})."
            ) from None

    def _served_states(self) -> dict[str, Any]:
        return {
            name: slot.controller.state().to_dict()
            for name, slot in self.slots.items()
            if slot.controller is not None
        }

    def _other_states_now(self, path: Path) -> dict[str, Any]:
        """The file's entries for routers not served here, as it holds them now (another server
        sharing the file may have saved its own since this one started); those read last if
        the file cannot be read, none if it is gone."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            data = exc
        if not isinstance(data, dict):
            log.warning(
                "controller state %s cannot be read back (%s): the entries of routers not "
                "served here are written as last read",
                path,
                data if isinstance(data, Exception) else "not a mapping",
            )
            return dict(self._other_states)
        served = {name for name, slot in self.slots.items() if slot.controller is not None}
        self._other_states = {name: s for name, s in data.items() if name not in served}
        return dict(self._other_states)

    def save_controller_state(self, *, only_if_changed: bool = False) -> Path | None:
        """Write the controllers' state to `controller_state` atomically (a temporary file in
        the same folder, then renamed over it); None when there is nothing to save (with
        `only_if_changed`: also when no state changed since the last save or load).

        Entries of routers not served here are written as the file holds them now, so servers
        sharing one file (serving different routers) do not undo each other's saves."""
        if self.controller_state is None or self.strong_share is None or not self.slots:
            return None
        with self._save_lock:
            served = self._served_states()
            if only_if_changed and served == self._saved:
                return None
            path = Path(self.controller_state)
            states = {**self._other_states_now(path), **served}
            data = json.dumps(states).encode("utf-8")
            atomic_write(path, lambda file: file.write(data), fsync=True, private=True)
            self._saved = served
        return path

    async def save_periodically(self) -> None:
        """Save the controllers' state every `SAVE_EVERY_S` seconds when it changed (written in
        a thread, off the event loop) until cancelled: a server stopped before its lifespan
        shutdown (a second Ctrl+C while connections drain, `docker stop`'s grace period, a
        SIGKILL) loses at most the last few seconds of adaptation."""
        failing = False
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            try:
                await asyncio.to_thread(self.save_controller_state, only_if_changed=True)
            except Exception as exc:  # a full disk: say so once, keep serving, try again
                if not failing:
                    log.warning(
                        "could not save the controller state to %s (retrying every %g s): %s",
                        self.controller_state,
                        SAVE_EVERY_S,
                        exc,
                    )
                failing = True
            else:
                if failing:
                    log.warning("controller state saved to %s again", self.controller_state)
                failing = False

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def resolve(self, model: Any) -> tuple[RouterSlot, float | None]:
        """The slot and threshold for a model name; None: the slot's controller decides."""
        router, threshold = parse_model_name(model, self.names, None)
        slot = self.slots[router]
        if threshold is None and slot.controller is None:
            threshold = self.default_threshold
        return slot, threshold

    def model_ids(self) -> list[str]:
        if self.strong_share is not None:  # the controlled ids: no threshold to name
            return [f"{MODEL_PREFIX}{name}" for name in self.names]
        # repr: the shortest text that reads back as the same float (":g" rounded 0.1234567)
        return [f"{MODEL_PREFIX}{name}-{self.default_threshold!r}" for name in self.names]

    def thresholds(self) -> dict[str, float]:
        """The threshold `router-<router>` routes at now, per router."""
        return {
            name: slot.controller.threshold() if slot.controller else self.default_threshold
            for name, slot in self.slots.items()
        }

    def controller_shares(self) -> dict[str, float]:
        """Per controlled router, the share of its controller's window at or above its
        threshold."""
        return {
            name: slot.controller.state().strong_share_window
            for name, slot in self.slots.items()
            if slot.controller is not None
        }
