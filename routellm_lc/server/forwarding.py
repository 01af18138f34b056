"""Forwarding a chat request to the chosen model.

OpenAI-compatible upstreams (`openai/...` model strings, or any model with an `api_base`) get
a direct relay: one shared `aiohttp.ClientSession` with a keep-alive pool, the client's request
body passed through with only `model` replaced, the response bytes relayed as they came.
LiteLLM (`acompletion`) costs ~5 ms of CPU per request (RouteLLM's server spends two thirds of
its time there), so it is used only for providers that do not speak OpenAI's protocol.

Every failure is turned into an `UpstreamFailure` that names the model and carries the status
the client should get (502; 504 for timeouts; 429, with `Retry-After`, for rate limits); a
client error the upstream reports (400/413/422: the request itself is wrong) is relayed as is.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from routellm_lc.errors import REQUEST_ERROR_STATUSES, error_chain
from routellm_lc.models import _litellm
from routellm_lc.server.errors import error_body

#: Upstream statuses that are the client's fault: relayed, never retried on the other model.
CLIENT_ERRORS = REQUEST_ERROR_STATUSES
DONE_EVENT = b"data: [DONE]\n\n"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: Characters of an upstream's error text kept in a failure's message.
MAX_DETAIL_CHARS = 1000


class UpstreamFailure(Exception):
    """The chosen model did not answer usably: 502 (or 504 on a timeout) unless a fallback
    model answers instead."""

    def __init__(
        self, model: str, kind: str, detail: str, status: int = 502, retry_after: str | None = None
    ) -> None:
        self.model = model
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        """The upstream's `Retry-After` when it answered 429."""
        self.code = "upstream_timeout" if status == 504 else "upstream_error"
        # one line, bounded: an upstream's text goes into our logs and error bodies, and a
        # newline in it would forge a log line
        detail = _CONTROL.sub(" ", detail)[:MAX_DETAIL_CHARS]
        super().__init__(f"Model {model!r} failed ({kind}): {detail}")

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Target:
    """Where one of the two models lives."""

    name: str
    """The configured model string (what decisions record), e.g. `openai/gpt-4o`."""
    wire_model: str
    """The `model` sent upstream (for the direct relay: without the `openai/` prefix)."""
    url: str | None
    """Chat-completions URL for the direct relay; None = LiteLLM."""
    api_key: str | None
    api_base: str | None


def build_target(
    model: str, api_base: str | None, api_key: str | None, forwarding: str = "auto"
) -> Target:
    """Direct relay for OpenAI-protocol models, LiteLLM for every other provider."""
    provider, sep, rest = model.partition("/")
    is_openai = sep and provider == "openai"
    direct = forwarding == "auto" and (is_openai or (not sep and api_base is not None))
    if not direct:
        return Target(model, model, None, api_key, api_base)
    base = (
        api_base
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or "https://api.openai.com/v1"
    )
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    return Target(
        model, rest if is_openai else model, base.rstrip("/") + "/chat/completions", key, base
    )


@dataclass
class Reply:
    """A complete JSON answer: the model's completion, or a client error it reported."""

    status: int
    body: bytes
    usage: Any = None
    """The completion's `usage` (for the cost metrics), if it reported one."""
    headers: tuple[tuple[str, str], ...] = ()
    """The upstream's response headers relayed to the client (`RELAYED_HEADERS`)."""


#: Upstream response headers the direct relay passes on: the provider's request id (what its
#: support asks for; the `openai` SDK's `_request_id`), its processing time and its rate-limit
#: state for the model that answered (named in `x-routellm-model`).
RELAYED_HEADERS = ("x-request-id", "openai-processing-ms")
RELAYED_HEADER_PREFIXES = ("x-ratelimit-",)


