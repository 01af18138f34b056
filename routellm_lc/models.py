"""Strong/weak model resolution: a LangChain chat model, or a LiteLLM model string.

A string such as `openai/gpt-4o`, `anthropic/claude-3-5-sonnet-latest` or `openai/my-model`
with `api_base` (any OpenAI-compatible endpoint) becomes a `LiteLLMChatModel`: a thin
LangChain adapter over `litellm.completion` / `acompletion`. LiteLLM itself is imported on
the first call, not at import (it costs ~3 s), and always with an explicit timeout and retry
count (its defaults, 600 s and retries, look like a hang). Where LiteLLM and LangChain's
`ChatOpenAI` could differ, the adapter does what `ChatOpenAI` does: `strict` tool definitions,
the `stream_usage` flag, usage details and `response_metadata`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, SecretStr

from routellm_lc.model_names import litellm_model_string

DEFAULT_STRONG_MODEL = "openai/gpt-4o"
DEFAULT_WEAK_MODEL = "openai/gpt-4o-mini"
STRONG_MODEL_ENV = "ROUTELLM_LC_STRONG_MODEL"
WEAK_MODEL_ENV = "ROUTELLM_LC_WEAK_MODEL"
_PROVIDER = "litellm"  # response_metadata["model_provider"] of every message and chunk


def default_strong_model() -> str:
    return os.environ.get(STRONG_MODEL_ENV) or DEFAULT_STRONG_MODEL


def default_weak_model() -> str:
    return os.environ.get(WEAK_MODEL_ENV) or DEFAULT_WEAK_MODEL


_LITELLM_READY = False


def _litellm() -> Any:
    global _LITELLM_READY
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback" banners on every provider error
    if not _LITELLM_READY:
        # tiktoken's cl100k_base, which LiteLLM loads lazily when a stream first counts its
        # usage (0.1-0.3 s): loaded with the import, so never on an event loop
        getattr(litellm, "encoding", None)
        _LITELLM_READY = True
    return litellm


async def _alitellm() -> Any:
    """`_litellm()` for async code: the first import (~3 s) runs in a worker thread, so it
    does not stall the event loop and every other coroutine on it."""
    if _LITELLM_READY:
        return _litellm()
    return await asyncio.to_thread(_litellm)


class LiteLLMChatModel(BaseChatModel):
    """Any LiteLLM provider as a LangChain chat model (tools, streaming, usage)."""

    model: str
    """LiteLLM model string, e.g. `openai/gpt-4o` or `openai/<name>` with `api_base`."""
    api_base: str | None = None
    """Base URL of an OpenAI-compatible endpoint (or a provider's own base URL)."""
    api_key: SecretStr | None = None
    """API key; `None` lets LiteLLM read the provider's usual environment variable."""
    timeout: float = 60.0
    """Seconds before a request is abandoned."""
    max_retries: int = 1
    """Retries of a request that failed with a connection error, a timeout, a 408, 409, 429 or
    5xx status, with exponential backoff: `max_retries=2` makes at most 3 attempts. LiteLLM hands
    it to the OpenAI SDK client, so it holds for `openai/...` models, Azure and any
    OpenAI-compatible `api_base`; providers that LiteLLM calls with its own HTTP handler
    (Anthropic, for one) make a single attempt."""
    temperature: float | None = None
    max_tokens: int | None = None
    stream_usage: bool = True
    """Ask for token usage at the end of a stream (`stream_options.include_usage`), as
    `ChatOpenAI(stream_usage=True)`; `stream(..., stream_usage=False)` turns it off for one call.
    A LangChain flag: it is never sent as a request field."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra parameters passed to `litellm.completion` as is."""

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None]) -> dict[str, Any]:
        return combine_llm_outputs(llm_outputs)

    @property
    def _llm_type(self) -> str:
        return "litellm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """What makes its answers differ (LLM-cache keys, tracing): never the key."""
        sampling = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {
            "model": self.model,
            "api_base": self.api_base,
            **{k: v for k, v in sampling.items() if v is not None},
            **({"model_kwargs": self.model_kwargs} if self.model_kwargs else {}),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        # Per-call overrides (`invoke(..., model=..., temperature=...)`) are what was sent.
        model = kwargs.get("model") or self.model
        provider, _, name = model.partition("/")
        # as ChatOpenAI / ChatAnthropic report them (`openai` and `gpt-4o`): LangSmith prices a
        # run by matching its model name, which the provider prefix would spoil
        params = LangSmithParams(
            ls_provider=provider if name else "litellm",
            ls_model_name=name or model,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if temperature is not None:
            params["ls_temperature"] = temperature
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | dict | bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in OpenAI's format, as `ChatOpenAI.bind_tools` does.

        `tool_choice`: a tool's name, `"auto"`, `"none"`, `"any"`/`"required"`/`True`, or an
        OpenAI `tool_choice` dict; `None` or `False` sends none (the provider's default, as
        on `ChatOpenAI`). `strict=True` marks each function definition strict (and
        closes its parameter schema), so the provider's output matches the schema exactly;
        `None` leaves `strict` out.
        """
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        if tool_choice:  # as ChatOpenAI: False (and None) leave the provider's default
            kwargs["tool_choice"] = _openai_tool_choice(tool_choice, formatted)
        return self.bind(tools=formatted, **kwargs)

    def _resolve_model_profile(self) -> dict[str, Any] | None:
        """LangChain's model profile (context window, tool calling, structured output, ...),
        from LiteLLM's map of this model, read without importing LiteLLM; None for a model
        the map does not know (a self-hosted one on an `api_base`)."""
        from routellm_lc.costs import model_entry

        entry = model_entry(self.model)
        return None if entry is None else profile_from_litellm(entry)

    # -- token counting --------------------------------------------------------------------
    def get_num_tokens(self, text: str) -> int:
        """Tokens in `text`, counted by LiteLLM's `token_counter` for this model (its own
        tokenizer where LiteLLM bundles one, else OpenAI's), not LangChain's GPT-2 fallback."""
        if self.custom_get_token_ids is not None:
            return super().get_num_tokens(text)
        return int(_litellm().token_counter(model=self.model, text=text))

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of a request with these messages (and tool definitions), LiteLLM's count
        with its per-message overhead: what `trim_messages(token_counter=model)` uses."""
        if self.custom_get_token_ids is not None:
            return super().get_num_tokens_from_messages(messages, tools)
        return int(
            _litellm().token_counter(
                model=self.model,
                messages=convert_to_openai_messages(messages),
                tools=[convert_to_openai_tool(t) for t in tools] if tools else None,
            )
        )

    # -- requests --------------------------------------------------------------------------
    def _params(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": convert_to_openai_messages(messages),
            "timeout": self.timeout,
            # Only `max_retries`: LiteLLM's `num_retries` overrides it (so `num_retries=0` meant
            # no retries at all) and adds its own retry loop on top of the client's.
            "max_retries": self.max_retries,
        }
        if self.api_base:
            params["api_base"] = self.api_base
        if self.api_key is not None:
            params["api_key"] = self.api_key.get_secret_value()
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if stop:
            params["stop"] = stop
        params.update(self.model_kwargs)
        params.update({k: v for k, v in kwargs.items() if v is not None and k != "stream_usage"})
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._params(messages, stop, **kwargs)
        return _chat_result(_litellm().completion(**params), params["model"])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._params(messages, stop, **kwargs)
        litellm = await _alitellm()
        return _chat_result(await litellm.acompletion(**params), params["model"])

    def _stream_params(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        stream_usage: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        params = self._params(messages, stop, **kwargs)
        params["stream"] = True
        # As ChatOpenAI: the call's `stream_usage`, then explicit `stream_options`, then the field.
        options = dict(params.pop("stream_options", None) or {})
        if stream_usage is None:
            explicit = options.get("include_usage")
            stream_usage = explicit if isinstance(explicit, bool) else self.stream_usage
        if stream_usage:
            options["include_usage"] = True
        else:
            options.pop("include_usage", None)
        if options:
            params["stream_options"] = options
        return params

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params = self._stream_params(messages, stop, **kwargs)
        stream = _litellm().completion(**params)
        try:
            for raw in stream:
                chunk = _generation_chunk(raw, params["model"])
                if chunk is None:
                    continue
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        except GeneratorExit:
            # Closed before the end, perhaps by the garbage collector while this thread holds
            # the HTTP pool's lock inside another request: closing the response here would wait
            # for that lock for ever. Another thread closes it once the lock is free.
            threading.Thread(target=_close, args=(stream,), daemon=True).start()
            raise
        except BaseException:
            _close(stream)
            raise
        else:
            _close(stream)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        params = self._stream_params(messages, stop, **kwargs)
        stream = await (await _alitellm()).acompletion(**params)
        try:
            async for raw in stream:
                chunk = _generation_chunk(raw, params["model"])
                if chunk is None:
                    continue
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


def _close(stream: Any) -> None:
    """Close a LiteLLM stream's HTTP response, also when the caller stopped reading early.

    LiteLLM's stream wrapper sits in a reference cycle, so without this the provider stream is
    closed by the garbage collector, at whatever point it runs: inside another request on this
    thread, it would wait for the HTTP pool lock that request holds, for ever (seen with
    `next(iter(llm.stream(...)))`). Closed here, the collector finds nothing left to close."""
    inner = getattr(stream, "completion_stream", None)
    close = getattr(inner, "close", None)
    if close is not None:
        close()


def _openai_tool_choice(tool_choice: str | dict | bool, tools: list[dict[str, Any]]) -> Any:
    """LangChain's tool_choice spellings → OpenAI's."""
    if tool_choice is True or tool_choice == "any":
        return "required"
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": tool_choice}}
    return tool_choice


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return dict(obj)


#: LiteLLM's capability flags, as LangChain's `ModelProfile` names them.
_PROFILE_FLAGS = {
    "supports_function_calling": "tool_calling",
    "supports_tool_choice": "tool_choice",
    "supports_response_schema": "structured_output",
    "supports_vision": "image_inputs",
    "supports_pdf_input": "pdf_inputs",
    "supports_audio_input": "audio_inputs",
    "supports_audio_output": "audio_outputs",
    "supports_reasoning": "reasoning_output",
}


def profile_from_litellm(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A `ModelProfile` from a LiteLLM price-map entry: the limits and the flags it states."""
    profile: dict[str, Any] = {}
    for key in ("max_input_tokens", "max_output_tokens"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            profile[key] = value
    for flag, name in _PROFILE_FLAGS.items():
        if isinstance(entry.get(flag), bool):
            profile[name] = entry[flag]
    if entry.get("mode") == "chat":
        profile["text_inputs"] = profile["text_outputs"] = True
    return profile  # a `ModelProfile` (a TypedDict)


def _usage(raw: Any) -> UsageMetadata | None:
    """OpenAI-shaped usage (LiteLLM's for every provider) as LangChain's, with the cached,
    cache-write, reasoning and audio token counts where reported, named as ChatOpenAI names them."""
    usage = _as_dict(raw)
    if not usage or usage.get("prompt_tokens") is None:
        return None
    input_tokens = int(usage.get("prompt_tokens") or 0)
    output_tokens = int(usage.get("completion_tokens") or 0)
    metadata = UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=int(usage.get("total_tokens") or input_tokens + output_tokens),
    )
    prompt = _as_dict(usage.get("prompt_tokens_details"))
    completion = _as_dict(usage.get("completion_tokens_details"))
    input_details = _reported(
        audio=prompt.get("audio_tokens"),
        cache_read=prompt.get("cached_tokens"),
        cache_creation=prompt.get("cache_write_tokens"),
    )
    output_details = _reported(
        audio=completion.get("audio_tokens"), reasoning=completion.get("reasoning_tokens")
    )
    if input_details:
        metadata["input_token_details"] = InputTokenDetails(**input_details)
    if output_details:
        metadata["output_token_details"] = OutputTokenDetails(**output_details)
    return metadata


