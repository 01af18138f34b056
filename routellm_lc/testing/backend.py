"""A local, deterministic, OpenAI-compatible LLM backend for tests, examples and benchmarks.

Tests, examples and benchmarks never call real LLM providers. Instead they start this server on
127.0.0.1 and point the real clients (LiteLLM, the ``openai`` SDK, ``langchain-openai``,
LangGraph, LangSmith) at it over real HTTP: the network boundary is the only simulated thing.

Endpoints: ``POST /v1/chat/completions`` (JSON and SSE streaming, tool calls, structured output),
``POST /v1/embeddings`` (deterministic unit vectors), ``GET /v1/models``, ``GET /health``.

Replies are deterministic and say which model answered::

    "[<model>] echo: <the start of the last user message>"

In a thread (tests)::

    from routellm_lc.testing import LocalBackend

    with LocalBackend() as backend:            # free port on 127.0.0.1
        client = openai.OpenAI(base_url=backend.base_url, api_key="test")
        client.chat.completions.create(model="weak", messages=[...])
        backend.configure("strong", latency_ms=50, reply="fixed text")
        backend.configure(scripted={"capital of France": {"reply": "Paris."}})  # by prompt
        backend.fail(status=503, times=2, model="strong")     # next 2 strong calls -> 503
        backend.fail(kind="timeout", sleep_s=5)               # any model, always
        backend.fail(kind="drop", after_chunks=3)             # close mid-stream
        backend.fail(kind="malformed")                        # 200 with a broken JSON body
        backend.fail(kind="error_body")      # 200 with {"error": {...}} (OpenRouter, proxies)
        backend.fail(kind="null_choices")    # 200 with "choices": null (vLLM)
        backend.requests_for("strong")[-1].body["temperature"]
        backend.reset()                                       # settings, faults and log

    LocalBackend.refused_url()   # a base_url on which nothing listens

As a process (examples, benchmarks)::

    python -m routellm_lc.testing.backend --port 8001 [--latency-ms 20] [--api-key KEY]

A process backend is configured over HTTP: ``POST /_control/configure`` with
``{"model": ..., <settings>}``, ``POST /_control/fail`` with the :meth:`LocalBackend.fail`
arguments, ``POST /_control/reset``, ``GET /_control/requests``.

The server is a small asyncio HTTP/1.1 protocol (keep-alive, chunked SSE) rather than a web
framework, so that it is never the bottleneck when benchmarks push thousands of requests per
second through the router in front of it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

FaultKind = Literal["status", "timeout", "drop", "malformed", "error_body", "null_choices"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_BODY = 32 * 1024 * 1024
_ECHO_WORDS = 12


# --------------------------------------------------------------------------- configuration


@dataclass
class ModelSettings:
    """How a model behaves. Per-model settings override the global ones field by field.

    ``None`` means "inherit" (from the global settings, then the built-in default).
    """

    latency_ms: float | None = None
    """Delay before the response (before the first chunk when streaming)."""
    chunk_delay_ms: float | None = None
    """Delay between streamed chunks."""
    reply: str | None = None
    """Exact reply text instead of the default ``"[<model>] echo: ..."``."""
    tool_arguments: dict[str, dict[str, Any]] | None = None
    """Exact tool-call arguments by tool name (instead of schema-derived values)."""
    embedding_dim: int | None = None
    """Embedding size when the request gives no ``dimensions``."""
    usage_details: dict[str, Any] | None = None
    """Extra fields merged into every reported `usage`, e.g. ``{"prompt_tokens_details":
    {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}}`` (prompt
    caching, reasoning models)."""
    scripted: dict[str, dict[str, Any]] | None = None
    """Scripted answers: when the last user message contains a key, that key's settings
    (``reply``, ``tool_arguments``) apply, e.g. ``{"magic_function(3)": {"tool_arguments":
    {"magic_function": {"input": 3}}}}``. The first matching key wins."""


_DEFAULTS = ModelSettings(
    latency_ms=0.0,
    chunk_delay_ms=0.0,
    reply=None,
    tool_arguments={},
    embedding_dim=64,
    usage_details={},
    scripted={},
)


def _apply_script(settings: ModelSettings, body: Mapping[str, Any]) -> ModelSettings:
    """The settings with the first scripted answer whose key the last user message contains."""
    if not settings.scripted:
        return settings
    users = [
        m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"
    ]
    text = _text_of(users[-1].get("content")) if users else ""
    for key, overrides in settings.scripted.items():
        if key in text:
            allowed = {"reply", "tool_arguments"}
            return replace(settings, **{k: v for k, v in overrides.items() if k in allowed})
    return settings


@dataclass
class Fault:
    """An injected failure; ``times=None`` means every matching request."""

    kind: FaultKind = "status"
    status: int = 500
    times: int | None = 1
    model: str | None = None
    sleep_s: float = 30.0
    after_chunks: int = 0
    message: str = "injected fault"
    code: str | None = None
    """The error's `code` (a status fault's body), e.g. "context_length_exceeded"."""
    param: str | None = None

    def matches(self, model: str | None) -> bool:
        return (self.times is None or self.times > 0) and (
            self.model is None or self.model == model
        )


@dataclass
class RecordedRequest:
    """One request as the backend received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    model: str | None = None
    status: int = 200
    received_at: float = field(default_factory=time.time)
    #: The client closed the connection before the whole reply was sent (a delayed reply or a
    #: stream it stopped reading): what a provider sees when a caller gives up.
    abandoned: bool = False
    #: The `x-request-id` the reply carried, as OpenAI sends one on every response.
    request_id: str = ""


