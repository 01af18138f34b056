"""`RouteLLMChat`: a LangChain chat model that routes every call between a strong and a weak
model with a learned router (RouteLLM's rule: strong iff score ≥ threshold)."""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from operator import itemgetter
from typing import Any, Literal, NoReturn, Self

from langchain_core import exceptions as lc_exceptions
from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableLambda,
    RunnablePassthrough,
    ensure_config,
)
from langchain_core.runnables.config import get_config_list
from langchain_core.tools import BaseTool
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer
from langchain_core.tracers.log_stream import LogStreamCallbackHandler
from langchain_core.utils.function_calling import (
    convert_to_openai_function,
    convert_to_openai_tool,
)
from langchain_core.utils.pydantic import is_basemodel_subclass
from langchain_core.utils.uuid import uuid7
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator

from routellm_lc.answer_cache import (
    AnsweredCache,
    model_cache,
    model_cache_key,
    streamed_answer,
)
from routellm_lc.budget import StrongShareController
from routellm_lc.decision import RoutingDecision, decide, routing_text, validate_threshold
from routellm_lc.errors import REQUEST_ERROR_STATUSES
from routellm_lc.graph.events import ROUTING_ERROR_TAG, aemit_decision, emit_decision
from routellm_lc.models import (
    combine_llm_outputs,
    default_strong_model,
    default_weak_model,
    model_name,
    resolve_model,
)
from routellm_lc.routers.base import Router, device_option, get_router_class, load_router

DEFAULT_THRESHOLD = 0.5
_DECISION_KWARG = "routing_decision"
#: `config["configurable"]` key that overrides the threshold for one call (e.g. per graph node).
THRESHOLD_CONFIG_KEY = "routellm_threshold"

#: (id of the RouteLLMChat, run id, config) of the call in progress: see `_active_call`.
_ACTIVE_CALL: ContextVar[tuple[int, Any, RunnableConfig] | None] = ContextVar(
    "routellm_active_call", default=None
)

#: Router scores of the batches in progress, per RouteLLMChat (by id): `batch` sets it, and its
#: per-item calls, which LangChain runs in copies of the batch's context, read it. A concurrent
#: batch on the same instance runs in its own context, so neither sees nor removes the other's.
_BATCH_SCORES: ContextVar[dict[int, dict[str, _Scored]] | None] = ContextVar(
    "routellm_batch_scores", default=None
)

#: Options of a pool's outermost level only (`routellm_lc.pool`): the per-call and
#: observability ones. The outermost level's run is the call (its callbacks, tags and metadata
#: see it once, its rate limiter is acquired once, its cache keys the whole pool); the inner
#: levels run as its children.
POOL_OUTER_ONLY = frozenset(
    {
        "name",
        "cache",
        "verbose",
        "callbacks",
        "tags",
        "metadata",
        "rate_limiter",
        "custom_get_token_ids",
        "profile",
    }
)
#: Fields each router level has for itself: its two sides, its cut, its controller.
_LEVEL_OWN = frozenset({"strong", "weak", "threshold", "controller"})
#: Call parameters `model_kwargs` may not hold (see `RouteLLMChat._check_model_kwargs`).
_RESERVED_CALL_KWARGS = frozenset(
    {"model", "messages", "stop", "stream", "tools", "tool_choice", "functions", "function_call"}
)

_ROUTERS: dict[tuple[str, str | None, str | None], Router] = {}
_ROUTERS_LOCK = threading.Lock()

logger = logging.getLogger("routellm_lc")

#: Statuses meaning one model's configuration is broken (key, permissions, model name): the
#: other model answers, and a warning names the broken one.
_CONFIG_ERROR_STATUSES = frozenset({401, 403, 404})


def shared_router(name: str, checkpoint: str | None = None, device: str | None = None) -> Router:
    """One loaded router per (name, checkpoint, device) per process: chat models, graph nodes
    and the server built from the same spec share weights and the embedding cache. `device`
    reaches only routers that run a torch model (`bert`, `causal_llm`); None: their default."""
    options = device_option(name, device)  # an mf router: one instance whatever was asked
    key = (name, checkpoint, options.get("device"))
    with _ROUTERS_LOCK:
        if key not in _ROUTERS:
            _ROUTERS[key] = load_router(name, checkpoint=checkpoint, **options)
        return _ROUTERS[key]