def _reported(**counts: Any) -> dict[str, int]:
    return {name: int(count) for name, count in counts.items() if count is not None}


def combine_llm_outputs(llm_outputs: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """`generate()`'s `llm_output` over several calls, as ChatOpenAI combines its own: token
    usage summed (nested counts too), the model's name when every call names the same one, and
    the first system fingerprint."""
    usage: dict[str, Any] = {}
    names = set()
    fingerprint = None
    for output in llm_outputs:
        if not output:
            continue
        _add_counts(usage, output.get("token_usage") or {})
        names.add(output.get("model_name"))
        fingerprint = fingerprint or output.get("system_fingerprint")
    combined: dict[str, Any] = {"token_usage": usage}
    if len(names) == 1 and None not in names:
        combined["model_name"] = names.pop()
    if fingerprint:
        combined["system_fingerprint"] = fingerprint
    return combined


def _add_counts(total: dict[str, Any], counts: Mapping[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, Mapping):
            _add_counts(total.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def _answered_by(requested: str, returned: Any) -> str:
    """The answering model as a LiteLLM string: the provider's reported name (e.g. a dated
    snapshot) under the requested provider prefix, so it can be passed back to LiteLLM."""
    if not returned:
        return requested
    returned = str(returned)
    provider, sep, _ = requested.partition("/")
    if sep and not returned.startswith(provider + "/"):
        return f"{provider}/{returned}"
    return returned


def _chat_result(response: Any, requested: str) -> ChatResult:
    from langchain_core.exceptions import OutputParserException
    from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call

    data = _as_dict(response)
    choice = data["choices"][0]
    message = _as_dict(choice.get("message"))
    tool_calls, invalid = [], []
    for raw_call in message.get("tool_calls") or []:
        raw_call = _as_dict(raw_call)
        try:
            parsed = parse_tool_call(raw_call, return_id=True)
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(raw_call, str(exc)))
        else:
            if parsed is not None:
                tool_calls.append(parsed)
    metadata = {
        "model_name": _answered_by(requested, data.get("model")),
        "finish_reason": choice.get("finish_reason"),
        "model_provider": _PROVIDER,
    }
    ai = AIMessage(
        content=message.get("content") or "",
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(data.get("usage")),
        response_metadata=metadata,
        # not the completion's id (it is `response_metadata["id"]`, as ChatOpenAI keeps it): a
        # message id is LangGraph's key, and an endpoint that repeats completion ids (Ollama's
        # `chatcmpl-<0..998>`) made later answers replace earlier ones in a thread's history
        id=message.get("id"),
    )
    # As ChatOpenAI's: LangChain also merges it into the message's `response_metadata`.
    llm_output = {
        "token_usage": _as_dict(data.get("usage")),
        "model_name": metadata["model_name"],
        "system_fingerprint": data.get("system_fingerprint") or "",
    }
    if data.get("id"):
        llm_output["id"] = data["id"]
    return ChatResult(
        generations=[
            ChatGeneration(
                message=ai, generation_info={"finish_reason": choice.get("finish_reason")}
            )
        ],
        llm_output=llm_output,
    )


def _generation_chunk(raw: Any, requested: str) -> ChatGenerationChunk | None:
    data = _as_dict(raw)
    usage = _usage(data.get("usage"))
    choices = data.get("choices") or []
    content, tool_chunks, metadata = "", [], {}
    if choices:
        choice = choices[0]
        delta = _as_dict(choice.get("delta"))
        content = delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            call = _as_dict(call)
            function = _as_dict(call.get("function"))
            tool_chunks.append(
                tool_call_chunk(
                    name=function.get("name"),
                    args=function.get("arguments"),
                    id=call.get("id"),
                    index=call.get("index"),
                )
            )
        if choice.get("finish_reason"):
            metadata = {
                "finish_reason": choice["finish_reason"],
                "model_name": _answered_by(requested, data.get("model")),
            }
    if not content and not tool_chunks and usage is None and not metadata:
        return None
    message = AIMessageChunk(
        content=content,
        tool_call_chunks=tool_chunks,
        usage_metadata=usage,
        response_metadata={**metadata, "model_provider": _PROVIDER},
        # No provider id on chunks (as ChatOpenAI): LangChain gives every chunk of the run,
        # its closing `chunk_position="last"` one included, the run's id; a provider id on
        # the others would read as a second message to clients that group chunks by id.
    )
    return ChatGenerationChunk(message=message)


def resolve_model(
    model: BaseChatModel | str,
    *,
    api_base: str | None = None,
    api_key: SecretStr | str | None = None,
    timeout: float = 60.0,
    max_retries: int = 1,
) -> BaseChatModel:
    """A LangChain chat model as is; a string as a `LiteLLMChatModel`."""
    if isinstance(model, BaseChatModel):
        return model
    if isinstance(model, str) and model.strip():
        key = api_key if isinstance(api_key, SecretStr) or api_key is None else SecretStr(api_key)
        return LiteLLMChatModel(
            model=litellm_model_string(model.strip()),
            api_base=api_base,
            api_key=key,
            timeout=timeout,
            max_retries=max_retries,
        )
    raise TypeError(
        f"A model must be a LangChain chat model or a LiteLLM model string, got {model!r}."
    )


def model_name(model: BaseChatModel | str) -> str:
    """The name a decision records for a model."""
    if isinstance(model, str):
        return litellm_model_string(model.strip())
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type