def relayed_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The headers of an upstream response (`RELAYED_HEADERS`) to pass on to the client."""
    return tuple(
        (name.lower(), value)
        for name, value in headers.items()
        if name.lower() in RELAYED_HEADERS or name.lower().startswith(RELAYED_HEADER_PREFIXES)
    )


def _answers(payload: Any) -> bool:
    """Whether a stream event carries any of the answer: content, a tool call, a finish
    reason or usage. The opening role-only event does not (nor Azure's choice-less filter
    event, nor an error event), so a failure right after it may still go to the other model."""
    if not isinstance(payload, dict):
        return True
    if payload.get("usage"):
        return True
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("finish_reason"):
            return True
        delta = choice.get("delta") or {}
        if any(value not in (None, "", [], {}) for key, value in delta.items() if key != "role"):
            return True
    return False


def _error_event(target: Target, payload: Any) -> UpstreamFailure | None:
    """An `{"error": ...}` event (a failure the upstream reports inside a 200 stream) as an
    `UpstreamFailure`; None for any other event."""
    if not isinstance(payload, dict) or payload.get("error") is None:
        return None
    error = payload["error"]
    message = error.get("message") if isinstance(error, dict) else error
    return UpstreamFailure(target.name, "error_event", str(message or "an error event"))


def _unanswered(target: Target) -> UpstreamFailure:
    return UpstreamFailure(
        target.name, "malformed", "the stream ended before any of its answer arrived"
    )


class Stream:
    """An upstream SSE stream whose answer has begun (so it can no longer fall back): `first`
    holds its events up to the first that carries any of the answer.

    `next()` returns the next batch of complete, validated events (None at the end) or raises
    `UpstreamFailure`; `close()` releases the upstream connection; `usage()` is the last
    `usage` an event has carried so far (None: none did; OpenAI sends it at the end when the
    request asked for `stream_options.include_usage`).
    """

    def __init__(
        self,
        first: bytes,
        next_batch: Callable[[], Awaitable[bytes | None]],
        close: Callable[[], Awaitable[Any]],
        usage: Callable[[], Any] = lambda: None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.first = first
        self.next = next_batch
        self.close = close
        self.usage = usage
        self.headers = headers
        """The upstream's response headers relayed to the client (`RELAYED_HEADERS`)."""


