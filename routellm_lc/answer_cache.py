"""The router layer's LLM cache: the cache a `RouteLLMChat` is given, minus fallback answers.

`RouteLLMChat(cache=...)` keys a routed answer by the model the router chose (see
`RouteLLMChat._get_llm_string`): the key is made before the call, so LangChain would store an
answer the *other* model gave after a fallback under the chosen model's key, and every later
call of that prompt would get it, long after the chosen model is back. `AnsweredCache` passes
lookups through and drops those updates: a fallback answer is used once, never reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.globals import get_llm_cache


class AnsweredCache(BaseCache):
    """`inner` (a cache, or LangChain's global one when `inner` is True or None) that stores
    only answers the chosen model gave. With `inner=True` and no global cache set, a lookup
    raises LangChain's own error, as `cache=True` does on any chat model."""

    def __init__(self, inner: BaseCache | bool | None) -> None:
        self.inner = inner

    def _target(self) -> BaseCache | None:
        if isinstance(self.inner, BaseCache):
            return self.inner
        cache = get_llm_cache()
        if cache is None and self.inner is True:
            raise ValueError("Asked to cache, but no cache found at `langchain.cache`.")
        return cache

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        cache = self._target()
        return None if cache is None else cache.lookup(prompt, llm_string)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        cache = self._target()
        return None if cache is None else await cache.alookup(prompt, llm_string)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        cache = self._target()
        if cache is not None and not fell_back(return_val):
            cache.update(prompt, llm_string, return_val)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        cache = self._target()
        if cache is not None and not fell_back(return_val):
            await cache.aupdate(prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        cache = self._target()
        if cache is not None:
            cache.clear(**kwargs)

    async def aclear(self, **kwargs: Any) -> None:
        cache = self._target()
        if cache is not None:
            await cache.aclear(**kwargs)


def fell_back(generations: Sequence[Any]) -> bool:
    """Whether a routed answer came from another model than the router chose (its decision
    has `fallback_from`: set after a fallback at any level of a pool too)."""
    for generation in generations:
        metadata = getattr(getattr(generation, "message", None), "response_metadata", None)
        routing = (metadata or {}).get("routing") or {}
        if routing.get("fallback_from"):
            return True
    return False


# ------------------------------------------------------------------ the answering model's cache


def model_cache(model: Any) -> BaseCache | None:
    """The LLM cache `model.invoke` reads and writes, picked as LangChain's
    `_generate_with_cache` picks it: the model's `cache=` object, else the global cache
    (`set_llm_cache`); None for `cache=False`, for no cache, and for a model that is no
    `BaseChatModel`."""
    from langchain_core.language_models import BaseChatModel

    if not isinstance(model, BaseChatModel):
        return None
    setting = model.cache
    if setting is False:
        return None
    return setting if isinstance(setting, BaseCache) else get_llm_cache()


def model_cache_key(
    model: Any, messages: Sequence[Any], stop: list[str] | None, kwargs: dict[str, Any]
) -> tuple[str, str]:
    """(prompt, llm_string) under which `model.invoke(messages, stop=stop, **kwargs)` caches
    its answer: LangChain's own key (normalised messages without ids; the model's LLM string
    for these call arguments), so a streamed call and an invoked one share entries."""
    from langchain_core.load import dumps

    try:
        from langchain_core.language_models._utils import _normalize_messages
    except ImportError:  # an older or newer langchain-core: messages as given
        normalized = list(messages)
    else:
        normalized = _normalize_messages(list(messages))
    normalized = [
        m.model_copy(update={"id": None}) if getattr(m, "id", None) is not None else m
        for m in normalized
    ]
    call = {k: v for k, v in kwargs.items() if k not in _NOT_IN_LLM_STRING}
    return dumps(normalized), model._get_llm_string(stop=stop, **call)


#: Call arguments `BaseChatModel.generate` pops before it keys the cache.
_NOT_IN_LLM_STRING = ("ls_structured_output_format", "structured_output_format")


def streamed_answer(chunks: Sequence[Any]) -> list[Any]:
    """A finished stream's chunks as the generations `invoke` would have cached."""
    from langchain_core.messages import message_chunk_to_message
    from langchain_core.outputs import ChatGeneration

    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return [ChatGeneration(message=message_chunk_to_message(merged))]