# --------------------------------------------------------------------------- replies


@dataclass
class _Reply:
    """What to send back, and when. Built synchronously; only sleeping needs a task."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    chunks: list[bytes] | None = None  # SSE events -> chunked transfer encoding
    chunk_delay_s: float = 0.0
    drop_after: int | None = None  # close the connection after this many chunks (or at once)
    headers: tuple[tuple[str, str], ...] = ()
    record: RecordedRequest | None = None  # the logged request this answers

    @property
    def immediate(self) -> bool:
        return self.delay_s <= 0 and (self.chunks is None or self.chunk_delay_s <= 0)


def _json_reply(status: int, payload: Any, **kw: Any) -> _Reply:
    return _Reply(status=status, body=json.dumps(payload).encode(), **kw)


def _error_reply(
    status: int,
    message: str,
    err_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> _Reply:
    """An OpenAI-shaped error body, which the SDKs turn into their typed exceptions."""
    error = {"message": message, "type": err_type, "param": param, "code": code}
    return _json_reply(status, {"error": error})


def _text_of(content: Any) -> str:
    """Message content as plain text (strings or lists of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text", "")))
            else:
                parts.append(str(part))
        return " ".join(p for p in parts if p)
    return str(content)


def _count_tokens(text: str) -> int:
    """Roughly one token per word: realistic enough for cost accounting tests."""
    return len(text.split())


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages") or []
    total = sum(
        _count_tokens(_text_of(m.get("content"))) + 3 for m in messages if isinstance(m, dict)
    )
    if body.get("tools"):
        total += _count_tokens(json.dumps(body["tools"]))
    return max(total, 1)


def _example_value(schema: Any, name: str, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """A plausible value for a JSON schema (required fields only, first enum / union member)."""
    if not isinstance(schema, dict) or depth > 8:
        return f"example {name}"
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return _example_value(defs.get(ref, {}), name, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            options = [
                s for s in schema[union] if not (isinstance(s, dict) and s.get("type") == "null")
            ]
            return _example_value((options or schema[union])[0], name, defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return _example_object(schema, defs, depth + 1)
    if kind == "array":
        return [_example_value(schema.get("items", {}), name, defs, depth + 1)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"example {name}"


def _example_object(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int = 0) -> dict:
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return {key: _example_value(properties.get(key, {}), key, defs, depth) for key in required}


def _schema_instance(schema: Mapping[str, Any]) -> dict:
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _example_object(schema, defs)


def _chosen_tool(body: Mapping[str, Any]) -> dict | None:
    """The function to call, or None when the reply should be text: with `tool_choice`
    "auto" (or unset) a tool is called only in answer to a user message (so agent loops
    end); "required" or a named function forces a call whatever came last, as OpenAI does."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    messages = body.get("messages") or []
    last_role = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
    forced = choice == "required" or isinstance(choice, dict)
    if not tools or choice == "none" or (last_role != "user" and not forced):
        return None
    functions = [t.get("function", t) for t in tools]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
        for fn in functions:
            if fn.get("name") == wanted:
                return fn
    return functions[0]


def _echo(body: Mapping[str, Any]) -> str:
    """The default reply: the last user message (or tool results) echoed back."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    trailing_tools: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        trailing_tools.append(_text_of(message.get("content")))
    if trailing_tools:
        return "tool result: " + " | ".join(reversed(trailing_tools))
    users = [m for m in messages if m.get("role") == "user"]
    words = _text_of(users[-1].get("content")).split() if users else []
    return "echo: " + " ".join(words[:_ECHO_WORDS])


def _stable_hex(*parts: Any, length: int = 24) -> str:
    digest = hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:length]


def _embedding(text: str, dim: int) -> list[float]:
    """A unit vector seeded by the text: equal texts give equal vectors, others differ."""
    rng = random.Random(hashlib.blake2b(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


# --------------------------------------------------------------------------- HTTP protocol


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One client connection: parse HTTP/1.1 requests, answer them in order."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.task: asyncio.Task | None = None
        self.pending: RecordedRequest | None = None  # whose reply is still being sent
        self.continued = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.backend._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.backend._connections.discard(self)
        self.transport = None
        if self.pending is not None:
            self.pending.abandoned = True
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._process()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> _Request | None | Literal[False]:
        """The next complete request, None if incomplete, False if unparseable."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False if len(self.buffer) > 65536 else None
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = head[0].split(" ", 2)
        except ValueError:
            return False
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return False
        if length > _MAX_BODY:
            return False
        if len(self.buffer) < end + 4 + length:
            if headers.get("expect", "").lower() == "100-continue" and not self.continued:
                self.continued = True  # curl waits a second for this before sending big bodies
                if self.transport is not None:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        self.continued = False
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version != "HTTP/1.0" or connection == "keep-alive")
        return _Request(method, target.split("?", 1)[0], headers, body, keep_alive)

    def _process(self) -> None:
        while self.transport is not None and not self.busy:
            request = self._parse()
            if request is None:
                return
            if request is False:
                self._write_plain(_error_reply(400, "malformed HTTP request"), keep_alive=False)
                self.close()
                return
            reply = self.backend._dispatch(request)
            if reply.immediate and reply.drop_after is None:
                self._write_plain(reply, request.keep_alive)
                if not request.keep_alive:
                    self.close()
                    return
            else:
                self.busy = True
                self.pending = reply.record
                self.task = asyncio.get_running_loop().create_task(self._send_later(reply, request))

    async def _send_later(self, reply: _Reply, request: _Request) -> None:
        try:
            if reply.delay_s > 0:
                await asyncio.sleep(reply.delay_s)
            if reply.drop_after is not None and reply.chunks is None:
                self.pending = None
                self.close()  # the server vanishes before answering
                return
            if reply.chunks is None:
                self._write_plain(reply, request.keep_alive)
            elif not await self._write_stream(reply):
                return
            self.pending = None
            if not request.keep_alive:
                self.close()
                return
        except asyncio.CancelledError:
            return
        self.busy = False
        self.task = None
        self._process()

    def _head(self, reply: _Reply, extra: str) -> bytes:
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        lines.append(f"content-type: {reply.content_type}")
        lines.extend(f"{k}: {v}" for k, v in reply.headers)
        lines.append(extra)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write_plain(self, reply: _Reply, keep_alive: bool) -> None:
        if self.transport is None:
            return
        if reply.chunks is not None:  # immediate stream: every event in one write
            events = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in reply.chunks)
            head = self._head(reply, "transfer-encoding: chunked\r\ncache-control: no-cache")
            self.transport.write(head + events + b"0\r\n\r\n")
            return
        connection = "keep-alive" if keep_alive else "close"
        extra = f"content-length: {len(reply.body)}\r\nconnection: {connection}"
        self.transport.write(self._head(reply, extra) + reply.body)

    async def _write_stream(self, reply: _Reply) -> bool:
        """Send SSE events one by one; False when the connection was (deliberately) dropped."""
        assert reply.chunks is not None
        head = self._head(reply, "transfer-encoding: chunked\r\ncache-control: no-cache")
        if self.transport is None:
            return False
        self.transport.write(head)
        for index, chunk in enumerate(reply.chunks):
            if reply.drop_after is not None and index >= reply.drop_after:
                self.pending = None
                self.close()
                return False
            if index and reply.chunk_delay_s > 0:
                await asyncio.sleep(reply.chunk_delay_s)
            if self.transport is None:
                return False
            self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if self.transport is None:
            return False
        self.transport.write(b"0\r\n\r\n")
        return True


# --------------------------------------------------------------------------- the backend


class LocalBackend:
    """An OpenAI-compatible backend on 127.0.0.1, in a background thread with its own loop.

    Thread-safe: tests configure it from the main thread while it serves from its own.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        models: Sequence[str] = ("strong-model", "weak-model"),
        log_limit: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.models = list(models)
        self._lock = threading.Lock()
        self._global = ModelSettings()
        self._per_model: dict[str, ModelSettings] = {}
        self._faults: list[Fault] = []
        self._log: deque[RecordedRequest] = deque(maxlen=log_limit)
        self._answered = 0  # requests answered, for their ids (the log is bounded, clearable)
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` (ends in ``/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalBackend:
        """Start serving in a daemon thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="routellm-lc-backend", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._thread = None
        self._loop = None
        self._server = None

    def __enter__(self) -> LocalBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        """Serve on the current event loop (the ``python -m`` entry point)."""
        await self._bind()
        assert self._server is not None
        print(f"local OpenAI-compatible backend on {self.base_url}", flush=True)
        async with self._server:
            await self._server.serve_forever()

    @staticmethod
    def refused_url() -> str:
        """A ``base_url`` on 127.0.0.1 where nothing listens: connections are refused."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    # ------------------------------------------------------------------ configuration

    def configure(self, model: str | None = None, **settings: Any) -> None:
        """Set behaviour for one model, or globally when ``model`` is None.

        Keys are :class:`ModelSettings` fields: ``latency_ms``, ``chunk_delay_ms``, ``reply``,
        ``tool_arguments``, ``embedding_dim``, ``usage_details``, ``scripted``.
        """
        known = {f.name for f in fields(ModelSettings)}
        unknown = set(settings) - known
        if unknown:
            raise TypeError(f"unknown backend settings {sorted(unknown)}; known: {sorted(known)}")
        with self._lock:
            if model is None:
                self._global = replace(self._global, **settings)
            else:
                current = self._per_model.get(model, ModelSettings())
                self._per_model[model] = replace(current, **settings)
                if model not in self.models:
                    self.models.append(model)

    def fail(
        self,
        kind: FaultKind = "status",
        *,
        status: int = 500,
        times: int | None = 1,
        model: str | None = None,
        sleep_s: float = 30.0,
        after_chunks: int = 0,
        message: str = "injected fault",
        code: str | None = None,
        param: str | None = None,
    ) -> Fault:
        """Inject a failure for the next ``times`` matching requests (``None``: always).

        kinds: ``status`` (an OpenAI-style error with ``status``, and ``code`` / ``param``
        when given), ``timeout`` (sleep ``sleep_s`` before answering normally), ``drop`` (close the connection before answering, or after
        ``after_chunks`` chunks of a stream), ``malformed`` (200 with a truncated JSON body / a
        broken SSE event after ``after_chunks`` events, at least the first), ``error_body``
        (200 whose JSON is ``{"error": {"message", "code": status}}``, as OpenRouter and
        proxies answer a failed upstream; in a stream, that event after ``after_chunks``
        events), ``null_choices`` (200 with ``"choices": null``, as vLLM can answer; in a
        stream, such a chunk after ``after_chunks`` events).
        """
        if kind not in ("status", "timeout", "drop", "malformed", "error_body", "null_choices"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            # `fail(status="timeout")` would inject nothing a test meant: say which argument
            hint = " (a timeout is fail('timeout'))" if status in ("timeout", "drop") else ""
            raise ValueError(f"status must be an HTTP status code, got {status!r}{hint}")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise ValueError(f"times must be a whole number or None (always), got {times!r}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (None: always), got {times!r}")
        fault = Fault(kind, status, times, model, sleep_s, after_chunks, message, code, param)
        with self._lock:
            self._faults.append(fault)
        return fault

    def reset(self) -> None:
        """Forget settings, faults and the request log (models and api_key stay)."""
        with self._lock:
            self._global = ModelSettings()
            self._per_model.clear()
            self._faults.clear()
            self._log.clear()

    def settings_for(self, model: str | None) -> ModelSettings:
        """Effective settings: per-model over global over defaults."""
        with self._lock:
            layers = [self._per_model.get(model or "", ModelSettings()), self._global, _DEFAULTS]
        values = {}
        for f in fields(ModelSettings):
            values[f.name] = next(
                (getattr(layer, f.name) for layer in layers if getattr(layer, f.name) is not None),
                None,
            )
        return ModelSettings(**values)

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset (oldest first)."""
        with self._lock:
            return list(self._log)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The requests that named ``model``."""
        return [r for r in self.requests if r.model == model]

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._log[-1] if self._log else None

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------ dispatch

    def _take_fault(self, model: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(model):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _dispatch(self, request: _Request) -> _Reply:
        path = request.path.rstrip("/")
        if path == "/health":
            return _json_reply(200, {"status": "ok"})
        if path.startswith("/_control/"):
            return self._control(request, path)
        try:
            body = json.loads(request.body) if request.body else {}
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        record = RecordedRequest(
            request.method,
            path,
            dict(request.headers),
            body if isinstance(body, dict) else {},
            model if isinstance(model, str) else None,
        )
        reply = self._route(request, path, body, record.model)
        record.status = reply.status
        reply.record = record
        with self._lock:
            self._log.append(record)
            self._answered += 1
            record.request_id = f"req_{self._answered:012d}"
        reply.headers = (*reply.headers, ("x-request-id", record.request_id))
        return reply

    def _route(self, request: _Request, path: str, body: Any, model: str | None) -> _Reply:
        routes = {
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/embeddings": ("POST", self._embeddings),
            "/v1/models": ("GET", None),
        }
        if path not in routes:
            return _error_reply(404, f"no route {request.method} {path}", code="not_found")
        method, handler = routes[path]
        if request.method != method:
            return _error_reply(405, f"{request.method} not allowed on {path}")
        if self.api_key is not None:
            given = request.headers.get("authorization", "")
            if given != f"Bearer {self.api_key}":
                return _error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
        if handler is None:
            return self._models()
        if not isinstance(body, dict):
            return _error_reply(400, "request body is not a JSON object")
        if not model:
            return _error_reply(400, "you must provide a model parameter", code="missing_model")
        fault = self._take_fault(model)
        reply = self._apply_fault_before(fault)
        if reply is not None:
            return reply
        reply = handler(body, model)
        return self._apply_fault_after(fault, reply)

    def _apply_fault_before(self, fault: Fault | None) -> _Reply | None:
        if fault is None or fault.kind != "status":
            return None
        err_type = "rate_limit_exceeded" if fault.status == 429 else "server_error"
        if fault.status < 500 and fault.status != 429:
            err_type = "invalid_request_error"
        reply = _error_reply(fault.status, fault.message, err_type, fault.code, fault.param)
        if fault.status == 429:
            reply.headers = (("retry-after", "0"),)
        return reply

    def _apply_fault_after(self, fault: Fault | None, reply: _Reply) -> _Reply:
        if fault is None:
            return reply
        if fault.kind == "timeout":
            reply.delay_s += fault.sleep_s
        elif fault.kind == "drop":
            reply.drop_after = fault.after_chunks if reply.chunks is not None else 0
        elif fault.kind == "malformed":
            if reply.chunks is not None:
                keep = max(fault.after_chunks, 1)
                reply.chunks = reply.chunks[:keep] + [b'data: {"id": "chatcmpl-broken", "choi\n\n']
            else:
                reply.body = reply.body[: max(len(reply.body) // 2, 1)]
        elif fault.kind in ("error_body", "null_choices"):
            error = {"message": fault.message, "code": fault.status}
            if reply.chunks is not None:
                event = (
                    {"error": error}
                    if fault.kind == "error_body"
                    else {"id": "chatcmpl-null", "object": "chat.completion.chunk", "choices": None}
                )
                data = f"data: {json.dumps(event)}\n\n".encode()
                events = reply.chunks[:-1]  # the answer's events, without its closing [DONE]
                kept = events[: fault.after_chunks]  # at most all of them: the fault still comes
                reply.chunks = kept + [data, b"data: [DONE]\n\n"]
            else:
                body = json.loads(reply.body)
                body = {"error": error} if fault.kind == "error_body" else {**body, "choices": None}
                reply.body = json.dumps(body).encode()
        return reply

    def _models(self) -> _Reply:
        with self._lock:
            names = list(self.models)
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "local"} for n in names]
        return _json_reply(200, {"object": "list", "data": data})

    def _embeddings(self, body: dict, model: str) -> _Reply:
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str | int) or (raw and isinstance(raw[0], int)) else raw
        if not isinstance(texts, list) or not texts:
            return _error_reply(400, "input must be a string or a non-empty list")
        settings = self.settings_for(model)
        dim = int(body.get("dimensions") or settings.embedding_dim or 64)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = _embedding(json.dumps(text) if not isinstance(text, str) else text, dim)
            if as_base64:
                encoded: Any = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_count_tokens(t) if isinstance(t, str) else len(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        reply = _json_reply(200, {"object": "list", "data": data, "model": model, "usage": usage})
        reply.delay_s = (settings.latency_ms or 0.0) / 1000
        return reply

    def _chat(self, body: dict, model: str) -> _Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error_reply(400, "messages must be a non-empty list")
        settings = _apply_script(self.settings_for(model), body)
        completion_id = f"chatcmpl-{next(self._ids):012x}"
        created = int(time.time())
        tool = _chosen_tool(body)
        content: str | None = None
        tool_calls: list[dict] | None = None
        finish = "stop"
        if tool is not None:
            name = tool.get("name", "tool")
            arguments = (settings.tool_arguments or {}).get(name)
            if arguments is None:
                arguments = _schema_instance(tool.get("parameters") or {})
            call_id = "call_" + _stable_hex(model, messages)
            function = {"name": name, "arguments": json.dumps(arguments)}
            tool_calls = [{"id": call_id, "type": "function", "function": function}]
            finish = "tool_calls"
            completion_text = function["arguments"]
        else:
            content = self._content(body, model, settings)
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            words = content.split(" ")
            if isinstance(limit, int) and 0 < limit < len(words):
                content = " ".join(words[:limit])
                finish = "length"
            completion_text = content
        prompt_tokens = _prompt_tokens(body)
        completion_tokens = max(_count_tokens(completion_text), 1)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            **(settings.usage_details or {}),
        }
        delay = (settings.latency_ms or 0.0) / 1000
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _stream_events(
                completion_id, created, model, content, tool_calls, finish, usage, include_usage
            )
            return _Reply(
                content_type="text/event-stream",
                chunks=chunks,
                delay_s=delay,
                chunk_delay_s=(settings.chunk_delay_ms or 0.0) / 1000,
            )
        message = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": usage,
            "system_fingerprint": "fp_local",
        }
        return _json_reply(200, payload, delay_s=delay)

    @staticmethod
    def _content(body: Mapping[str, Any], model: str, settings: ModelSettings) -> str:
        if settings.reply is not None:
            return settings.reply
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            return json.dumps(_schema_instance(schema))
        if response_format.get("type") == "json_object":
            return json.dumps({"model": model, "reply": _echo(body)})
        return f"[{model}] {_echo(body)}"

    # ------------------------------------------------------------------ control API

    def _control(self, request: _Request, path: str) -> _Reply:
        """Configure a backend that runs in another process (``python -m``)."""
        try:
            body = json.loads(request.body) if request.body else {}
            action = path.removeprefix("/_control/")
            if action == "configure":
                self.configure(body.pop("model", None), **body)
            elif action == "fail":
                self.fail(**body)
            elif action == "reset":
                self.reset()
            elif action == "requests":
                return _json_reply(200, [asdict(r) for r in self.requests])
            else:
                return _error_reply(404, f"unknown control action {action!r}")
        except (TypeError, ValueError) as exc:
            return _error_reply(400, str(exc))
        return _json_reply(200, {"ok": True})


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _stream_events(
    completion_id: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: list[dict] | None,
    finish: str,
    usage: dict,
    include_usage: bool,
) -> list[bytes]:
    """OpenAI streaming chunks: role, content or tool-call pieces, finish, usage, [DONE]."""

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        if include_usage:
            payload["usage"] = None
        return _sse(payload)

    events = [chunk({"role": "assistant", "content": "" if content is not None else None})]
    if tool_calls:
        for index, call in enumerate(tool_calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            events.append(chunk({"tool_calls": [head]}))
            for piece in _pieces(call["function"]["arguments"], 3):
                piece_delta = {"index": index, "function": {"arguments": piece}}
                events.append(chunk({"tool_calls": [piece_delta]}))
    elif content:
        for piece in _word_pieces(content):
            events.append(chunk({"content": piece}))
    events.append(chunk({}, finish))
    if include_usage:
        events.append(
            _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append(b"data: [DONE]\n\n")
    return events


def _word_pieces(text: str) -> Iterator[str]:
    """Split into words keeping the separators, so pieces join back to the exact text."""
    words = text.split(" ")
    for index, word in enumerate(words):
        yield word if index == len(words) - 1 else word + " "


def _pieces(text: str, count: int) -> Iterator[str]:
    size = max(1, -(-len(text) // count))
    for start in range(0, len(text), size):
        yield text[start : start + size]


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m routellm_lc.testing.backend``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api-key", default=None, help="require this bearer key (401 otherwise)")
    parser.add_argument("--latency-ms", type=float, default=None, help="delay every reply")
    parser.add_argument("--chunk-delay-ms", type=float, default=None, help="delay between chunks")
    parser.add_argument("--models", default="strong-model,weak-model", help="names for /v1/models")
    args = parser.parse_args(argv)
    backend = LocalBackend(
        port=args.port, host=args.host, api_key=args.api_key, models=args.models.split(",")
    )
    backend.configure(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(backend.serve_forever())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