class RouteLLMChat(BaseChatModel):
    """Routes each call to a strong or a weak chat model with a learned router.

    Setup:
        `pip install routellm-lc` (see the README); for LiteLLM model strings set the
        provider's key (e.g. `OPENAI_API_KEY`), or point `api_base` at any OpenAI-compatible
        endpoint.

    Instantiate:
        ```python
        from routellm_lc import RouteLLMChat

        llm = RouteLLMChat(router="mf", threshold=0.11)  # strong/weak from env or defaults
        llm = RouteLLMChat(
            strong="openai/gpt-4o", weak="openai/gpt-4o-mini", router="mf", threshold=0.3
        )
        llm = RouteLLMChat(strong=ChatOpenAI(model="gpt-4o"), weak=ChatOllama(model="llama3"))
        ```

    Invoke:
        ```python
        msg = llm.invoke("Prove that there are infinitely many primes.")
        msg.response_metadata["routing"]
        # {'router': 'mf', 'score': 0.62, 'threshold': 0.11, 'model': 'openai/gpt-4o',
        #  'route': 'strong', 'latency_ms': 1.4, 'batch_size': 1}
        ```

    Stream / Async / Batch:
        `llm.stream(...)`, `await llm.ainvoke(...)`, `llm.astream(...)`; `llm.batch([...])`
        scores every prompt in one router pass before the calls go out.

    Tool calling / structured output:
        `llm.bind_tools([tool], strict=True)` and `llm.with_structured_output(Schema,
        method="function_calling" | "json_schema" | "json_mode")` apply to whichever model the
        router picks: it answers with tool calls / the schema.

    Fallback:
        When the chosen model fails (5xx, 429, a timeout, no connection; 401/403/404 with a
        warning), the other one answers and the decision records `fallback_from`. A request
        the provider rejects as invalid (400, 413, 422) is raised at once; when both models
        fail, the first model's error is raised with the second one's attached.

    Per-call threshold, graphs, events:
        `config={"configurable": {"routellm_threshold": 0.3}}` overrides the threshold for a
        call (a graph run, a node). Inside LangGraph the decision records the step and node
        (`extra`); each decision is dispatched as the custom event `routellm_decision` (see
        `routellm_lc.graph`).
    """

    strong: BaseChatModel | str = Field(default_factory=default_strong_model)
    """Strong (expensive) model: a LangChain chat model or a LiteLLM model string.
    Default: `$ROUTELLM_LC_STRONG_MODEL` or `openai/gpt-4o`."""
    weak: BaseChatModel | str = Field(default_factory=default_weak_model)
    """Weak (cheap) model: a LangChain chat model or a LiteLLM model string.
    Default: `$ROUTELLM_LC_WEAK_MODEL` or `openai/gpt-4o-mini`."""
    router: str | Router = "mf"
    """Router name (`mf`, `sw_ranking`, `bert`, `causal_llm`, `random`) or a Router instance."""
    router_checkpoint: str | None = None
    """Checkpoint folder or Hub id for a named router; `None` = the router's bundled default."""
    threshold: float = DEFAULT_THRESHOLD
    """Cost threshold in [0, 1]: the strong model answers iff score ≥ threshold."""
    route_on: Literal["last_user", "conversation"] = "last_user"
    """What the router scores: the last user message (RouteLLM) or the recent conversation."""
    api_base: str | None = None
    """Base URL used for both models when they are LiteLLM strings."""
    api_key: SecretStr | None = None
    """API key used for both models when they are LiteLLM strings."""
    timeout: float = 60.0
    """Request timeout (seconds) for LiteLLM-string models."""
    max_retries: int = 1
    """Retries inside the provider client for LiteLLM-string models."""
    fallback: bool = True
    """If the chosen model fails, answer with the other one (recorded in the decision)."""
    temperature: float | None = None
    """Sampling temperature for every call, whichever model answers; `None`: each model's
    own. A call's own `temperature=` wins."""
    max_tokens: int | None = None
    """Most tokens to generate, for every call; `None`: each model's own."""
    stop: list[str] | None = None
    """Stop sequences for every call (a call's own `stop` replaces them)."""
    streaming: bool = False
    """Answer `invoke` through the models' streams (callbacks get each token), as LangChain
    chat models do with `streaming=True`."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other parameters sent with every call to the chosen model (`{"top_p": 0.9}`, `seed`,
    ...), under the call's own keyword arguments."""
    controller: StrongShareController | None = None
    """Optional online controller that adapts the threshold to hold a target strong share
    (see `routellm_lc.budget`); when set, it decides the threshold instead of `threshold`."""
    cache: BaseCache | bool | None = Field(default=False, exclude=True)
    """LLM cache of the router's own layer. Off by default: every call is routed afresh, and
    the answering model's own cache (a global `set_llm_cache(...)`, or its `cache=`) reuses
    its answers. Set it (`True` for the global cache, or a cache) to reuse whole routed
    answers: the key holds the model the router chose, so an answer is reused only for the
    same prompt routed to the same model (with the decision it was first made with). An
    answer the other model gave after a fallback is not stored: the next call of that prompt
    goes to the chosen model again."""

    # Resolved from the fields on use, keyed by what they were resolved from: a copy with
    # another model, endpoint or router (`model_copy(update=...)`) answers with those.
    _resolved: dict[str, tuple[tuple[Any, ...], BaseChatModel]] = PrivateAttr(default_factory=dict)
    _router: tuple[tuple[str, str | None], Router] | None = PrivateAttr(default=None)
    # True for a pool's inner level (see `routellm_lc.pool`): the level it is a side of gives
    # it its pool-wide options (`POOL_OUTER_ONLY` and the cut excepted) on a copy.
    _follows_outer: bool = PrivateAttr(default=False)

    # -- construction ----------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        """Refuse a keyword that is no field (a misspelt `treshold` would otherwise be
        dropped silently), and take `checkpoint`, as `load_router` and the CLI call it, for
        `router_checkpoint`."""
        if not isinstance(data, dict):
            return data
        if "checkpoint" in data:
            if "router_checkpoint" in data:
                raise ValueError("Give `router_checkpoint` or `checkpoint`, not both")
            data = {**data, "router_checkpoint": data["checkpoint"]}
            del data["checkpoint"]
        known = {name for name in cls.model_fields} | {
            field.alias for field in cls.model_fields.values() if field.alias
        }
        unknown = sorted(set(data) - known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                f"{cls.__name__} has no field {', '.join(hints)}; its fields: "
                f"{', '.join(sorted(known))} (other parameters for the models' calls go in "
                "`model_kwargs`)"
            )
        return data

    @field_validator("model_kwargs")
    @classmethod
    def _check_model_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Parameters the router sets itself, or that have their own field, are refused: a
        `model` there would answer with another model than the decision names."""
        reserved = sorted(set(value) & _RESERVED_CALL_KWARGS)
        if reserved:
            raise ValueError(
                f"model_kwargs may not set {', '.join(map(repr, reserved))}: the router picks "
                "the model and sends the messages; `stop` and tools have their own field "
                "or method (`stop=`, `bind_tools`)"
            )
        return value

    @field_validator("threshold", mode="before")
    @classmethod
    def _check_threshold(cls, value: Any) -> float:
        return validate_threshold(value)

    @field_validator("router")
    @classmethod
    def _check_router(cls, value: str | Router) -> str | Router:
        if isinstance(value, str):
            get_router_class(value)  # unknown names fail here, with the list of known ones
        return value

    @model_validator(mode="after")
    def _resolve_models(self) -> RouteLLMChat:
        if isinstance(self.router, Router) and self.router_checkpoint is not None:
            raise ValueError(
                "`router_checkpoint` loads a named router's checkpoint; with a Router instance, "
                "load the checkpoint into it (`load_router(name, checkpoint=...)`)"
            )
        self._share_pool_options()  # a pool rebuilt with other options (configurable_fields)
        self._model("strong")  # a model that cannot be resolved fails here, not on a call
        self._model("weak")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied; it answers with its own fields' models and router
        (e.g. `update={"weak": "openai/gpt-4o-mini"}` or `{"api_base": ...}`) and shares no
        cached state with this one. A pool's copy (`routed_pool`) applies its pool-wide
        options (`api_base`, `route_on`, `fallback`, ...) to every level."""
        copy = super().model_copy(update=update, deep=deep)
        copy._resolved = {}
        copy._router = None
        copy._share_pool_options()
        if "profile" not in (update or {}) and (
            self.profile is None or isinstance(self.profile, _DerivedProfile)
        ):  # the profile was the sides' (not given): the copy's follows its own sides
            copy.profile = None
            with suppress(Exception):
                copy.profile = copy._resolve_model_profile()
        return copy

    @field_validator("profile", mode="before")
    @classmethod
    def _profile_of_own_sides(cls, value: Any) -> Any:
        """A profile derived from another router's sides (handed on when LangChain rebuilds a
        router from its fields: `configurable_fields`, `with_config`) is derived again from
        this one's; a profile the caller gave is kept."""
        return None if isinstance(value, _DerivedProfile) else value

    def _share_pool_options(self) -> None:
        """Give the pool's inner levels on either side this level's pool-wide options where
        theirs differ (as copies: the levels may be shared with the pool this one was copied
        from). Every field is pool-wide but each level's own (its sides, its cut) and the
        outermost level's own (`POOL_OUTER_ONLY`)."""
        for route in ("strong", "weak"):
            side = self.strong if route == "strong" else self.weak
            if not (isinstance(side, RouteLLMChat) and side._follows_outer):
                continue
            shared = set(type(self).model_fields) & set(type(side).model_fields)
            update = {
                name: getattr(self, name)
                for name in sorted(shared - POOL_OUTER_ONLY - _LEVEL_OWN)
                if getattr(side, name) != getattr(self, name)
            }
            if update:
                setattr(self, route, side.model_copy(update=update))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """The fields deep-copied (`copy.deepcopy`, `model_copy(deep=True)`); the loaded router
        and resolved models are caches the copy rebuilds: a loaded router holds locks and
        inference sessions, which cannot be copied."""
        shallow = self.__copy__()
        private = {**(self.__pydantic_private__ or {}), "_resolved": {}, "_router": None}
        shallow.__pydantic_private__ = private
        return super(RouteLLMChat, shallow).__deepcopy__(memo)

    def _resolve_model_profile(self) -> dict[str, Any] | None:
        """LangChain's model profile, what holds whichever model answers: the smaller of the
        two sides' token limits, a capability only where both have it (`create_agent` picks
        its structured-output strategy from it, `SummarizationMiddleware` its trigger).
        None when a side has no profile."""
        sides = [self._model(route).profile for route in ("strong", "weak")]
        if any(not side for side in sides):
            return None
        strong, weak = sides
        profile = _DerivedProfile()
        for key in strong.keys() & weak.keys():
            a, b = strong[key], weak[key]  # type: ignore[literal-required]
            if isinstance(a, bool) and isinstance(b, bool):
                profile[key] = a and b
            elif isinstance(a, int) and isinstance(b, int):
                profile[key] = min(a, b)
        return profile

    def _model(self, route: str) -> BaseChatModel:
        """The strong or weak chat model, resolved from the current fields."""
        spec = self.strong if route == "strong" else self.weak
        if isinstance(spec, BaseChatModel):
            return spec
        options = {
            "api_base": self.api_base,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }
        key = (spec, *options.values())
        cached = self._resolved.get(route)
        if cached is None or cached[0] != key:
            cached = (key, resolve_model(spec, **options))
            self._resolved[route] = cached
        return cached[1]

    @property
    def _is_pool_level(self) -> bool:
        """True for a level of a pool (`routellm_lc.pool`): one side is itself a router."""
        return self._to_router("strong") or self._to_router("weak")

    def _to_router(self, route: str) -> bool:
        """Whether `route` leads to another router (a pool's next level), not to a model."""
        return isinstance(self.strong if route == "strong" else self.weak, RouteLLMChat)

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None]) -> dict[str, Any]:
        """`generate()`'s `llm_output`: token usage summed over the calls (each generation's
        message carries its own decision)."""
        return combine_llm_outputs(llm_outputs)

    @property
    def _llm_type(self) -> str:
        return "routellm"

    @property
    def router_name(self) -> str:
        return self.router if isinstance(self.router, str) else self.router.name or "custom"

    @property
    def strong_name(self) -> str:
        return model_name(self.strong)

    @property
    def weak_name(self) -> str:
        return model_name(self.weak)

    @property
    def model_name(self) -> str:
        """RouteLLM's model-name format: `router-<router>-<threshold>`. With a controller,
        whose threshold moves, `router-<router>-share<target strong share>`."""
        if self.controller is not None:
            return f"router-{self.router_name}-share{self.controller.target_strong_share:g}"
        return f"router-{self.router_name}-{self.threshold:g}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # With a controller, its target rather than the moving threshold: these params are
        # part of LLM-cache keys (`_get_llm_string`), which must not change on every call.
        policy: dict[str, float] = (
            {"threshold": self.threshold}
            if self.controller is None
            else {"target_strong_share": self.controller.target_strong_share}
        )
        return {
            "router": self.router_name,
            **policy,
            "strong": self._side_params("strong"),
            "weak": self._side_params("weak"),
            **self._call_defaults(),
            **({"stop": self.stop} if self.stop is not None else {}),
        }

    def _side_params(self, route: str) -> str | dict[str, Any]:
        """A side's name; a pool's next level, whose `router-…` name is no model: its params,
        naming the real models."""
        side = self.strong if route == "strong" else self.weak
        return side._identifying_params if isinstance(side, RouteLLMChat) else model_name(side)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        name = self.model_name
        decision = kwargs.get(_DECISION_KWARG)
        if self.controller is None and isinstance(decision, Mapping):
            # the threshold this call used: a call's or a graph node's own, if it had one
            threshold = decision.get("threshold")
            if isinstance(threshold, int | float) and threshold != self.threshold:
                name = f"router-{self.router_name}-{threshold:g}"
        params = LangSmithParams(
            ls_provider="routellm",
            ls_model_name=kwargs.get("model") or name,  # a per-call override
            ls_model_type="chat",
        )
        call = {**self._call_defaults(), **kwargs}
        if call.get("temperature") is not None:
            params["ls_temperature"] = call["temperature"]
        if call.get("max_tokens") is not None:
            params["ls_max_tokens"] = call["max_tokens"]
        if stop := self._stop(stop):
            params["ls_stop"] = stop
        return params

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        _unbound_tools(kwargs)  # traced as `tools`, in OpenAI's format, and its options
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        """The cache key's model part: the chosen model, not the whole per-call decision
        (its score and latency would make every key unique), and each side's own cache key
        (its endpoint, sampling parameters, ...; a pool's next level: its own, naming its
        models), so routers that differ in any of these never share an answer."""
        decision = kwargs.pop(_DECISION_KWARG, None)
        _unbound_tools(kwargs)  # the tools are in the key as `tools`, in one format
        if decision is not None:
            kwargs["routed_model"], kwargs["routed_sides"] = self._answering_model(decision)
        kwargs["sides"] = {
            route: self._model(route)._get_llm_string() for route in ("strong", "weak")
        }
        return super()._get_llm_string(stop=self._stop(stop), **kwargs)

    def _answering_model(self, decision: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
        """The model a decision sends the call to, and the sides taken to reach it (strong or
        weak per level: two sides may name the same model, `gpt-4o` at two temperatures): in a
        pool, the model of the score's band (the next levels cut the same score:
        `_CarriedScore`); the chosen level's `router-…` name when that level scores for itself
        (another router or `route_on`)."""
        level, route, score = self, decision["route"], decision["score"]
        sides = [route]
        while level._to_router(route):
            inner = level.strong if route == "strong" else level.weak
            assert isinstance(inner, RouteLLMChat)
            if inner.route_on != level.route_on or inner.get_router() is not level.get_router():
                return decision["model"], tuple(sides)
            route = "strong" if score >= inner.current_threshold() else "weak"
            sides.append(route)
            level = inner
        return level.strong_name if route == "strong" else level.weak_name, tuple(sides)

    # -- token counting ----------------------------------------------------------------------
    def get_num_tokens(self, text: str) -> int:
        """The larger of the two models' counts: the text fits whichever model answers."""
        if self.custom_get_token_ids is not None:
            return super().get_num_tokens(text)
        return max(self._model(route).get_num_tokens(text) for route in ("strong", "weak"))

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """The larger of the two models' counts (what `trim_messages(..., token_counter=llm)`
        uses): the trimmed history fits whichever model answers."""
        if self.custom_get_token_ids is not None:
            return super().get_num_tokens_from_messages(messages, tools)
        models = [self._model(route) for route in ("strong", "weak")]
        return max(
            m.get_num_tokens_from_messages(messages, tools=tools)
            if tools
            else m.get_num_tokens_from_messages(messages)
            for m in models
        )

    def get_router(self) -> Router:
        """The router instance (named routers are loaded on first use and shared)."""
        if isinstance(self.router, Router):
            return self.router
        key = (self.router, self.router_checkpoint)
        if self._router is None or self._router[0] != key:
            self._router = (key, shared_router(*key))
        return self._router[1]

    # -- deciding --------------------------------------------------------------------------
    def decide(
        self,
        inputs: Sequence[LanguageModelInput],
        threshold: float | None = None,
        *,
        observe: bool = True,
    ) -> list[RoutingDecision]:
        """Routing decisions for a batch of inputs, from one router call.

        `threshold` overrides the model's own (and the controller's) for these decisions.
        With a strong-share controller, the decisions count as calls (its window sees their
        scores, as when you route with `decide` and call the models yourself); `observe=False`
        is a dry run: decided with the threshold in force, and the controller is not moved.
        """
        texts = self._routing_texts(inputs)
        return self._decide_texts(texts, threshold, observe=observe)

    def _routing_texts(self, inputs: Sequence[LanguageModelInput]) -> list[str]:
        """One routing text per input. A single input (a string, a message, a prompt value)
        is refused: iterated, a string would be routed as one prompt per character."""
        if isinstance(inputs, str | BaseMessage | PromptValue | Mapping):
            raise TypeError(
                f"decide takes a list of inputs, got one {type(inputs).__name__}: "
                "decide([prompt]) routes one."
            )
        return [routing_text(self._to_messages(i), self.route_on) for i in inputs]

    async def adecide(
        self,
        inputs: Sequence[LanguageModelInput],
        threshold: float | None = None,
        *,
        observe: bool = True,
    ) -> list[RoutingDecision]:
        """`decide` for async code: the router scores in a worker thread, so a slow router
        (a torch model) neither stalls the event loop nor serialises concurrent calls."""
        texts = self._routing_texts(inputs)
        return await self._adecide_texts(texts, threshold, observe=observe)

    def current_threshold(self) -> float:
        """The threshold the next decision uses (the controller's, when one is set)."""
        return self.controller.threshold() if self.controller is not None else self.threshold

    def _decide_texts(
        self, texts: list[str], threshold: float | None = None, *, observe: bool = True
    ) -> list[RoutingDecision]:
        known = self._known_decisions(texts, threshold)
        return known if known is not None else self._score(texts, threshold, observe=observe)

    async def _adecide_texts(
        self, texts: list[str], threshold: float | None = None, *, observe: bool = True
    ) -> list[RoutingDecision]:
        known = self._known_decisions(texts, threshold)
        if known is not None:  # scored already: no router call to wait for
            return known
        gone = threading.Event()  # the caller was cancelled while the router scored

        def score() -> list[RoutingDecision]:
            decisions = self._score(texts, threshold, observe=False)
            # a call cancelled before it was routed is no call: the controller never sees it
            if gone.is_set() or not observe:
                return decisions
            return self._settled(decisions, threshold)

        try:
            return await asyncio.to_thread(score)
        except asyncio.CancelledError:
            gone.set()
            raise

    def _known_decisions(
        self, texts: list[str], threshold: float | None
    ) -> list[RoutingDecision] | None:
        """The decisions from scores made already, if any: the batch in progress's, or, for a
        pool's next level, the score the level above gave this call (`_CarriedScore`)."""
        prescored = self._prescored_decisions(texts, threshold)
        if prescored is not None:
            return prescored
        carried = _CARRIED_SCORE.get()
        if carried is None or len(texts) != 1 or not carried.is_for(self, texts[0]):
            return None
        at = self.current_threshold() if threshold is None else threshold
        decision = self._from_score(carried.score, carried.latency_ms, carried.batch_size, at)
        return self._settled([decision], threshold)

    def _prescored_decisions(
        self, texts: list[str], threshold: float | None
    ) -> list[RoutingDecision] | None:
        """The decisions from the scores of the batch in progress, if it scored every text;
        without an overriding `threshold`, each with the one in force at its batch position."""
        memo = (_BATCH_SCORES.get() or {}).get(id(self))
        if memo is None:
            return None
        scored = [memo.get(t) for t in texts]
        if any(s is None for s in scored):
            return None
        decisions = []
        for item in scored:
            assert item is not None
            at = item.next_threshold()  # taken even when overridden: later copies keep theirs
            decisions.append(
                self._from_score(
                    item.score,
                    item.latency_ms,
                    item.batch_size,
                    at if threshold is None else threshold,
                )
            )
        return decisions

    def _score(
        self, texts: list[str], threshold: float | None, *, observe: bool = True
    ) -> list[RoutingDecision]:
        """One router call for all `texts` (blocking: async callers run it in a thread).

        `threshold` None: the model's own, or the controller's. With `observe`, the controller
        sees each score and each text gets the threshold in force at its position, as if the
        calls came one by one (a batch observes per call instead: `_Prescored`)."""
        decisions = decide(
            self.get_router(),
            texts,
            self.current_threshold() if threshold is None else threshold,
            strong_model=self.strong_name,
            weak_model=self.weak_name,
            router_name=self.router_name,
        )
        return self._settled(decisions, threshold) if observe else decisions

    def _settled(
        self, decisions: list[RoutingDecision], threshold: float | None
    ) -> list[RoutingDecision]:
        """The decisions of routed calls, the controller seeing the scores of the calls it
        decided (see `_score`). A call with its own threshold is not the controller's: its score
        does not move it (as the server never observes a named threshold), or a node forced
        strong or weak would shift the share the controller holds for the others."""
        if threshold is not None or self.controller is None:
            return decisions
        in_force = self._in_order([d.score for d in decisions])
        return [
            self._from_score(d.score, d.latency_ms, d.batch_size, at)
            for d, at in zip(decisions, in_force, strict=True)
        ]

    def _in_order(self, scores: Sequence[float]) -> list[float]:
        """The threshold in force for each of these calls, in order, the controller seeing each
        score after its call's threshold is read: a long batch is routed as its calls would be
        one by one, not all with the threshold fitted to its end (or to what came before)."""
        if self.controller is None:
            return [self.threshold] * len(scores)
        return self.controller.route_in_order(scores)

    def _from_score(
        self, score: float, latency_ms: float, batch_size: int, threshold: float
    ) -> RoutingDecision:
        strong = score >= threshold
        return RoutingDecision(
            router=self.router_name,
            score=score,
            threshold=threshold,
            model=self.strong_name if strong else self.weak_name,
            route="strong" if strong else "weak",
            latency_ms=latency_ms,
            batch_size=batch_size,
        )

    def _to_messages(self, value: LanguageModelInput) -> list[BaseMessage]:
        return self._convert_input(value).to_messages()

    def _with_decision(
        self, value: LanguageModelInput, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        """Decide before the run starts, so the decision is in the run's metadata and tags."""
        config = ensure_config(config)
        if _DECISION_KWARG in kwargs:
            return config, kwargs
        try:
            (decision,) = self.decide([value], self._call_threshold(config))
        except Exception as error:
            self._trace_unrouted(value, config, error, async_api=False)
            raise
        return self._decided(decision, config, kwargs)

    async def _awith_decision(
        self, value: LanguageModelInput, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        config = ensure_config(config)
        if _DECISION_KWARG in kwargs:
            return config, kwargs
        try:
            (decision,) = await self.adecide([value], self._call_threshold(config))
        except Exception as error:
            await self._trace_unrouted(value, config, error, async_api=True)
            raise
        return self._decided(decision, config, kwargs)

    def _trace_unrouted(
        self, value: Any, config: RunnableConfig, error: Exception, *, async_api: bool
    ) -> Any:
        """A run for a call that failed before any model was called (an empty prompt, a router
        or its remote embedder down), ended with the error and tagged `routellm:routing_error`:
        without it such a call reached no tracer and no `RoutingCallbackHandler`. Returns the
        awaitable to wait on for `async_api`."""
        manager = self._callback_manager(
            config,
            async_api,
            tags=[*(config.get("tags") or []), ROUTING_ERROR_TAG],
            metadata={**(config.get("metadata") or {}), **self._get_ls_params()},
        )
        try:
            messages = self._to_messages(value)
        except Exception:  # the input itself was the problem: trace the call without it
            messages = []
        start = {
            "invocation_params": self._get_invocation_params(),
            "name": config.get("run_name"),
            "run_id": config.get("run_id"),
            "batch_size": 1,
        }
        if not async_api:
            with suppress(Exception):
                (run,) = manager.on_chat_model_start(self._serialized, [messages], **start)
                run.on_llm_error(error)
            return None

        async def report() -> None:
            with suppress(Exception):
                (run,) = await manager.on_chat_model_start(self._serialized, [messages], **start)
                await run.on_llm_error(error)

        return report()

    def _call_threshold(self, config: RunnableConfig) -> float | None:
        """The per-call threshold (`configurable`), refused by a router whose side is another
        router (a pool): one number cannot say where its bands' several cuts go, and it would
        reach the inner levels only in some call paths (a graph's config, not `invoke`'s)."""
        override = _threshold_override(config)
        if override is not None and self._is_pool_level:
            raise ValueError(
                f"A per-call {THRESHOLD_CONFIG_KEY} ({override}) cannot move the cuts of a pool "
                "or other nested router: set them when building it (routed_pool(models, "
                "thresholds)), and leave routed_model_node's threshold unset for it."
            )
        return override

    def _decided(
        self, decision: RoutingDecision, config: RunnableConfig, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        """The call's config and kwargs carrying `decision` (metadata, tags, a fixed run id)."""
        metadata = dict(config.get("metadata") or {})
        decision = _with_graph_position(decision, metadata)
        metadata["routing"] = decision.to_dict()
        tags = list(dict.fromkeys([*(config.get("tags") or []), *self._routing_tags(decision)]))
        callbacks = _configured_callbacks(config.get("callbacks"))
        config = {**config, "metadata": metadata, "tags": tags, "callbacks": callbacks}
        return _with_run_id(config), {**kwargs, _DECISION_KWARG: decision.to_dict()}

    def _routing_tags(self, decision: RoutingDecision) -> list[str]:
        """Trace tags for a run the decision sends to a model: `routellm:<route>`, and
        `routellm:model=<model>` unless that model is another router level (a pool's own
        `router-…` name is no model: the nested router's run names the real one). A run that
        answers in place of a failed model is tagged `routellm:fallback`."""
        tags = [f"routellm:{decision.route}"]
        if not self._to_router(decision.route):
            tags.append(f"routellm:model={decision.model}")
        if decision.fallback_from is not None:
            tags.append(_FALLBACK_TAG)
        return tags

    # -- public entry points: decide first, then run -----------------------------------------
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, kwargs = self._with_decision(input, config, kwargs)
        with self._active_call(config):
            return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, kwargs = await self._awith_decision(input, config, kwargs)
        with self._active_call(config):
            try:
                return await super().ainvoke(input, config, stop=stop, **kwargs)
            except asyncio.CancelledError as exc:
                await self._end_cancelled_run(exc)
                raise

    async def _end_cancelled_run(self, error: asyncio.CancelledError) -> None:
        """End this call's run when its task is cancelled (`asyncio.wait_for` timing out, a
        client gone): LangChain's `agenerate` lets the cancellation out of its `gather`
        without an end or error callback, so handlers and tracers would hold the run open
        for good (`RoutingCallbackHandler` kept it, and never counted the call)."""
        run_manager = self._detached_run_manager(async_api=True)
        if run_manager is None:
            return
        with suppress(Exception):
            await asyncio.shield(run_manager.on_llm_error(error))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, kwargs = self._with_decision(input, config, kwargs)
        with self._active_call(config):
            yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, kwargs = await self._awith_decision(input, config, kwargs)
        with self._active_call(config):
            async for chunk in super().astream(input, config, stop=stop, **kwargs):
                yield chunk

    @contextmanager
    def _active_call(self, config: RunnableConfig) -> Iterator[None]:
        """Make this call's run id and config visible to `_stream`/`_astream`.

        LangChain gives `_stream`/`_astream` no run manager when it streams (`stream`,
        `astream`, and invoke under `astream_events` or LangGraph's message streaming): the
        call's own handlers are rebuilt from this config (`_detached_run_manager`), so the
        decision event names this run and the chosen model's run nests under it.
        """
        token = _ACTIVE_CALL.set((id(self), config.get("run_id"), config))
        try:
            yield
        finally:
            with suppress(ValueError):  # a generator finalised in another context
                _ACTIVE_CALL.reset(token)

    def _callback_manager(
        self,
        config: RunnableConfig,
        async_api: bool,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """The callback manager LangChain configures for a call of this model with `config`
        (its `tags` / `metadata` replaced when given)."""
        manager_cls = AsyncCallbackManager if async_api else CallbackManager
        return manager_cls.configure(
            config.get("callbacks"),
            self.callbacks,
            self.verbose,
            config.get("tags") if tags is None else tags,
            self.tags,
            config.get("metadata") if metadata is None else metadata,
            self.metadata,
        )

    def _detached_run_manager(self, async_api: bool) -> Any:
        """A run manager for this call's run, when LangChain passed none (see `_active_call`).

        Used for the decision event and the child run's parent only, never for token callbacks
        (LangChain reports the tokens of such runs itself).
        """
        active = _ACTIVE_CALL.get()
        if active is None or active[0] != id(self) or active[1] is None:
            return None
        _, run_id, config = active
        manager = self._callback_manager(config, async_api)
        run_manager_cls = AsyncCallbackManagerForLLMRun if async_api else CallbackManagerForLLMRun
        return run_manager_cls(
            run_id=run_id,
            handlers=manager.handlers,
            inheritable_handlers=manager.inheritable_handlers,
            parent_run_id=manager.parent_run_id,
            tags=manager.tags,
            inheritable_tags=manager.inheritable_tags,
            metadata=manager.metadata,
            inheritable_metadata=manager.inheritable_metadata,
        )

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        with self._prescored(inputs, config):
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        async with self._prescored(inputs, config):
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )

    def batch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> Iterator[tuple[int, AIMessage | Exception]]:
        """As `batch`, one router pass for all prompts, yielding (index, reply) as they finish.

        Every call starts within the first `next()` (LangChain submits them all at once, each
        with the scores in its context); the scores are not left in the caller's context while
        it holds the iterator."""
        with self._prescored(inputs, config):
            results = super().batch_as_completed(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
            first = next(results, None)
        if first is None:
            return
        yield first
        yield from results

    async def abatch_as_completed(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, AIMessage | Exception]]:
        """`batch_as_completed` for async code: one router pass (in a worker thread)."""
        async with self._prescored(inputs, config):
            results = super().abatch_as_completed(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
            first = await anext(results, None)
        if first is None:
            return
        yield first
        async for item in results:
            yield item

    def _prescored(
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
    ) -> _Prescored:
        configs = get_config_list(config, len(inputs))  # type: ignore[arg-type]
        overridden = [_threshold_override(c) is not None for c in configs]
        return _Prescored(self, inputs, overridden)

    # -- tools and structured output ----------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | dict | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools to both models; the routed one receives them on each call.

        `strict=True` asks for tool arguments that match the schemas exactly (OpenAI's
        structured outputs): it goes into each function definition, as `ChatOpenAI` sends it,
        and to the chosen model's own `bind_tools` where that takes `strict`. With a
        `response_format` (as `create_agent(..., response_format=ProviderStrategy(...))` binds
        it) `strict` defaults to True, as on `ChatOpenAI`: OpenAI requires strict tools there.
        """
        tools = list(tools)  # read twice below: a generator would be empty the second time
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        if kwargs.get("response_format") and strict is not False:
            strict = True
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        if tool_choice:  # False, as on ChatOpenAI, leaves each model's default
            kwargs["tool_choice"] = tool_choice
        if strict is not None:
            kwargs["strict"] = strict
        # The tools as given, for the chosen model's own `bind_tools` (a tool's `extras`,
        # provider server tools, `parallel_tool_calls` as that model spells it); the OpenAI
        # format above stands for them in cache keys and traces.
        options = {k: kwargs.pop(k) for k in _SIDE_BIND_OPTIONS if k in kwargs}
        given = _BoundTools(tools, formatted, options)
        return self.bind(tools=formatted, **kwargs, **{_TOOLS_KWARG: given})

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers parsed into `schema` (a pydantic class, a TypedDict, a JSON schema or an
        OpenAI tool/`json_schema` dict), from whichever model the router picks.

        `method`, as in `ChatOpenAI.with_structured_output`:

        - `"function_calling"` (default): the schema as a tool the model must call;
          `strict` goes into the function definition.
        - `"json_schema"`: `response_format={"type": "json_schema", ...}` (OpenAI's
          structured outputs). A pydantic schema is sent strict unless `strict=False`,
          others with `strict` as given (default False).
        - `"json_mode"`: `response_format={"type": "json_object"}`; `schema` only parses
          (describe the JSON in the prompt), and may be None for a plain dict.

        The request goes to the chosen model as it is, a LiteLLM model string or a LangChain
        chat model alike. `include_raw=True` returns `{"raw": AIMessage, "parsed": ...,
        "parsing_error": ...}`, the raw message carrying the routing decision.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        if schema is None and method != "json_mode":
            raise ValueError(f"schema must be given with method={method!r}; None was.")
        if strict is not None and method == "json_mode":  # as ChatOpenAI: nothing to be strict
            raise ValueError("Argument `strict` is not supported with `method`='json_mode'")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        traced = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable
        if method == "function_calling":
            llm = self.bind_tools(
                [schema], tool_choice="any", strict=strict, ls_structured_output_format=traced
            )
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
            else:
                name = convert_to_openai_tool(schema)["function"]["name"]
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method == "json_schema":
            traced["schema"] = convert_to_openai_tool(schema)
            llm = self.bind(
                response_format=_json_schema_format(schema, strict),
                ls_structured_output_format=traced,
            )
            if is_pydantic:
                parser = RunnableLambda(partial(_parsed_reply, schema=schema)).with_types(
                    output_type=schema
                )
            else:
                parser = JsonOutputParser()
        elif method == "json_mode":
            traced["kwargs"] = {"method": method}
            bound: dict[str, Any] = {"response_format": {"type": "json_object"}}
            if schema is not None:
                bound["ls_structured_output_format"] = traced
            llm = self.bind(**bound)
            if is_pydantic:
                parser = PydanticOutputParser(pydantic_object=schema)
            else:
                parser = JsonOutputParser()
        else:
            raise ValueError(
                f"method must be 'function_calling', 'json_schema' or 'json_mode', got {method!r}."
            )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        # `llm | {"raw": ...}`, not `RunnableMap(raw=llm)`: a map batches item by item, a
        # sequence hands the whole batch to `llm.batch` (one router pass)
        as_raw = RunnableLambda(_as_raw, name="as_raw")
        return llm | as_raw | parsed.with_fallbacks([unparsed], exception_key="parsing_error")

    # -- generation: delegate to the chosen model as a child run -------------------------------
    def _decision_for(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> RoutingDecision:
        given = self._given_decision(kwargs)
        if given is not None:
            return given
        (decision,) = self._decide_texts([routing_text(messages, self.route_on)])
        return decision

    async def _adecision_for(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> RoutingDecision:
        given = self._given_decision(kwargs)
        if given is not None:
            return given
        (decision,) = await self._adecide_texts([routing_text(messages, self.route_on)])
        return decision

    def _given_decision(self, kwargs: dict[str, Any]) -> RoutingDecision | None:
        """The decision made before the run started (see `_with_decision`), if any."""
        if "model" in kwargs or "model_name" in kwargs:
            # Forwarded, it would silently override the routed model on every call.
            raise ValueError(
                "RouteLLMChat chooses the model per call, so a per-call `model` is not accepted. "
                "Set `strong=`/`weak=` on the router, or move the routing with the "
                "`routellm_threshold` configurable."
            )
        given = kwargs.pop(_DECISION_KWARG, None)
        return None if given is None else RoutingDecision(**given)

    def _target(self, route: str, kwargs: dict[str, Any]) -> tuple[Runnable, dict[str, Any]]:
        """The chosen model, and the call kwargs: the model's own parameters (`temperature`,
        `max_tokens`, `model_kwargs`) under the call's, and what its `bind_tools` adds (tools
        in its format)."""
        model = self._model(route)
        kwargs = {**self._call_defaults(), **kwargs}
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        given = kwargs.pop(_TOOLS_KWARG, None)
        if tools is None:
            return model, kwargs
        options: dict[str, Any] = {} if tool_choice is None else {"tool_choice": tool_choice}
        strict = kwargs.pop("strict", None)
        takes_strict = _bind_tools_takes(type(model), "strict")
        if strict is not None and takes_strict:
            options["strict"] = strict  # else it is in the function definitions only
        if isinstance(given, _BoundTools):
            # the tools `bind_tools` got, unless a call (or a later `bind`) gave others
            if tools == given.formatted and (strict is None or takes_strict):
                tools = list(given.tools)  # the model converts them itself
            for name, value in given.options.items():
                if _bind_tools_takes(type(model), name):
                    options[name] = value  # as that model's bind_tools translates it
                else:
                    kwargs[name] = value  # a request parameter, as before
        bound = model.bind_tools(tools, **options)
        # Call the model itself with the binding's kwargs: invoking the binding would merge the
        # caller's context callbacks back into the child config (see `_child_callbacks`).
        if isinstance(bound, RunnableBinding) and not bound.config and not bound.config_factories:
            return bound.bound, {**kwargs, **bound.kwargs}
        return bound, kwargs

    def _call_defaults(self) -> dict[str, Any]:
        """The parameters set on the model itself, sent with every call."""
        sampling = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {**self.model_kwargs, **{k: v for k, v in sampling.items() if v is not None}}

    def _stop(self, stop: list[str] | None) -> list[str] | None:
        return self.stop if stop is None else stop

    def _model_cache(
        self, target: Any, messages: Any, stop: Any, kwargs: dict[str, Any]
    ) -> BaseCache | None:
        """The LLM cache of the model a stream goes to (None for a pool's inner router, whose
        own layer decides): `invoke` reads it through LangChain, a stream must look itself."""
        return None if isinstance(target, RouteLLMChat) else model_cache(target)

    def _child_config(self, decision: RoutingDecision, run_manager: Any) -> RunnableConfig:
        """The chosen model's run: named and tagged for the model that runs (its own tags,
        not the router run's: after a fallback they differ)."""
        if self._to_router(decision.route):
            # a pool's next level tags its own run with its own decision
            tags = [_FALLBACK_TAG] if decision.fallback_from is not None else []
        else:
            tags = self._routing_tags(decision)
        callbacks = _child_callbacks(run_manager)
        return {
            "run_name": _child_run_name(decision.model, callbacks),
            "metadata": {"routing": decision.to_dict()},
            "tags": tags,
            "callbacks": callbacks,
        }

    def _attempts(self, decision: RoutingDecision) -> _Attempts:
        """The models to try, in order, with the fallback policy that moves between them."""
        attempts = [decision]
        if self.fallback:
            other = self.weak_name if decision.route == "strong" else self.strong_name
            attempts.append(decision.with_fallback(other))
        levels = [self._to_router(a.route) for a in attempts]
        return _Attempts(attempts, levels)

    def _decision_event(
        self, attempt: RoutingDecision, run_manager: Any
    ) -> tuple[RoutingDecision, Any] | None:
        """The decision event of an attempt and the run it belongs to, or None when the
        attempt goes to a pool's next level: that level sends its own, naming the model.

        Inside a pool the event goes to the outermost router's run (see `_EventSink`), the
        one run that callers, `astream_events` and `RoutingCallbackHandler` see."""
        if self._to_router(attempt.route):
            return None
        sink = _EVENT_SINK.get()
        if sink is None:
            return attempt, run_manager
        event = replace(
            attempt,
            extra={**sink.extra, **attempt.extra},
            fallback_from=sink.fallback_from or attempt.fallback_from,
        )
        return event, sink.run_manager

    def _emit(self, attempt: RoutingDecision, run_manager: Any) -> None:
        if event := self._decision_event(attempt, run_manager):
            emit_decision(*event)

    async def _aemit(self, attempt: RoutingDecision, run_manager: Any) -> None:
        if event := self._decision_event(attempt, run_manager):
            await aemit_decision(*event)

    def _routing_text_of(self, messages: list[BaseMessage]) -> str | None:
        """The text this call was routed on, when a side is a pool's next level (which reuses
        its score: `_carried`); None otherwise."""
        return routing_text(messages, self.route_on) if self._is_pool_level else None

    def _carried(self, attempt: RoutingDecision, text: str | None) -> _CarriedScore | None:
        """The score the attempt's next router level reuses (None: the attempt is a model)."""
        if text is None or not self._to_router(attempt.route):
            return None
        return _CarriedScore(
            level=id(self._model(attempt.route)),
            router=self.get_router(),
            text=text,
            score=attempt.score,
            latency_ms=attempt.latency_ms,
            batch_size=attempt.batch_size,
        )

    @contextmanager
    def _calling(
        self, attempt: RoutingDecision, run_manager: Any, carried: _CarriedScore | None = None
    ) -> Iterator[None]:
        """The context the attempt's model runs in: LangChain's context handlers unset (see
        `_context_handlers_off`) and, when it is a pool's next level, this call's run as the
        destination of that level's decision events and this call's score (`carried`) as
        that level's: a pool scores each prompt once, and every level cuts the same score."""
        tokens: list[tuple[ContextVar[Any], Token[Any]]] = []
        if self._to_router(attempt.route):
            outer = _EVENT_SINK.get()
            sink = (
                _EventSink(run_manager, attempt.extra, attempt.fallback_from)
                if outer is None
                else replace(outer, fallback_from=outer.fallback_from or attempt.fallback_from)
            )
            tokens.append((_EVENT_SINK, _EVENT_SINK.set(sink)))
            tokens.append((_CARRIED_SCORE, _CARRIED_SCORE.set(carried)))
        try:
            with _context_handlers_off():
                yield
        finally:
            for var, token in reversed(tokens):
                with suppress(ValueError):  # a generator finalised in another context
                    var.reset(token)

    def _generate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._use_answered_cache()
        return super()._generate_with_cache(messages, stop, run_manager, **kwargs)

    async def _agenerate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._use_answered_cache()
        return await super()._agenerate_with_cache(messages, stop, run_manager, **kwargs)

    def _use_answered_cache(self) -> None:
        """Put the cache behind `AnsweredCache` (once; a copy made with another `cache` gets it
        on its first call): an answer given after a fallback is keyed by the model the router
        chose, so storing it would answer that prompt with the other model from then on."""
        if self.cache is not False and not isinstance(self.cache, AnsweredCache):
            self.__dict__["cache"] = AnsweredCache(self.cache)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        attempts = self._attempts(self._decision_for(messages, kwargs))
        text = self._routing_text_of(messages)
        for position, attempt in attempts.tries():
            target, call_kwargs = self._target(attempt.route, dict(kwargs))
            self._emit(attempt, run_manager)
            try:
                with self._calling(attempt, run_manager, self._carried(attempt, text)):
                    message = target.invoke(
                        messages,
                        self._child_config(attempt, run_manager),
                        stop=self._stop(stop),
                        **call_kwargs,
                    )
            except Exception as error:
                attempts.handle(error, position)  # returns only when the next model may answer
                continue
            return _result(message, attempt, self._is_pool_level, attempts.failed_levels)
        raise AssertionError("unreachable")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        attempts = self._attempts(await self._adecision_for(messages, kwargs))
        text = self._routing_text_of(messages)
        for position, attempt in attempts.tries():
            target, call_kwargs = self._target(attempt.route, dict(kwargs))
            await self._aemit(attempt, run_manager)
            config = {**self._child_config(attempt, run_manager), "run_id": uuid7()}
            try:
                with self._calling(attempt, run_manager, self._carried(attempt, text)):
                    message = await target.ainvoke(
                        messages, dict(config), stop=self._stop(stop), **call_kwargs
                    )
            except asyncio.CancelledError as error:
                await _end_cancelled_child(config, error)
                raise
            except Exception as error:
                attempts.handle(error, position)
                continue
            return _result(message, attempt, self._is_pool_level, attempts.failed_levels)
        raise AssertionError("unreachable")

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        attempts = self._attempts(self._decision_for(messages, kwargs))
        run_of_call = run_manager or self._detached_run_manager(async_api=False)
        text = self._routing_text_of(messages)
        for position, attempt in attempts.tries():
            target, call_kwargs = self._target(attempt.route, dict(kwargs))
            started = False
            held: list[Any] = []  # blank opening chunks, sent once the model answers
            self._emit(attempt, run_of_call)
            calling = partial(self._calling, attempt, run_of_call, self._carried(attempt, text))
            cache, key, collected = self._model_cache(target, messages, stop, call_kwargs), None, []
            try:
                config = self._child_config(attempt, run_of_call)
                if cache is not None:
                    key = model_cache_key(target, messages, self._stop(stop), call_kwargs)
                if key is not None and isinstance(cache.lookup(*key), list):
                    # the model's LLM cache has the answer: its invoke reads it (a cache hit,
                    # traced and priced as one); its stream would call the model again
                    with calling():  # as every model call: usage counted once, not twice
                        answer = target.invoke(
                            messages, config, stop=self._stop(stop), **call_kwargs
                        )
                    stream: Iterator[Any] = iter([_message_chunk(answer)])
                    key = None
                else:
                    stream = target.stream(messages, config, stop=self._stop(stop), **call_kwargs)
                while (chunk := _next_chunk(stream, calling)) is not _END:
                    if key is not None:
                        collected.append(chunk)
                    if not started and _blank(chunk):
                        held.append(chunk)
                        continue
                    for pending in [*held, chunk]:
                        generation = _chunk(
                            pending,
                            attempt,
                            not started,
                            self._is_pool_level,
                            attempts.failed_levels,
                        )
                        started = True
                        if run_manager:
                            run_manager.on_llm_new_token(generation.text, chunk=generation)
                        yield generation
                    held = []
            except Exception as error:
                # Once tokens reached the caller a different model cannot take over cleanly.
                if started:
                    raise
                attempts.handle(error, position)
                continue
            if key is not None and collected:  # the whole answer streamed: cached as invoke's
                cache.update(*key, streamed_answer(collected))
            if not started:  # an empty stream still carries the decision
                for index, pending in enumerate(held or [AIMessageChunk(content="")]):
                    yield _chunk(
                        pending,
                        attempt,
                        index == 0,
                        self._is_pool_level,
                        attempts.failed_levels,
                    )
            return

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        attempts = self._attempts(await self._adecision_for(messages, kwargs))
        run_of_call = run_manager or self._detached_run_manager(async_api=True)
        text = self._routing_text_of(messages)
        for position, attempt in attempts.tries():
            target, call_kwargs = self._target(attempt.route, dict(kwargs))
            started = False
            held: list[Any] = []  # blank opening chunks, sent once the model answers
            await self._aemit(attempt, run_of_call)
            calling = partial(self._calling, attempt, run_of_call, self._carried(attempt, text))
            cache, key, collected = self._model_cache(target, messages, stop, call_kwargs), None, []
            try:
                config = self._child_config(attempt, run_of_call)
                if cache is not None:
                    key = model_cache_key(target, messages, self._stop(stop), call_kwargs)
                if key is not None and isinstance(await cache.alookup(*key), list):
                    with calling():
                        answer = await target.ainvoke(
                            messages, config, stop=self._stop(stop), **call_kwargs
                        )
                    stream: AsyncIterator[Any] = _one(_message_chunk(answer))
                    key = None
                else:
                    stream = target.astream(messages, config, stop=self._stop(stop), **call_kwargs)
                while (chunk := await _anext_chunk(stream, calling)) is not _END:
                    if key is not None:
                        collected.append(chunk)
                    if not started and _blank(chunk):
                        held.append(chunk)
                        continue
                    for pending in [*held, chunk]:
                        generation = _chunk(
                            pending,
                            attempt,
                            not started,
                            self._is_pool_level,
                            attempts.failed_levels,
                        )
                        started = True
                        if run_manager:
                            await run_manager.on_llm_new_token(generation.text, chunk=generation)
                        yield generation
                    held = []
            except Exception as error:
                if started:
                    raise
                attempts.handle(error, position)
                continue
            if key is not None and collected:
                await cache.aupdate(*key, streamed_answer(collected))
            if not started:
                for index, pending in enumerate(held or [AIMessageChunk(content="")]):
                    yield _chunk(
                        pending,
                        attempt,
                        index == 0,
                        self._is_pool_level,
                        attempts.failed_levels,
                    )
            return


@dataclass(frozen=True)
class _EventSink:
    """Where a pool's inner levels send their decision events: the outermost router's run
    (`run_manager`), with its graph position (`extra`) and, when that call is falling back,
    the model that failed first."""

    run_manager: Any
    extra: dict[str, Any]
    fallback_from: str | None


_EVENT_SINK: ContextVar[_EventSink | None] = ContextVar("routellm_event_sink", default=None)


@dataclass(frozen=True)
class _CarriedScore:
    """The score a pool level gave a call, for the next level (`level`, by id) to decide with
    instead of scoring the prompt again: one router call per prompt, and the score every level
    cuts is the same one, so each model answers exactly its band (a random or otherwise
    non-deterministic router would score each level differently). A next level with another
    router, or routing on another text (its own `route_on`), scores for itself."""

    level: int
    router: Any
    text: str
    score: float
    latency_ms: float
    batch_size: int

    def is_for(self, chat: RouteLLMChat, text: str) -> bool:
        return self.level == id(chat) and self.text == text and self.router is chat.get_router()


_CARRIED_SCORE: ContextVar[_CarriedScore | None] = ContextVar(
    "routellm_carried_score", default=None
)


@dataclass
class _Scored:
    """A batch's score for one text, and the threshold in force at each position the text
    holds in the batch, handed out in order: a prompt sent twice is routed twice, each time
    as the controller stood at that point (copies run concurrently may swap the two, which
    only matters as to which of two identical prompts got which)."""

    score: float
    latency_ms: float
    batch_size: int
    thresholds: deque[float] = field(default_factory=deque)
    last: float | None = None

    def next_threshold(self) -> float:
        try:
            self.last = self.thresholds.popleft()  # atomic: per-item calls run in threads
        except IndexError:  # more calls than positions (the same text routed again)
            pass
        assert self.last is not None
        return self.last


class _Prescored:
    """Scores a batch's prompts in one router pass; per-item calls then reuse the scores.

    A prompt sent twice in the batch is scored once but is two calls, so the controller counts
    its score twice. The scores live in `_BATCH_SCORES`, set in the batch's own context."""

    def __init__(
        self,
        chat: RouteLLMChat,
        inputs: Sequence[LanguageModelInput],
        overridden: Sequence[bool] | None = None,
    ) -> None:
        self.chat = chat
        overridden = overridden or [False] * len(inputs)
        pairs = [(self._text(i), o) for i, o in zip(inputs, overridden, strict=True)]
        self.texts = [t for t, _ in pairs if t is not None]
        #: per text: its call has its own threshold, so its score does not move the controller
        self.overridden = [o for t, o in pairs if t is not None]
        self._token: Token | None = None

    def _text(self, value: LanguageModelInput) -> str | None:
        """The routing text, or None for an input that cannot be routed: its own call raises
        the error, so `batch(..., return_exceptions=True)` returns it in that item's place."""
        try:
            return routing_text(self.chat._to_messages(value), self.chat.route_on)
        except Exception:  # EmptyPromptError, or an input LangChain cannot convert
            return None

    def __enter__(self) -> _Prescored:
        unique = list(dict.fromkeys(self.texts))
        if unique:
            self._install(self._plan(unique))
        return self

    async def __aenter__(self) -> _Prescored:
        unique = list(dict.fromkeys(self.texts))
        if unique:  # scored, and the controller moved, in a worker thread: the loop runs on
            gone = threading.Event()  # the batch was cancelled while it was scored
            try:
                self._install(await asyncio.to_thread(self._plan, unique, gone))
            except asyncio.CancelledError:
                gone.set()
                raise
        return self

    def _plan(self, unique: list[str], gone: threading.Event | None = None) -> dict[str, _Scored]:
        scored = self._score_all(unique)
        if gone is not None and gone.is_set():  # never routed: the controller never sees it
            return {}
        return self._remember(*scored)

    def _score_all(self, texts: list[str]) -> tuple[list[str], list[RoutingDecision]]:
        """The texts scored and their decisions: one router pass, or, when that pass fails,
        one pass per text, so one prompt the router cannot score does not fail the whole
        batch; a text that fails alone is left to its own call, which raises in its place."""
        try:
            return texts, self.chat._score(texts, None, observe=False)
        except Exception:
            if len(texts) == 1:
                return [], []
        scored: list[str] = []
        decisions: list[RoutingDecision] = []
        for text in texts:
            try:
                decisions += self.chat._score([text], None, observe=False)
            except Exception:
                continue
            scored.append(text)
        return scored, decisions

    def _remember(self, texts: list[str], decisions: list[RoutingDecision]) -> dict[str, _Scored]:
        """Each text's score and the thresholds in force at its positions, in order (the
        controller, if any, observes the governed scores now)."""
        memo = {
            text: _Scored(decision.score, decision.latency_ms, len(self.texts))
            for text, decision in zip(texts, decisions, strict=True)
        }
        routed = [(t, o) for t, o in zip(self.texts, self.overridden, strict=True) if t in memo]
        governed = [memo[t].score for t, o in routed if not o]
        in_force = iter(self.chat._in_order(governed))  # the controller sees these only
        placeholder = self.chat.current_threshold()  # an overridden call uses its own
        for text, overridden in routed:
            memo[text].thresholds.append(placeholder if overridden else next(in_force))
        return memo

    def _install(self, memo: dict[str, _Scored]) -> None:
        """Make the batch's scores visible to its calls (in the batch's own context)."""
        batches = _BATCH_SCORES.get() or {}
        self._token = _BATCH_SCORES.set({**batches, id(self.chat): memo})

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _BATCH_SCORES.reset(self._token)

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


class _Attempts:
    """The attempts of one call and the fallback policy between them: after a failed attempt,
    whether the next model may answer, and which error is raised when none does.

    The request itself being wrong (HTTP 400/413/422, a bad argument) is raised at once: the
    other model would fail the same way, at the same cost. A failure of the model or its
    provider (5xx, 429, timeouts, no connection, a broken reply) lets the other model answer;
    so does a broken configuration (401/403/404), with a warning naming the model. When every
    attempt failed, the first model's error is raised, as LangChain's `with_fallbacks` does,
    with the later failures attached (`__context__` and a note).

    In a pool an attempt may go to the next router level (`levels`), whose `router-…` name is
    no model. When that whole level fails, its error carries a `_LevelFailure`: the fallback
    then names the first real model that failed, and the answer's `cascade` lists the failed
    levels (`failed_levels`, marked `"failed": True`).
    """

    def __init__(self, attempts: list[RoutingDecision], levels: list[bool]) -> None:
        self.attempts = attempts
        self.levels = levels
        self.first: Exception | None = None
        self.first_model: str | None = None
        self.failed_levels: list[dict[str, Any]] = []

    def tries(self) -> Iterator[tuple[int, RoutingDecision]]:
        """(position, attempt), each attempt's `fallback_from` naming the first real model
        that failed (lazily: it is known once the attempt before has failed)."""
        for position in range(len(self.attempts)):
            yield position, self._attempt(position)

    def _attempt(self, position: int) -> RoutingDecision:
        attempt = self.attempts[position]
        if attempt.fallback_from is not None and self.first_model is not None:
            return replace(attempt, fallback_from=self.first_model)
        return attempt

    def handle(self, error: Exception, position: int) -> None:
        """Return if the next attempt should run; otherwise raise. Call it from `except`."""
        failure = getattr(error, _LEVEL_FAILURE, None) if self.levels[position] else None
        if isinstance(failure, _LevelFailure):
            model = failure.first_model
            self.failed_levels.extend(failure.levels)
        else:
            model = self.attempts[position].model
        last = position == len(self.attempts) - 1
        if self.first is not None:
            self.first.add_note(
                f"The fallback model {model} failed too: {type(error).__name__}: {error}"
            )
            if last:
                self._raise(self.first, position)  # its __context__ is `error`, being handled
            return
        self.first, self.first_model = error, model
        if last or _is_request_error(error):
            self._raise(error, position)
        status = _http_status(error)
        if status in _CONFIG_ERROR_STATUSES:
            logger.warning(
                "%s failed with HTTP %s, which suggests its configuration (API key, "
                "permissions, model name) is wrong; %s answers instead. %s: %s",
                model,
                status,
                self.attempts[position + 1].model,
                type(error).__name__,
                error,
            )

    def _raise(self, error: Exception, position: int) -> NoReturn:
        """Raise `error`, carrying this level's failure for a pool level above."""
        levels = [{**self._attempt(position).to_dict(), "failed": True}, *self.failed_levels]
        with suppress(AttributeError, TypeError):  # an exception type that takes no attributes
            setattr(error, _LEVEL_FAILURE, _LevelFailure(self.first_model or "", levels))
        raise error


#: Attribute of the error a router level raises when none of its models answered.
_LEVEL_FAILURE = "_routellm_level_failure"


@dataclass(frozen=True)
class _LevelFailure:
    """What a failed router level tells the pool level above: the first model that failed,
    and its own and its inner levels' last decisions (cascade entries, outermost first)."""

    first_model: str
    levels: list[dict[str, Any]]


#: Failures of a model's reply rather than of the request, though they are ValueErrors.
_REPLY_ERRORS: tuple[type[Exception], ...] = (
    lc_exceptions.OutputParserException,
    json.JSONDecodeError,
    UnicodeDecodeError,
)
#: LangChain's provider-neutral "the request is wrong" errors (newer langchain-core only).
_LANGCHAIN_REQUEST_ERRORS: tuple[type[Exception], ...] = tuple(
    cls
    for name in ("ModelInvalidRequestError", "ContextOverflowError")
    if isinstance(cls := getattr(lc_exceptions, name, None), type)
)


def _http_status(error: BaseException) -> int | None:
    """The HTTP error status a provider error carries (openai, LiteLLM, httpx and most SDKs
    set `status_code`, on the error or its response), or None."""
    for status in (
        getattr(error, "status_code", None),
        getattr(getattr(error, "response", None), "status_code", None),
    ):
        if isinstance(status, int) and status >= 400:
            return status
    return None


def _is_request_error(error: Exception) -> bool:
    """True when the request itself is wrong, so another model would reject it too."""
    status = _http_status(error)
    if status is not None:
        return status in REQUEST_ERROR_STATUSES
    if isinstance(error, _LANGCHAIN_REQUEST_ERRORS):
        return True
    if isinstance(error, _REPLY_ERRORS) or _raised_reading_a_reply(error):
        return False
    # Raised before anything was sent: a bad argument, an unsupported feature, a bug.
    return isinstance(error, (TypeError, ValueError, NotImplementedError))


#: The functions in which LangChain chat models turn a provider's reply into a result:
#: `ChatOpenAI` (and the integrations built on it or written after it: Groq, DeepSeek, xAI,
#: Fireworks, …) raise ValueError for a 200 carrying `{"error": …}` (OpenRouter, LiteLLM's
#: proxy) and TypeError for `"choices": null` (vLLM) there: a broken reply, not a bad request.
_REPLY_PARSERS = frozenset({"_create_chat_result", "_convert_chunk_to_generation_chunk"})


def _raised_reading_a_reply(error: BaseException) -> bool:
    """Whether `error` was raised inside a chat model's reply parser (see `_REPLY_PARSERS`)."""
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_name in _REPLY_PARSERS:
            return True
        traceback = traceback.tb_next
    return False


def _as_raw(message: AIMessage) -> dict[str, Any]:
    return {"raw": message}


@lru_cache(maxsize=64)
def _bind_tools_takes(model_class: type, name: str) -> bool:
    """Whether a chat model class's `bind_tools` names the parameter `name` (ChatOpenAI's has
    `strict`; forwarded to one that only has `**kwargs`, it would become a request
    parameter)."""
    return name in inspect.signature(model_class.bind_tools).parameters


class _DerivedProfile(dict):
    """A router's model profile derived from its sides (see `_resolve_model_profile`)."""


def _unbound_tools(kwargs: dict[str, Any]) -> None:
    """Replace the `_BoundTools` in call kwargs by its options (`parallel_tool_calls`), which
    belong in cache keys and traced parameters as before; its tools are there as `tools`."""
    given = kwargs.pop(_TOOLS_KWARG, None)
    if isinstance(given, _BoundTools):
        kwargs.update(given.options)


#: The call kwarg holding the tools as `bind_tools` got them (see `_BoundTools`).
_TOOLS_KWARG = "routellm_bound_tools"
#: `bind_tools` options the chosen model's own `bind_tools` gets when it names them.
_SIDE_BIND_OPTIONS = ("parallel_tool_calls",)


class _BoundTools:
    """The tools given to `RouteLLMChat.bind_tools`, as given and in OpenAI's format (what the
    binding's `tools` holds), with the options the chosen model's `bind_tools` translates
    itself. Its repr is stable (no object addresses). Pickled, it keeps the OpenAI format
    only (a `@tool` function's schema class does not pickle)."""

    def __init__(
        self, tools: Sequence[Any], formatted: Sequence[Any], options: dict[str, Any]
    ) -> None:
        self.tools = list(tools)
        self.formatted = list(formatted)
        self.options = dict(options)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_BoundTools, (self.formatted, self.formatted, self.options))

    def __repr__(self) -> str:
        return f"_BoundTools({len(self.tools)} tools, options={sorted(self.options.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BoundTools) and repr(self) == repr(other)

    __hash__ = None  # type: ignore[assignment]


def _child_run_name(model: str, callbacks: Any) -> str:
    """The chosen model's run is named for the model (`openai/gpt-4o`), except under
    `astream_log` (and `astream_events(version="v1")`, built on it): its JSON-patch paths are
    `/logs/<run name>` unescaped, so a "/" would split the path; there it is `openai:gpt-4o`."""
    handlers = callbacks if isinstance(callbacks, list) else callbacks.handlers
    if "/" in model and any(isinstance(h, LogStreamCallbackHandler) for h in handlers):
        return model.replace("/", ":")
    return model


def _child_callbacks(run_manager: Any) -> Any:
    """Callbacks whose runs nest under this LLM run (LLM run managers have no get_child).

    Only tracers (LangSmith, run collectors) see the chosen model's child run. Other handlers
    (token/usage counters, streaming handlers, `astream_events`) see one chat-model run per
    call, this one: forwarding them would count every call's usage and tokens twice.
    """
    if run_manager is not None:
        source, parent_run_id = run_manager, run_manager.run_id
    else:
        # `BaseChatModel.stream` gives `_stream` no run manager: filter the caller's context
        # callbacks instead (left unset, the child would inherit every handler from it).
        source = ensure_config().get("callbacks")
        if not source:
            return []
        if isinstance(source, list):
            return [h for h in source if isinstance(h, _TRACERS)]
        parent_run_id = source.parent_run_id
    manager_cls = (
        AsyncCallbackManager
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager
    )
    manager = manager_cls(handlers=[], parent_run_id=parent_run_id)
    manager.set_handlers([h for h in source.inheritable_handlers if isinstance(h, _TRACERS)])
    # The router run's routing tags describe its decision; the child run gets its own.
    manager.add_tags([t for t in source.inheritable_tags if not _is_routing_tag(t)])
    manager.add_metadata(source.inheritable_metadata)
    return manager


_FALLBACK_TAG = "routellm:fallback"

#: What sees the chosen model's child run: tracers, sync (LangSmith's) and async alike.
_TRACERS = (BaseTracer, AsyncBaseTracer)


async def _end_cancelled_child(config: RunnableConfig, error: BaseException) -> None:
    """End the chosen model's run (`config["run_id"]`) when the call is cancelled: LangChain
    lets the cancellation out of the child's `agenerate` without an end or error callback,
    so each cancelled `ainvoke` left a run open in LangSmith (and in the tracer's memory)."""
    callbacks = config.get("callbacks")
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    run_id = config.get("run_id")
    # only tracers holding the run: one cancelled before its start has nothing to end
    open_in = [h for h in handlers or [] if str(run_id) in getattr(h, "run_map", {})]
    if run_id is None or not open_in:
        return
    parent = callbacks.parent_run_id if isinstance(callbacks, BaseCallbackManager) else None
    for handler in open_in:
        # a model wrapped in a Runnable (`.with_retry()`, a binding) runs as a chain
        chain = getattr(handler.run_map[str(run_id)], "run_type", "llm") != "llm"
        kind = AsyncCallbackManagerForChainRun if chain else AsyncCallbackManagerForLLMRun
        manager = kind(
            run_id=run_id, handlers=[handler], inheritable_handlers=[], parent_run_id=parent
        )
        end = manager.on_chain_error(error) if chain else manager.on_llm_error(error)
        with suppress(Exception):
            await asyncio.shield(end)


def _is_routing_tag(tag: str) -> bool:
    return tag in ("routellm:strong", "routellm:weak", _FALLBACK_TAG) or tag.startswith(
        "routellm:model="
    )


@contextmanager
def _context_handlers_off() -> Iterator[None]:
    """Unset, for the chosen model's call, the handlers LangChain registers through context
    variables (`get_usage_metadata_callback()`, `get_openai_callback()`, ...); tracers stay.

    Every callback manager configured while such a variable is set adds its handler, so the
    child run would reach it too and each routed call's usage would be counted twice: the
    router's own run already reports the chosen model's usage to it (see `_child_callbacks`).
    """
    try:
        from langchain_core.tracers.context import _configure_hooks
    except ImportError:  # a langchain-core without context hooks: nothing to unset
        _configure_hooks = []
    tokens = []
    for var, *_ in _configure_hooks:
        handler = var.get()
        if handler is not None and not isinstance(handler, _TRACERS):
            tokens.append((var, var.set(None)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


_END = object()


def _message_chunk(message: BaseMessage) -> AIMessageChunk:
    """A whole answer (a cache hit's) as the one chunk of a stream."""
    if isinstance(message, AIMessageChunk):
        return message
    chunk = AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        id=message.id,
        name=message.name,
        tool_calls=list(getattr(message, "tool_calls", None) or []),
        invalid_tool_calls=list(getattr(message, "invalid_tool_calls", None) or []),
        chunk_position="last",
    )
    usage = getattr(message, "usage_metadata", None)
    if usage is not None:
        # LangChain marks a hit of an answer that had no usage with `{"total_cost": 0}` alone,
        # which merging chunks refuses: its token counts are zero (nothing was billed)
        zero = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        chunk = chunk.model_copy(update={"usage_metadata": {**zero, **usage}})
    return chunk


async def _one(item: Any) -> AsyncIterator[Any]:
    yield item


def _next_chunk(stream: Iterator[Any], calling: Callable[[], AbstractContextManager]) -> Any:
    """The stream's next chunk (`_END` at its end), produced in the model's context (`calling`,
    e.g. with context handlers unset: see `RouteLLMChat._calling`).

    Entered per step, not around the loop: between chunks the caller's own code runs, and its
    calls must still reach the caller's handlers."""
    with calling():
        return next(stream, _END)


async def _anext_chunk(
    stream: AsyncIterator[Any], calling: Callable[[], AbstractContextManager]
) -> Any:
    with calling():
        return await anext(stream, _END)


def _threshold_override(config: RunnableConfig) -> float | None:
    """The per-call threshold from `configurable` (e.g. set by a graph node), if any."""
    value = (config.get("configurable") or {}).get(THRESHOLD_CONFIG_KEY)
    return None if value is None else validate_threshold(value)


def _with_graph_position(decision: RoutingDecision, metadata: dict[str, Any]) -> RoutingDecision:
    """Record the LangGraph step and node the call runs in (from the run's metadata), and in a
    subgraph (or an agent run as a node) the enclosing graphs' nodes, outermost first
    (`parent_nodes`, from `langgraph_checkpoint_ns`): step and node are the subgraph's own."""
    position = {
        key: metadata[source]
        for key, source in (("step", "langgraph_step"), ("node", "langgraph_node"))
        if metadata.get(source) is not None
    }
    namespace = metadata.get("langgraph_checkpoint_ns")
    if isinstance(namespace, str) and "|" in namespace:
        # "agent:<task id>|model:<task id>": node names cannot hold ":" or "|". A functional
        # API `@task` adds its caller's segment (and a task called by a task, one more), but
        # runs in its caller's graph: those segments are not enclosing graphs.
        parts = [part.partition(":")[0] for part in namespace.split("|")]
        parents = parts[: -(1 + _task_depth(metadata.get("langgraph_path")))]
        if parents:
            position["parent_nodes"] = parents
    if not position:
        return decision
    return replace(decision, extra={**decision.extra, **position})


def _task_depth(path: Any) -> int:
    """How many `@task` calls deep a LangGraph run is, from its `langgraph_path`: a task's
    path is `("__pregel_push", <its caller's path>, index, True)` (a `Send` push has an index,
    not a path, in that place)."""
    depth = 0
    while isinstance(path, tuple) and len(path) > 1 and path[0] == "__pregel_push":
        if not isinstance(path[1], tuple):
            break
        depth, path = depth + 1, path[1]
    return depth


def _configured_callbacks(callbacks: Any) -> Any:
    """The caller's callbacks as one manager whose handlers this call's run and the chosen
    model's child run share: configured separately, an environment-enabled LangSmith tracer
    would be built twice, and a second tracer cannot nest the child under the router's run."""
    if isinstance(callbacks, BaseCallbackManager):
        return callbacks
    return CallbackManager.configure(callbacks)


def _with_run_id(config: RunnableConfig) -> RunnableConfig:
    """The config with a run id fixed in advance, so events can name the run."""
    return config if config.get("run_id") else {**config, "run_id": uuid7()}


def _json_schema_format(schema: dict[str, Any] | type, strict: bool | None) -> dict[str, Any]:
    """OpenAI's `response_format` for `schema`, as `ChatOpenAI` sends it, as a plain dict that
    LiteLLM and other LangChain chat models pass on as well."""
    if isinstance(schema, dict) and schema.get("type") == "json_schema" and "json_schema" in schema:
        return schema
    if isinstance(schema, dict) and "name" in schema and "schema" in schema:
        return {"type": "json_schema", "json_schema": schema}
    if strict is not False and isinstance(schema, type) and issubclass(schema, BaseModel):
        # What the openai SDK makes of a pydantic class for ChatOpenAI: a strict schema, every
        # property required (OpenAI rejects strict schemas with optional properties).
        import openai

        function = openai.pydantic_function_tool(schema)["function"]
        return {
            "type": "json_schema",
            "json_schema": {
                "name": function["name"],
                "schema": function["parameters"],
                "strict": True,
            },
        }
    if strict is None:
        own = schema.get("strict") if isinstance(schema, dict) else None
        strict = own if isinstance(own, bool) else False
    function = convert_to_openai_function(schema, strict=strict)
    function["schema"] = function.pop("parameters")
    return {"type": "json_schema", "json_schema": function}


def _parsed_reply(message: BaseMessage, schema: type[BaseModel]) -> BaseModel:
    """A `json_schema` reply as `schema`: ChatOpenAI's own parse when it made one, else the
    reply's JSON text."""
    parsed = message.additional_kwargs.get("parsed")
    if parsed is not None:
        return schema(**parsed) if isinstance(parsed, dict) else parsed
    if refusal := message.additional_kwargs.get("refusal"):
        raise lc_exceptions.OutputParserException(f"The model refused: {refusal}")
    return PydanticOutputParser(pydantic_object=schema).invoke(message)


def _routing_metadata(
    decision: RoutingDecision,
    answered: dict[str, Any],
    cascade: bool,
    failed: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The decision for `response_metadata["routing"]`.

    A level of a pool (`cascade`, see `routellm_lc.pool`) reports the model that finally
    answered, with every level's decision, outermost first, under `cascade` (the chosen model,
    when it is the next level, answers with its own decision; `failed`: the levels below this
    one that were tried and failed entirely), and `fallback_from` when any level fell back:
    the first model that failed.
    """
    own = decision.to_dict()
    inner = answered.get("routing")
    if not isinstance(inner, dict):
        return {**own, "cascade": [own, *failed]} if cascade else own
    levels = [own, *failed, *(inner.get("cascade") or [inner])]
    routing = {k: v for k, v in own.items() if k != "fallback_from"}
    routing.update((k, v) for k, v in inner.items() if k not in ("cascade", "fallback_from"))
    failed = next((level["fallback_from"] for level in levels if "fallback_from" in level), None)
    if failed is not None:
        routing["fallback_from"] = failed
    return {**routing, "cascade": levels}


def _result(
    message: BaseMessage,
    decision: RoutingDecision,
    cascade: bool,
    failed: Sequence[dict[str, Any]] = (),
) -> ChatResult:
    routing = _routing_metadata(decision, message.response_metadata, cascade, failed)
    message = message.model_copy(
        update={"response_metadata": {**message.response_metadata, "routing": routing}}
    )
    # `llm_output` as the answering model's (ChatOpenAI's keys, which LangChain also merged
    # into its message's metadata), for callbacks and `generate()` readers, plus the decision
    answered = {
        k: message.response_metadata[k] for k in _LLM_OUTPUT if k in message.response_metadata
    }
    return ChatResult(
        generations=[ChatGeneration(message=message)], llm_output={**answered, "routing": routing}
    )


#: The answering model's `llm_output` keys the router's own passes on (ChatOpenAI's).
_LLM_OUTPUT = ("token_usage", "model_name", "system_fingerprint", "id")


def _blank(chunk: BaseMessage) -> bool:
    """A chunk that answers nothing yet, such as the role-only chunk OpenAI streams first: the
    model has not started answering, so a failure after it may still fall back."""
    return not (
        chunk.content
        or chunk.additional_kwargs
        or getattr(chunk, "tool_call_chunks", None)
        or getattr(chunk, "usage_metadata", None)
    )


def _chunk(
    chunk: BaseMessage,
    decision: RoutingDecision,
    first: bool,
    cascade: bool,
    failed: Sequence[dict[str, Any]] = (),
) -> ChatGenerationChunk:
    if not isinstance(chunk, AIMessageChunk):
        chunk = AIMessageChunk(content=chunk.content)
    if first:  # once per stream: merged chunks keep it, and it is not duplicated
        routing = _routing_metadata(decision, chunk.response_metadata, cascade, failed)
        chunk = chunk.model_copy(
            update={"response_metadata": {**chunk.response_metadata, "routing": routing}}
        )
    return ChatGenerationChunk(message=chunk)
