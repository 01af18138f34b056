"""RouteLLM's `Controller`, over routellm-lc's routers and routing step.

Code written for RouteLLM changes one import::

    from routellm_lc import Controller   # was: from routellm.controller import Controller

    client = Controller(routers=["mf"], strong_model="gpt-4o", weak_model="gpt-4o-mini")
    response = client.chat.completions.create(
        model="router-mf-0.2", messages=[{"role": "user", "content": "Hello!"}]
    )

A threshold belongs to its router's checkpoint: RouteLLM's published `router-mf-0.11593` is a
50% strong share with *its* `mf` checkpoint; with the bundled one it sends most calls strong
(a warning says so). Calibrate one for your traffic (`routellm-lc calibrate`).

The same methods and behaviour as RouteLLM's: `chat.completions.create` / `acreate` (and
`completion` / `acompletion`) take the OpenAI chat-completions arguments, route on the model
name `router-<router>-<threshold>` (or `router=` and `threshold=`), and return LiteLLM's
response; `route` names the model a prompt goes to; `batch_calculate_win_rate` scores prompts
(a pandas Series in, a Series out); `model_counts[router][model]` counts routed calls;
`RoutingError` for a missing or unknown router or a bad threshold.

What differs, on purpose: scoring is local (`mf`: the bundled checkpoint and embedder, unless
`config` names another checkpoint, e.g. RouteLLM's own with `ROUTELLM_CONFIG`); the scoring
is the same step `RouteLLMChat` and the server use, so all three decide alike; every LiteLLM
call has a timeout and bounded retries; and each response carries its decision in
`response._hidden_params["routing"]`.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from routellm_lc.decision import (
    RouteOn,
    RoutingDecision,
    decide,
    routing_text,
    validate_threshold,
)
from routellm_lc.errors import InvalidThresholdError, RouterModelNameError, RoutingError
from routellm_lc.model_names import litellm_model_string, parse_router_model
from routellm_lc.routers.base import as_probabilities

logger = logging.getLogger("routellm_lc")

#: Thresholds RouteLLM publishes for its own checkpoints (its README: `router-mf-0.11593`, a
#: 50% strong share on Arena traffic with `routellm/mf_gpt4_augmented`).
ROUTELLM_PUBLISHED_THRESHOLDS = {("mf", 0.11593)}

#: RouteLLM's `mf` architecture settings (its `MatrixFactorizationRouter` arguments), which a
#: checkpoint's config.json holds here.
ROUTELLM_MF_ARCHITECTURE_KEYS = ("hidden_size", "num_models", "text_dim", "num_classes", "use_proj")

#: `config` for RouteLLM's published checkpoints (RouteLLM's own default config), for routers
#: that can load them: their `mf` embeds with OpenAI's API (`OPENAI_API_KEY`, network), the
#: others download from the Hugging Face Hub. Without a `config`, routers load this package's
#: bundled defaults and score locally.
ROUTELLM_CONFIG: dict[str, dict[str, Any]] = {
    "mf": {"checkpoint_path": "routellm/mf_gpt4_augmented"},
    "bert": {"checkpoint_path": "routellm/bert_gpt4_augmented"},
    "causal_llm": {"checkpoint_path": "routellm/causal_llm_gpt4_augmented"},
}

#: RouteLLM's name for its default config (`from routellm.controller import
#: GPT_4_AUGMENTED_CONFIG`), without its sw_ranking Arena-dataset keys (see `ROUTELLM_CONFIG`).
GPT_4_AUGMENTED_CONFIG = ROUTELLM_CONFIG

#: Prompts scored per router call by `batch_calculate_win_rate` with a progress bar.
PROGRESS_CHUNK = 256


@dataclass
class ModelPair:
    strong: str
    weak: str


class Controller:
    """RouteLLM's `Controller` interface over routellm-lc's routers (see the module's
    docstring).

    Args:
        routers: the router names to load (`mf`, `sw_ranking`, `bert`, `causal_llm`,
            `random`, or a plugin's).
        strong_model, weak_model: LiteLLM model strings (`gpt-4o`, `openai/gpt-4o`,
            `anthropic/claude-3-5-sonnet-20240620`; LangChain's `openai:gpt-4o` too).
        config: per router, its options: `checkpoint_path` (RouteLLM's key) or `checkpoint`,
            a local folder or Hub id; any other key goes to the router's `from_pretrained`.
            None: every router's default, as `load_router(name)` gives it: `mf` the bundled
            checkpoint; `bert` and `causal_llm` RouteLLM's published ones (downloaded from the
            Hub once, then scored locally); `sw_ranking` has none (give a checkpoint).
        api_base, api_key: passed to every LiteLLM call (an OpenAI-compatible endpoint).
        progress_bar: progress bars while loading routers and in `batch_calculate_win_rate`.
        timeout, max_retries: of every LiteLLM call (a call's own `timeout=` wins). LiteLLM's
            defaults (600 s and retries) look like a hang.
        route_on: `last_user` (the last user message; RouteLLM scores the last message
            whatever its role, e.g. a tool result in an agent loop) or `conversation` (the
            recent turns).
        device: the torch device of `bert` / `causal_llm` routers (None: theirs).
    """

    def __init__(
        self,
        routers: Sequence[str],
        strong_model: str,
        weak_model: str,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        progress_bar: bool = False,
        *,
        timeout: float = 60.0,
        max_retries: int = 1,
        route_on: RouteOn = "last_user",
        device: str | None = None,
    ) -> None:
        if isinstance(routers, str):  # RouteLLM would load one router per character
            routers = [routers]
        if not routers:
            raise RoutingError("Give at least one router, e.g. routers=['mf'].")
        if route_on not in ("last_user", "conversation"):
            raise ValueError(f"route_on must be 'last_user' or 'conversation', got {route_on!r}.")
        self.model_pair = ModelPair(
            strong=litellm_model_string(strong_model), weak=litellm_model_string(weak_model)
        )
        self.api_base = api_base
        self.api_key = api_key
        self.progress_bar = progress_bar
        self.timeout = timeout
        self.max_retries = max_retries
        self.route_on: RouteOn = route_on
        self.model_counts: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self._counts_lock = threading.Lock()
        config = config or {}
        self.routers: dict[str, Any] = {}
        #: routers loaded with their default checkpoint (no checkpoint in `config`)
        self._bundled = {
            name
            for name in routers
            if not {"checkpoint_path", "checkpoint"} & set(config.get(name, {}) or {})
        }
        self._warned: set[tuple[str, float]] = set()
        names: Iterable[str] = routers
        if progress_bar:
            from tqdm.auto import tqdm

            names = tqdm(routers)
        for name in names:
            if progress_bar:
                names.set_description(f"Loading {name}")  # type: ignore[attr-defined]
            self.routers[name] = _load(name, config.get(name, {}), device)
        # Some Python magic to match the OpenAI Python SDK (as RouteLLM's Controller does)
        self.chat = SimpleNamespace(
            completions=SimpleNamespace(create=self.completion, acreate=self.acompletion)
        )

    # -- routing ------------------------------------------------------------------------------
    def _validate_router_threshold(self, router: str | None, threshold: float | None) -> float:
        if router is None or threshold is None:
            raise RoutingError(
                "Router or threshold unspecified: give model='router-<router>-<threshold>', "
                "or router= and threshold=."
            )
        if router not in self.routers:
            raise RoutingError(
                f"Invalid router {router!r}. Available routers are {list(self.routers)}."
            )
        try:
            threshold = validate_threshold(threshold)
        except InvalidThresholdError as exc:
            raise RoutingError(f"Invalid threshold {threshold!r}: {exc}") from None
        key = (router, threshold)
        if key in ROUTELLM_PUBLISHED_THRESHOLDS and router in self._bundled:
            if key not in self._warned:
                self._warned.add(key)
                logger.warning(
                    "Threshold %s is RouteLLM's published one for its own %s checkpoint (a 50%% "
                    "strong share on Arena traffic); with the bundled %s checkpoint it sends "
                    "most calls to the strong model. Calibrate a threshold for your traffic "
                    "(`routellm-lc calibrate --router %s --strong-pct 0.5`), or load RouteLLM's "
                    "checkpoint (config=ROUTELLM_CONFIG).",
                    threshold,
                    router,
                    router,
                    router,
                )
        return threshold

    def _decide(self, text: str, router: str, threshold: float) -> RoutingDecision:
        return decide(
            self.routers[router],
            [text],
            threshold,
            strong_model=self.model_pair.strong,
            weak_model=self.model_pair.weak,
            router_name=router,
        )[0]

    def _route_call(
        self, kwargs: dict[str, Any], router: str | None, threshold: float | None
    ) -> RoutingDecision:
        if "model" in kwargs:  # the model name wins, as in RouteLLM; `threshold=` fills
            try:
                router, threshold = parse_router_model(
                    kwargs["model"], list(self.routers), threshold, listing="loaded routers"
                )
            except RouterModelNameError as exc:
                if exc.code != "model_not_found" or not str(kwargs["model"]).startswith("router-"):
                    raise
                raise RouterModelNameError(
                    f"Invalid model {kwargs['model']!r}: its router is not loaded. Available "
                    f"routers are {list(self.routers)}.",
                    code=exc.code,
                ) from None
        threshold = self._validate_router_threshold(router, threshold)
        assert router is not None
        if "messages" not in kwargs:
            raise RoutingError("messages is required: the conversation to route and answer.")
        decision = self._decide(routing_text(kwargs["messages"], self.route_on), router, threshold)
        with self._counts_lock:
            self.model_counts[router][decision.model] += 1
        return decision

    def route(self, prompt: str, router: str, threshold: float) -> str:
        """The model `prompt` goes to with `router` at `threshold` (not counted)."""
        threshold = self._validate_router_threshold(router, threshold)
        return self._decide(prompt, router, threshold).model

    def batch_calculate_win_rate(self, prompts: Any, router: str) -> Any:
        """The strong model's predicted win rate for each prompt, in one router pass (chunks
        of `PROGRESS_CHUNK` with a progress bar). A pandas Series in gives a Series out with
        the same index (RouteLLM's evaluation code passes Series); any other sequence gives a
        numpy array."""
        self._validate_router_threshold(router, 0.0)
        texts = [str(p) for p in prompts]
        scorer = self.routers[router]
        if self.progress_bar and len(texts) > PROGRESS_CHUNK:
            from tqdm.auto import tqdm

            parts = [
                scorer.strong_win_rate(texts[i : i + PROGRESS_CHUNK])
                for i in tqdm(range(0, len(texts), PROGRESS_CHUNK), desc=f"Scoring ({router})")
            ]
            raw: Any = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
        else:
            raw = scorer.strong_win_rate(texts) if texts else np.zeros(0)
        scores = as_probabilities(raw, len(texts), router)
        if type(prompts).__module__.split(".")[0] == "pandas" and hasattr(prompts, "index"):
            import pandas as pd

            return pd.Series(scores, index=prompts.index, name=getattr(prompts, "name", None))
        return scores

    # -- completions --------------------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any], decision: RoutingDecision) -> dict[str, Any]:
        options: dict[str, Any] = {"timeout": self.timeout, "max_retries": self.max_retries}
        if self.api_base is not None:
            options["api_base"] = self.api_base
        if self.api_key is not None:
            options["api_key"] = self.api_key
        options.update(kwargs)
        options["model"] = decision.model
        return options

    def completion(
        self, *, router: str | None = None, threshold: float | None = None, **kwargs: Any
    ) -> Any:
        """OpenAI's chat-completions call, routed: `model='router-<router>-<threshold>'` or
        `router=` and `threshold=`; the other arguments go to `litellm.completion`."""
        from routellm_lc.models import _litellm

        decision = self._route_call(kwargs, router, threshold)
        response = _litellm().completion(**self._options(kwargs, decision))
        return _with_decision(response, decision)

    async def acompletion(
        self, *, router: str | None = None, threshold: float | None = None, **kwargs: Any
    ) -> Any:
        """`completion`, async: the router scores in a worker thread, so the event loop keeps
        running other calls meanwhile."""
        import asyncio

        from routellm_lc.models import _alitellm

        decision = await asyncio.to_thread(self._route_call, kwargs, router, threshold)
        litellm = await _alitellm()
        response = await litellm.acompletion(**self._options(kwargs, decision))
        return _with_decision(response, decision)


def _load(name: str, options: Mapping[str, Any], device: str | None) -> Any:
    """Router `name` from its RouteLLM-style `config` entry (shared with `RouteLLMChat` and the
    server in this process when only a checkpoint is named)."""
    from routellm_lc.chat_model import shared_router
    from routellm_lc.routers.base import device_option, load_router
    from routellm_lc.server.config import ROUTELLM_SW_RANKING_KEYS

    options = dict(options)
    unsupported = [key for key in ROUTELLM_SW_RANKING_KEYS if key in options]
    if unsupported:
        raise RoutingError(
            f"Router {name!r}: {', '.join(unsupported)} configure RouteLLM's sw_ranking, which "
            "embeds Arena datasets from the Hub at start-up. routellm-lc's sw_ranking loads a "
            "checkpoint: train one (`routellm-lc train --router sw_ranking --output DIR`) and "
            "give {'checkpoint_path': DIR}."
        )
    architecture = [key for key in ROUTELLM_MF_ARCHITECTURE_KEYS if key in options]
    if name == "mf" and architecture:
        raise RoutingError(
            f"Router 'mf': {', '.join(architecture)} are RouteLLM's mf architecture settings; "
            "routellm-lc reads them from the checkpoint's config.json: remove them from the "
            "config (keep checkpoint_path)."
        )
    checkpoint = options.pop("checkpoint_path", None)
    checkpoint = options.pop("checkpoint", checkpoint)
    if options:
        options = {**device_option(name, device), **options}
        return load_router(
            name, checkpoint=None if checkpoint is None else str(checkpoint), **options
        )
    return shared_router(name, None if checkpoint is None else str(checkpoint), device)


def _with_decision(response: Any, decision: RoutingDecision) -> Any:
    """`response` (a LiteLLM response or stream) with the decision in its `_hidden_params`."""
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        hidden["routing"] = decision.to_dict()
    return response