def _checked_json(
    target: Target,
    status: int,
    content: bytes,
    retry_after: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """A finished upstream response as a `Reply`, or an `UpstreamFailure` (429 keeps its
    status and `Retry-After`: if the other model is rate-limited too, the client gets 429)."""
    if 200 <= status < 300:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamFailure(target.name, "malformed", "response is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            # no answer: `{"error": ...}` in a 200 (OpenRouter, proxies), `"choices": null`
            raise UpstreamFailure(target.name, "malformed", "response has no 'choices' list")
        return Reply(status, content, data.get("usage"), headers)
    message = _upstream_message(content) or f"HTTP {status}"
    if status in CLIENT_ERRORS:
        if _upstream_message(content) is not None:
            return Reply(status, content, headers=headers)
        body = orjson.dumps(error_body(message, "invalid_request_error"))
        return Reply(status, body, headers=headers)
    if status == 429:
        raise UpstreamFailure(target.name, "status_429", message, 429, retry_after)
    raise UpstreamFailure(target.name, f"status_{status}", message)


def _upstream_message(content: bytes) -> str | None:
    """The `error.message` of an OpenAI-shaped error body, if that is what it is."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or "")
    return None


class _EventReader:
    """Complete SSE events from a byte stream, each `data:` payload checked to be JSON.

    Relaying whole events only means a client never sees half an event, and a broken one
    becomes a clean error event instead of a JSON error deep inside the client's SDK. Lines
    may end in CR, LF or CRLF (the SSE spec; sse-starlette sends CRLF), also when a CRLF is
    split between two network reads; the events are relayed with LF line endings.
    """

    def __init__(self, chunks: AsyncIterator[bytes], target: Target) -> None:
        self._chunks = chunks
        self._target = target
        self._buffer = b""
        self._after_cr = False  # the last read ended in CR: an LF opening the next one is its pair
        self._at_start = True  # nothing read yet (a byte-order mark may open the stream)
        self.done = False
        self.answered = False  # an event with any of the answer has arrived
        self.usage: Any = None  # the last `usage` an event carried

    async def next_batch(self) -> bytes | None:
        while True:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                if self._buffer.strip():
                    raise UpstreamFailure(
                        self._target.name, "malformed", "stream ended inside an event"
                    ) from None
                return None
            except TimeoutError:
                raise _timeout(self._target) from None
            except aiohttp.ClientError as exc:
                raise _transport(self._target, exc) from None
            if not chunk:
                continue
            if self._at_start:  # the SSE spec: a byte-order mark opening the stream is ignored
                chunk = chunk.removeprefix(b"\xef\xbb\xbf")
                self._at_start = not chunk
            if self._after_cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self._after_cr = chunk.endswith(b"\r")
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._buffer += chunk
            cut = self._buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, self._buffer = self._buffer[: cut + 2], self._buffer[cut + 2 :]
            self._check(complete)
            return complete

    def _check(self, events: bytes) -> None:
        for event in events.split(b"\n\n"):
            data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
            if not data:
                continue
            payload = b"\n".join(data)
            if payload == b"[DONE]":
                self.done = True
                continue
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamFailure(
                    self._target.name, "malformed", "stream event is not valid JSON"
                ) from None
            if not self.answered:  # an error before the answer: the other model may answer
                failure = _error_event(self._target, parsed)
                if failure is not None:
                    raise failure
            self.answered = self.answered or _answers(parsed)
            if isinstance(parsed, dict) and parsed.get("usage"):
                self.usage = parsed["usage"]


def _timeout(target: Target) -> UpstreamFailure:
    return UpstreamFailure(target.name, "timeout", "no response within the timeout", status=504)


def _transport(target: Target, exc: Exception) -> UpstreamFailure:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure(target.name, "unreachable", f"cannot connect ({exc})")
    return UpstreamFailure(target.name, "connection", f"{type(exc).__name__}: {exc}")


class DirectForwarder:
    """Relays to OpenAI-compatible endpoints over one pooled keep-alive HTTP client.

    aiohttp rather than httpx: measured here, httpx's connection pool (httpcore) took ~80% of
    the server's CPU at concurrency 16, a fifth of it re-checking every idle pooled socket on
    each request; aiohttp's client costs a fraction of that.
    """

    def __init__(self, timeout: float, connect_timeout: float, max_connections: int) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent",),
        )
        # A whole answer must arrive within `timeout`; a stream must make progress every
        # `timeout` seconds (a long generation is not a hang).
        self.answer_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=timeout
        )

    async def aclose(self) -> None:
        await self.session.close()

    @staticmethod
    def _request(target: Target, body: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        payload = orjson.dumps({**body, "model": target.wire_model})
        headers = {"content-type": "application/json"}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        return payload, headers

    async def complete(self, target: Target, body: Mapping[str, Any]) -> Reply:
        assert target.url is not None
        payload, headers = self._request(target, body)
        try:
            async with self.session.post(
                target.url, data=payload, headers=headers, timeout=self.answer_timeout
            ) as response:
                content = await response.read()
                status = response.status
                retry_after = response.headers.get("retry-after")
                relayed = relayed_headers(response.headers)
        except TimeoutError:
            raise _timeout(target) from None
        except aiohttp.ClientError as exc:
            raise _transport(target, exc) from None
        return _checked_json(target, status, content, retry_after, relayed)

    async def open_stream(self, target: Target, body: Mapping[str, Any]) -> Reply | Stream:
        assert target.url is not None
        payload, headers = self._request(target, body)
        try:
            response = await self.session.post(
                target.url, data=payload, headers=headers, timeout=self.stream_timeout
            )
        except TimeoutError:
            raise _timeout(target) from None
        except aiohttp.ClientError as exc:
            raise _transport(target, exc) from None
        try:
            content_type = response.headers.get("content-type", "")
            if response.status != 200 or content_type.startswith("application/json"):
                content = await response.read()
                retry_after = response.headers.get("retry-after")
                relayed = relayed_headers(response.headers)
                return _checked_json(target, response.status, content, retry_after, relayed)
            reader = _EventReader(response.content.iter_any(), target)
            first = await reader.next_batch()
            if first is None:
                raise UpstreamFailure(target.name, "malformed", "empty stream")
            while not (reader.answered or reader.done):  # held: the answer has not begun
                more = await reader.next_batch()
                if more is None:
                    break
                first += more
            if not reader.answered:  # it ended (or sent [DONE]) with none of its answer
                raise _unanswered(target)
        except TimeoutError:
            response.close()
            raise _timeout(target) from None
        except aiohttp.ClientError as exc:
            response.close()
            raise _transport(target, exc) from None
        except BaseException:
            response.close()
            raise
        return Stream(
            first,
            _with_done(reader),
            _releaser(response),
            lambda: reader.usage,
            relayed_headers(response.headers),
        )


def _releaser(response: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    """Give the connection back (to the pool when the stream was read to its end)."""

    async def close() -> None:
        response.release()

    return close


def _with_done(reader: _EventReader) -> Callable[[], Awaitable[bytes | None]]:
    """`reader.next_batch`, ending with a `[DONE]` event if the upstream omitted it."""
    finished = False

    async def next_batch() -> bytes | None:
        nonlocal finished
        if finished:
            return None
        batch = await reader.next_batch()
        if batch is None:
            finished = True
            return None if reader.done else DONE_EVENT
        return batch

    return next_batch


#: OpenAI Chat Completions request fields that `litellm.acompletion` takes as named arguments
#: (and translates for each provider), and `thinking`, LiteLLM's own cross-provider form of
#: Anthropic's extended thinking. Every other field of a request goes upstream inside
#: `extra_body`, so no request can set one of LiteLLM's own options (`api_base`, `api_key`,
#: `extra_headers`, `mock_response`, `custom_llm_provider`, `metadata`, ...).
LITELLM_REQUEST_FIELDS = frozenset(
    {
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "thinking",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
#: `extra_body` keys LiteLLM takes out and uses itself (`azure_ad_token`: Azure's credential)
#: instead of sending them: dropped.
LITELLM_EXTRA_BODY_OPTIONS = frozenset({"azure_ad_token"})
#: OpenAI request fields for OpenAI's own platform (stored completions' `metadata`): left out
#: for providers LiteLLM translates, which have no such thing (LiteLLM would keep `metadata`
#: for its own logging).
OPENAI_PLATFORM_FIELDS = frozenset({"metadata"})
#: LiteLLM providers it calls through the OpenAI SDK besides `openai_compatible_providers`.
OPENAI_SDK_PROVIDERS = frozenset({"openai", "azure", "custom_openai", "text-completion-openai"})


def _verdict_key(value: Any) -> Any:
    """What of a field's value LiteLLM's parameter check reads: a value at its default (null
    for most fields, `false` for `stream`) counts as unset (`store: null` is accepted where
    `store: false` is not), and a few scalar values matter (`tool_choice: "none"`, `n: 2`);
    a list or object only counts as given. Values are not kept whole: tools and schemas
    would fill the cache."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 64):
        return (type(value).__name__, value)
    return type(value).__name__


def _client_error_body(exc: Exception) -> dict[str, Any]:
    """An upstream's 400/413/422 as LiteLLM reports it: the upstream's own error object when
    LiteLLM kept it (`body`, on the error or one it was raised from, for providers it calls
    through the OpenAI SDK), so a client branching on `code` (`context_length_exceeded`,
    Azure's `content_filter`) and `param` still can; else LiteLLM's message."""
    bodies = (getattr(link, "body", None) for link in error_chain(exc))
    upstream = next(
        (b for b in bodies if isinstance(b, Mapping) and isinstance(b.get("message"), str)), None
    )
    if upstream is not None:
        kind = upstream.get("type")
        param, code = upstream.get("param"), upstream.get("code")
        return error_body(
            upstream["message"],
            kind if isinstance(kind, str) else "invalid_request_error",
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )
    return error_body(str(exc), "invalid_request_error")


def _litellm_accepts(model: str, provider: str, fields: Mapping[str, Any]) -> bool:
    """Whether LiteLLM's own parameter check (the one `acompletion` runs) accepts `fields`
    for `model` at `provider`. Any error but `UnsupportedParamsError` (a value it cannot
    read) is left to the call, which reports it."""
    litellm = _litellm()
    try:
        litellm.utils.get_optional_params(model=model, custom_llm_provider=provider, **fields)
    except litellm.UnsupportedParamsError:
        return False
    except Exception:  # noqa: BLE001 - not a question of support: the call says what it is
        return True
    return True


class _Refused(Exception):
    """A request the LiteLLM path answers itself (400), without calling the model."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body.decode())
        self.reply = Reply(status, body)


class LiteLLMForwarder:
    """Any LiteLLM provider, through `litellm.acompletion` (imported on first use)."""

    def __init__(
        self, timeout: float, max_retries: int, passthrough: Iterable[str] = ("top_k",)
    ) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.passthrough = frozenset(passthrough) - LITELLM_REQUEST_FIELDS
        self._named: dict[str, tuple[frozenset[str], bool, str, str | None]] = {}
        # LiteLLM's verdict per target and request fields (see `_verdict_key`)
        self._refusals: dict[tuple[str, frozenset[tuple[str, Any]]], tuple[str, str] | None] = {}

    def check_passthrough(self) -> None:
        """Refuse a passthrough field that is one of LiteLLM's own options (`api_base`,
        `mock_response`, ...): as a named argument it would configure LiteLLM, not the call."""
        litellm = _litellm()
        from litellm.types.utils import all_litellm_params

        options = set(all_litellm_params) | set(inspect.signature(litellm.completion).parameters)
        clash = sorted(self.passthrough & options)
        if clash:
            from routellm_lc.server.config import ServerConfigError

            raise ServerConfigError(
                f"passthrough_fields {clash} are LiteLLM's own options, not request fields."
            )

    def _named_fields(self, target: Target) -> tuple[frozenset[str], bool]:
        """The request fields passed to LiteLLM as named arguments for this target, and
        whether the target takes the others in `extra_body` (an OpenAI-compatible API, which
        LiteLLM calls through the OpenAI SDK: it merges `extra_body` into the request).

        For provider `openai`, only the fields LiteLLM sends for the model are named: it
        leaves out fields it does not list for a model outside OpenAI's catalog (`user`,
        `verbosity`), which would make it drop `user` silently and reject others; in
        `extra_body` they reach the endpoint as the direct relay would send them. Other
        providers get every field LiteLLM translates (it maps, drops or rejects them), and
        the passthrough fields (`top_k`) as they are.
        """
        return self._provider_fields(target)[:2]

    def _provider_fields(self, target: Target) -> tuple[frozenset[str], bool, str, str | None]:
        """`_named_fields`, with the model and provider LiteLLM names for the target (the
        provider None when LiteLLM cannot tell)."""
        cached = self._named.get(target.name)
        if cached is None:
            named, openai_like = LITELLM_REQUEST_FIELDS, True
            model, provider = target.name, None
            litellm = _litellm()
            try:
                model, provider, _, _ = litellm.get_llm_provider(
                    target.name, api_base=target.api_base
                )
                openai_like = provider in OPENAI_SDK_PROVIDERS or provider in set(
                    litellm.openai_compatible_providers
                )
                if provider == "openai":
                    supported = litellm.get_supported_openai_params(
                        model=model, custom_llm_provider=provider
                    )
                    named = named & {"messages", "stream", *(supported or ())}
                if not openai_like:
                    named = named | self.passthrough
            except Exception:  # LiteLLM cannot tell: it reports that on the call itself
                pass
            cached = self._named[target.name] = (named, openai_like, model, provider)
        return cached

    def unsupported(self, target: Target, body: Mapping[str, Any]) -> tuple[str, str] | None:
        """(field, message) for the first field of `body` this target cannot be sent, or
        None. For a provider LiteLLM translates: a field that is neither an OpenAI field it maps
        nor a passthrough field, or an OpenAI field LiteLLM's own check refuses for this
        provider and model (`UnsupportedParamsError`: `store` or `parallel_tool_calls` for
        Ollama), asked before the call so that a request is refused whichever model it routes
        to. An OpenAI-compatible endpoint takes every field (in `extra_body`)."""
        named, openai_like, model, provider = self._provider_fields(target)
        if openai_like:
            return None
        skipped = ("model", *LITELLM_EXTRA_BODY_OPTIONS, *OPENAI_PLATFORM_FIELDS)
        field = next((key for key in body if key not in named and key not in skipped), None)
        if field is not None:
            return field, (
                f"Unrecognized request argument supplied: {field}. The model {target.name!r} is "
                "served through LiteLLM, which takes OpenAI's chat fields and this server's "
                f"passthrough fields ({', '.join(sorted(self.passthrough)) or 'none'}; "
                "`routellm-lc serve --passthrough-field NAME` adds one)."
            )
        if provider is None:
            return None
        fields = {
            key: value
            for key, value in body.items()
            if key in LITELLM_REQUEST_FIELDS and key not in ("messages", "model")
        }
        if not fields:
            return None
        key = (target.name, frozenset((k, _verdict_key(v)) for k, v in fields.items()))
        if key not in self._refusals:
            if len(self._refusals) >= 4096:  # bounded: field sets come from clients
                self._refusals.clear()
            self._refusals[key] = self._litellm_refusal(target, model, provider, fields)
        return self._refusals[key]

    @staticmethod
    def _litellm_refusal(
        target: Target, model: str, provider: str, fields: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        if _litellm_accepts(model, provider, fields):
            return None
        field = next(
            (k for k in fields if not _litellm_accepts(model, provider, {k: fields[k]})), None
        )
        return (field or next(iter(fields))), (
            f"The model {target.name!r} ({provider}, served through LiteLLM) does not support "
            f"the parameter {field or ', '.join(fields)!r}: a request with it is refused "
            "whichever model it routes to. Leave it out, or serve an OpenAI-compatible "
            "endpoint for this model (its fields go through as they are)."
        )

    def _params(self, target: Target, body: Mapping[str, Any]) -> dict[str, Any]:
        """LiteLLM's arguments for a request; `_Refused` for a field this target's provider
        cannot be sent (`unsupported`; the server checks both models before routing)."""
        refused = self.unsupported(target, body)
        if refused is not None:
            field, message = refused
            body_bytes = error_body(
                message, "invalid_request_error", param=field, code="unsupported_parameter"
            )
            raise _Refused(400, orjson.dumps(body_bytes))
        named, openai_like = self._named_fields(target)
        params: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in body.items():
            if key in named:
                params[key] = value
            elif key == "model" or key in LITELLM_EXTRA_BODY_OPTIONS:
                continue
            elif openai_like:
                extra[key] = value
        if extra:
            params["extra_body"] = extra
        # only `max_retries`: LiteLLM's `num_retries` overrides it (`num_retries=0` meant no
        # retries whatever --max-retries said) and adds a retry loop of its own on top
        params.update(model=target.name, timeout=self.timeout, max_retries=self.max_retries)
        if target.api_base:
            params["api_base"] = target.api_base
        if target.api_key:
            params["api_key"] = target.api_key
        return params

    def _failure(self, target: Target, exc: Exception) -> Reply:
        """A client error LiteLLM reports becomes a `Reply`; anything else is raised as an
        `UpstreamFailure`."""
        failure = self._classify(target, exc)
        if isinstance(failure, Reply):
            return failure
        raise failure from None

    @staticmethod
    def _classify(target: Target, exc: Exception) -> Reply | UpstreamFailure:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, _litellm().Timeout) or status in (408, 504):
            return _timeout(target)
        if status in CLIENT_ERRORS:
            return Reply(int(status), orjson.dumps(_client_error_body(exc)))
        kind = f"status_{status}" if isinstance(status, int) else "litellm"
        detail = f"{type(exc).__name__}: {exc}"
        if status == 429:
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            return UpstreamFailure(target.name, kind, detail, 429, headers.get("retry-after"))
        return UpstreamFailure(target.name, kind, detail)

    async def complete(self, target: Target, body: Mapping[str, Any]) -> Reply:
        try:
            params = self._params(target, body)
        except _Refused as refused:
            return refused.reply
        try:
            response = await _litellm().acompletion(**params)
        except Exception as exc:
            return self._failure(target, exc)
        data = response.model_dump()
        return Reply(200, orjson.dumps(data, default=str), data.get("usage"))

    async def open_stream(self, target: Target, body: Mapping[str, Any]) -> Reply | Stream:
        try:
            params = self._params(target, body)
        except _Refused as refused:
            return refused.reply
        params["stream"] = True
        stream: Any = None
        usage: Any = None

        def payload_of(chunk: Any) -> dict[str, Any]:
            nonlocal usage
            payload = _payload(chunk)
            if payload.get("usage"):
                usage = payload["usage"]
            return payload

        try:
            stream = await _litellm().acompletion(**params)
            chunks = aiter(stream)
            opening = [payload_of(await anext(chunks))]
            # held until the answer begins; LiteLLM ends a stream that had no finish reason
            # with a "stop" of its own, which is not an answer
            while _synthetic_end(stream) or not _answers(opening[-1]):
                if _synthetic_end(stream):
                    raise _unanswered(target)
                opening.append(payload_of(await anext(chunks)))
        except StopAsyncIteration:
            raise _unanswered(target) from None
        except UpstreamFailure:
            await _aclose(stream)
            raise
        except Exception as exc:
            await _aclose(stream)
            return self._failure(target, exc)
        finished = False

        async def next_batch() -> bytes | None:
            nonlocal finished
            if finished:
                return None
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                finished = True
                return DONE_EVENT
            except Exception as exc:  # after the first chunk: the stream ends with an error
                finished = True
                failure = self._classify(target, exc)
                if isinstance(failure, Reply):
                    failure = UpstreamFailure(target.name, "litellm", str(exc))
                raise failure from None
            return _sse(payload_of(chunk))

        async def close() -> None:
            await _aclose(stream)

        return Stream(b"".join(map(_sse, opening)), next_batch, close, lambda: usage)


def _synthetic_end(stream: Any) -> bool:
    """Whether LiteLLM's stream wrapper has given its last chunk without the upstream having
    sent a finish reason (it then makes up `finish_reason: "stop"`)."""
    return (
        getattr(stream, "sent_last_chunk", False) is True
        and getattr(stream, "received_finish_reason", "") is None
        and getattr(stream, "intermittent_finish_reason", "") is None
    )


async def _aclose(stream: Any) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:  # closing a broken upstream stream may fail; nothing to do
            pass


def _payload(chunk: Any) -> dict[str, Any]:
    """A LiteLLM stream chunk as OpenAI sends it: without LiteLLM's own empty fields, but
    with each choice's `finish_reason` and `logprobs` (null until set), which OpenAI's chunks
    always carry and strictly typed clients expect."""
    payload = chunk.model_dump(exclude_none=True)
    for choice in payload.get("choices") or ():
        if isinstance(choice, dict):
            choice.setdefault("finish_reason", None)
            choice.setdefault("logprobs", None)
    return payload


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload, default=str) + b"\n\n"


Forwarder = DirectForwarder | LiteLLMForwarder
