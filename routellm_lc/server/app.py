"""The OpenAI-compatible FastAPI app: a thin shell over the routing core.

`POST /v1/chat/completions` with model `router-<router>-<threshold>`: validate the request
against `ChatCompletionRequest`, route on `routing_text(messages)` with `decide` (as
`RouteLLMChat` does), forward the request with only `model` replaced, answer with the chosen
model's response and the decision in `x-routellm-*` headers. The chosen model failing before
any byte reached the client → the other model answers (`x-routellm-fallback-from`); both
failing → 502 (504 on timeouts). A stream that breaks after it started ends with an SSE error
event.

`router-<router>` (no threshold) routes at the router's strong-share controller's threshold
when the server has a target share (`strong_share`); each answered request's `usage` is counted
in `/metrics` with its cost (`accounting.py`).

The hot path skips FastAPI's body handling (`orjson` parsing, the pydantic model validating
the parsed dict, raw bytes out); the models still define the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from routellm_lc.decision import RoutingDecision, routing_text
from routellm_lc.errors import EmbeddingError, EmptyPromptError
from routellm_lc.models import _litellm
from routellm_lc.server.accounting import Accounting
from routellm_lc.server.config import ServerConfig
from routellm_lc.server.errors import APIError, sse_error_event
from routellm_lc.server.forwarding import (
    DirectForwarder,
    LiteLLMForwarder,
    Reply,
    Stream,
    Target,
    UpstreamFailure,
    build_target,
)
from routellm_lc.server.metrics import Metrics
from routellm_lc.server.routing import RoutingService
from routellm_lc.server.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorResponse,
    HealthResponse,
    ModelCard,
    ModelList,
)

CHAT_PATH = "/v1/chat/completions"
log = logging.getLogger("routellm_lc.server")
_validate_request = ChatCompletionRequest.__pydantic_validator__.validate_python
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Malformed JSON, a request that does not match the schema, bad model name or "
        "threshold",
        401: "Missing or wrong bearer key (when the server has keys)",
        404: "The model names a router this server does not serve",
        413: "Request body over the size limit",
        429: "Both models rate-limited (Retry-After: the longer of their waits)",
        502: "Both models failed (or the chosen one, without fallback)",
        504: "The model timed out",
    }.items()
}


_bearer = HTTPBearer(auto_error=False, description="A server key (when the server has keys).")


async def require_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the bearer key is one of the server's keys (no keys: open)."""
    request.app.state.routellm.check_key(credentials)


class ServerState:
    """Everything built once per server: routers, upstream clients, metrics, cached bodies."""

    def __init__(self, config: ServerConfig, routing: RoutingService | None = None) -> None:
        self.config = config
        self.routing = routing or RoutingService.from_config(config)
        self.keys = tuple(k.encode() for k in config.server_keys)
        self.key_digests = tuple(hashlib.sha256(k).digest() for k in self.keys)
        self.targets: dict[str, Target] = {
            "strong": build_target(
                config.strong,
                config.strong_api_base or config.api_base,
                config.strong_api_key or config.api_key,
                config.forwarding,
            ),
            "weak": build_target(
                config.weak,
                config.weak_api_base or config.api_base,
                config.weak_api_key or config.api_key,
                config.forwarding,
            ),
        }
        self.metrics = Metrics()
        # prices resolved now (the price map read here), not on the first request
        self.accounting = Accounting(
            config.strong, [config.strong, config.weak], config.price_overrides(), self.metrics
        )
        self.direct: DirectForwarder | None = None
        self.litellm: LiteLLMForwarder | None = None
        self.models_body = b""
        self.health_body = b""
        self.created = 0
        self._saver: asyncio.Task | None = None  # saves the controllers' state as it changes

    def check_litellm_options(self) -> None:
        """Fail (ServerConfigError) on a passthrough field that is one of LiteLLM's own options,
        when a model goes through LiteLLM (imported here: ~3 s). `serve` calls this before it
        announces its URL, so the mistake is an error message, not a failed lifespan."""
        if any(target.url is None for target in self.targets.values()):
            _litellm()
            config = self.config
            LiteLLMForwarder(
                config.timeout, config.max_retries, config.passthrough_fields
            ).check_passthrough()

    async def start(self) -> None:
        if not self.routing.slots:
            self.routing.load()
        config = self.config
        self.direct = DirectForwarder(
            config.timeout, config.connect_timeout, config.max_connections
        )
        self.litellm = LiteLLMForwarder(
            config.timeout, config.max_retries, config.passthrough_fields
        )
        if any(target.url is None for target in self.targets.values()):
            # LiteLLM's import takes ~3 s: before the port opens, not in the first request
            await asyncio.to_thread(_litellm)
            self.litellm.check_passthrough()
        self.created = created = int(time.time())
        cards = [ModelCard(id=i, created=created) for i in self.routing.model_ids()]
        self.models_body = ModelList(data=cards).model_dump_json().encode()
        health = HealthResponse(routers=self.routing.names, strong=config.strong, weak=config.weak)
        self.health_body = health.model_dump_json().encode()
        if self.routing.controller_state is not None:
            self._saver = asyncio.get_running_loop().create_task(self.routing.save_periodically())

    async def stop(self) -> None:
        if self._saver is not None:  # the last save is the one below
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
            self._saver = None
        if self.direct is not None:
            await self.direct.aclose()
        try:
            saved = self.routing.save_controller_state()
        except Exception:  # shutting down: say so loudly, but finish shutting down
            log.exception("could not save the controller state to %s", self.config.controller_state)
        else:
            if saved is not None:
                log.info("controller state saved to %s", saved)
        self.routing.close()

    def forwarder(self, target: Target) -> DirectForwarder | LiteLLMForwarder:
        forwarder = self.direct if target.url is not None else self.litellm
        assert forwarder is not None, "the server has not started"
        return forwarder

    def check_key(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if not self.keys:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        # compare_digest against every key, on digests of one length: timing reveals neither
        # which key nearly matched nor how long the keys are
        digest = hashlib.sha256(given).digest()
        matched = False
        for key in self.key_digests:
            matched |= hmac.compare_digest(digest, key)
        if not matched:
            raise APIError(
                401,
                "Missing or incorrect API key: send 'Authorization: Bearer <server key>'.",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )


def create_app(config: ServerConfig, *, routing: RoutingService | None = None) -> FastAPI:
    """The app for `config`. Routers load in the lifespan unless `routing` is already loaded
    (`serve` loads them first, so a bad router name fails before the port opens)."""
    state = ServerState(config, routing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.stop()

    app = FastAPI(
        title="routellm-lc",
        summary="OpenAI-compatible chat completions, routed between a strong and a weak model.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.routellm = state
    _install_error_handlers(app, state)

    @app.post(
        CHAT_PATH,
        summary="Chat completion, routed (model: router-<router>-<threshold>)",
        response_model=ChatCompletionResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE if stream"},
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                    }
                },
            }
        },
        dependencies=[Depends(require_key)],
    )
    async def chat_completions(request: Request) -> Response:
        body = await _parse_body(request, config.max_body_bytes)
        slot, threshold = state.routing.resolve(body["model"])
        _check_fields(state, body)
        try:
            text = routing_text(body["messages"], config.route_on)
        except EmptyPromptError as exc:
            raise APIError(400, str(exc), param="messages", code="empty_prompt") from None
        started = time.perf_counter()
        try:
            decision = await slot.decide(text, threshold)
        except EmbeddingError as exc:  # a remote embedder (RouteLLM's mf: OpenAI's API) failed
            log.warning("routing failed: %s", exc)
            raise APIError(502, f"Routing failed: {exc}", code="router_unavailable") from None
        state.metrics.routing.observe(slot.name, time.perf_counter() - started)
        return await _answer(state, body, decision, _Client(request))

    @app.get(
        "/v1/models",
        summary="The served routers, as model ids",
        response_model=ModelList,
        responses={401: _ERRORS[401]},
        dependencies=[Depends(require_key)],
    )
    async def list_models() -> Response:
        return Response(state.models_body, media_type="application/json")

    @app.get(
        "/v1/models/{model_id}",
        summary="One router model id (any valid router-<router>-<threshold>)",
        response_model=ModelCard,
        responses={401: _ERRORS[401], 404: {"model": ErrorResponse, "description": "Unknown"}},
        dependencies=[Depends(require_key)],
    )
    async def retrieve_model(model_id: str) -> Response:
        try:
            state.routing.resolve(model_id)
        except APIError as exc:  # OpenAI answers an unknown model with 404 model_not_found
            raise APIError(404, exc.message, param="model", code="model_not_found") from None
        card = ModelCard(id=model_id, created=state.created)
        return Response(card.model_dump_json(), media_type="application/json")

    @app.get("/health", summary="Liveness and what is served", response_model=HealthResponse)
    async def health() -> Response:
        return Response(state.health_body, media_type="application/json")

    # HEAD too (load balancers' probes), outside the schema: one operation per path and method
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        text = state.metrics.render(state.routing.thresholds(), state.routing.controller_shares())
        return Response(text, media_type="text/plain; version=0.0.4")

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# --------------------------------------------------------------------------- request handling


async def _parse_body(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a dict that matches `ChatCompletionRequest` (else 413/400)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise APIError(
            400, f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    try:
        _validate_request(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return body


def _too_large(limit: int) -> APIError:
    return APIError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )


def _invalid(exc: ValidationError) -> APIError:
    errors = exc.errors(include_url=False)
    param = _param(errors[0]["loc"])
    where = f"'{param}'" if param else "request body"
    # a field of several accepted types fails once per type: one problem, all its messages
    messages = [e["msg"] for e in errors if _param(e["loc"]) == param]
    messages = list(dict.fromkeys(messages[:1] + [m[:1].lower() + m[1:] for m in messages[1:]]))
    problems = len({_param(e["loc"]) for e in errors})
    more = f" (and {problems - 1} more problem(s))" if problems > 1 else ""
    return APIError(
        400,
        f"Invalid {where}: {' or '.join(messages)}{more}.",
        param=param,
        code="invalid_request",
    )


#: What pydantic adds to an error's location besides field names and list indexes: the
#: member of a union that was tried (`str`, `list[str]`, `literal['none','auto']`,
#: `function-after[...]`) and `[key]` for a dictionary's key.
_UNION_MEMBER = re.compile(r"[a-z_-]+\[.*\]|\[key\]|str|int|float|bool|bytes|none|[A-Z]\w*")


def _param(loc: Sequence[Any]) -> str | None:
    """A validation error's location as OpenAI names a parameter: `messages[0].content`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _UNION_MEMBER.fullmatch(str(part)):
            path += f".{part}" if path else str(part)
    return path or None


def _check_fields(state: ServerState, body: Mapping[str, Any]) -> None:
    """400 for a field that either model's provider cannot be sent through LiteLLM, before
    routing: whether a request is valid must not depend on which model its score picks."""
    litellm = state.litellm
    for target in state.targets.values():
        if target.url is None and litellm is not None:
            refused = litellm.unsupported(target, body)
            if refused is not None:
                field, message = refused
                raise APIError(400, message, param=field, code="unsupported_parameter")


def _decision_headers(decision: RoutingDecision) -> dict[str, str]:
    headers = {
        "x-routellm-router": decision.router,
        "x-routellm-score": repr(decision.score),
        "x-routellm-threshold": repr(decision.threshold),
        "x-routellm-route": decision.route,
        "x-routellm-model": decision.model,
    }
    if decision.fallback_from is not None:
        headers["x-routellm-fallback-from"] = decision.fallback_from
    return headers


class _Client:
    """The HTTP client of one request, watched for going away while its upstream call runs."""

    def __init__(self, request: Request) -> None:
        self.request = request

    async def gone(self) -> None:
        """Return once the client has disconnected (the request body has been read, so the
        only message left to receive is `http.disconnect`)."""
        while (await self.request.receive())["type"] != "http.disconnect":
            pass

    async def is_gone(self) -> bool:
        return await self.request.is_disconnected()


async def _unless_gone(call: Awaitable[Reply | Stream], client: _Client | None) -> Any:
    """`call`'s result, or `_GONE` if the client disconnected first. The call is then
    cancelled, which closes its upstream connection: an OpenAI-compatible server (vLLM, a
    provider) stops generating for a client that has gone, and nobody waits on the answer."""
    if client is None:
        return await call
    task = asyncio.ensure_future(call)
    watcher = asyncio.ensure_future(client.gone())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # this request itself is being cancelled (shutdown): not the call's end
    except Exception:  # noqa: BLE001, S110 - the cancelled call's outcome is nobody's concern
        pass
    return _GONE


_GONE = object()


async def _answer(
    state: ServerState,
    body: Mapping[str, Any],
    decision: RoutingDecision,
    client: _Client | None = None,
) -> Response:
    """Forward to the chosen model; on failure before any byte was sent, to the other one.
    A client that disconnects meanwhile gets nothing more: the upstream call in flight is
    cancelled (499), and a failed call gets no fallback, a second paid call nobody reads."""
    attempts = [decision]
    if state.config.fallback:
        other = state.targets["weak" if decision.route == "strong" else "strong"]
        attempts.append(decision.with_fallback(other.name))
    stream = body.get("stream") is True
    metrics = state.metrics
    failures: list[UpstreamFailure] = []
    for attempt in attempts:
        target = state.targets[attempt.route]
        forwarder = state.forwarder(target)
        started = time.perf_counter()
        try:
            call = (
                forwarder.open_stream(target, body) if stream else forwarder.complete(target, body)
            )
            result = await _unless_gone(call, client)
        except UpstreamFailure as exc:
            metrics.error(f"upstream_{exc.kind}")
            failures.append(exc)
            if len(failures) < len(attempts):  # a wrong key or model name shows up here too
                if client is not None and await client.is_gone():
                    log.info("%s; the client has gone, so no fallback", exc.message)
                    metrics.request(decision.router, decision.route, 499, _policy(decision))
                    return Response(status_code=499)
                log.warning("%s; the other model answers instead", exc.message)
            continue
        if result is _GONE:
            log.info("the client has gone; its call to %s is cancelled", target.name)
            metrics.request(attempt.router, attempt.route, 499, _policy(attempt))
            return Response(status_code=499)
        metrics.upstream.observe(attempt.route, time.perf_counter() - started)
        if attempt.fallback_from is not None:
            metrics.fallback(attempt.router, decision.route)
        headers = {**dict(result.headers), **_decision_headers(attempt)}
        if isinstance(result, Reply):
            metrics.request(attempt.router, attempt.route, result.status, _policy(attempt))
            if result.usage is not None:
                state.accounting.record(attempt.router, attempt.model, result.usage)
            return Response(result.body, result.status, headers, media_type="application/json")
        metrics.request(attempt.router, attempt.route, 200, _policy(attempt))
        headers["cache-control"] = "no-cache"

        def account(usage: Any, attempt: RoutingDecision = attempt) -> None:
            state.accounting.record(attempt.router, attempt.model, usage)

        return StreamingResponse(
            _relay(result, metrics, account), headers=headers, media_type="text/event-stream"
        )
    return _failed(decision, failures, metrics)


def _policy(decision: RoutingDecision) -> str:
    """The `policy` label: "controller" for a decision the strong-share controller's
    threshold made (a `router-<r>` id), else "fixed"."""
    return "controller" if decision.extra.get("controller") else "fixed"


def _failed(
    decision: RoutingDecision, failures: list[UpstreamFailure], metrics: Metrics
) -> Response:
    """504 when every attempt timed out, 429 (with the upstream's `Retry-After`) when every
    attempt was rate-limited, else 502; the message names each model's failure."""
    status = 502
    for same in (504, 429):
        if all(f.status == same for f in failures):
            status = same
    metrics.request(decision.router, decision.route, status, _policy(decision))
    if len(failures) == 1:
        message = failures[0].message
    else:
        message = "Both models failed. " + " ".join(f.message + "." for f in failures)
    log.warning("answered %d: %s", status, message)  # the last failure is logged too
    code = {504: "upstream_timeout", 429: "rate_limit_exceeded"}.get(status, "upstream_error")
    headers = _decision_headers(decision)
    waits = [f.retry_after for f in failures if f.retry_after is not None]
    if status == 429 and waits:
        headers["retry-after"] = max(waits, key=_seconds)
    return APIError(status, message, code=code, headers=headers).response()


def _seconds(retry_after: str) -> float:
    """`Retry-After` in seconds (an HTTP date, which OpenAI does not send, counts as 0)."""
    try:
        return float(retry_after)
    except ValueError:
        return 0.0


async def _relay(
    stream: Stream, metrics: Metrics, account: Callable[[Any], None]
) -> AsyncIterator[bytes]:
    """The upstream's events as they come; a failure mid-stream → one error event, then end.
    The stream's usage, if an event carried one, is counted however it ended."""
    try:
        yield stream.first
        while True:
            try:
                batch = await stream.next()
            except UpstreamFailure as failure:
                metrics.error(f"stream_{failure.kind}")
                yield sse_error_event(failure.message, failure.code)
                return
            if batch is None:
                return
            yield batch
    finally:
        usage = stream.usage()
        if usage is not None:
            account(usage)
        try:
            await stream.close()
        except Exception:  # closing a broken upstream connection may fail; nothing to do
            pass


# --------------------------------------------------------------------------- errors, OpenAPI


def _install_error_handlers(app: FastAPI, state: ServerState) -> None:
    metrics = state.metrics

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        metrics.error(exc.code or str(exc.status))
        if request.url.path == CHAT_PATH:
            metrics.request("none", "none", exc.status, "none")
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"No route {request.method} {request.url.path}."
        return APIError(exc.status_code, message, code=code, headers=exc.headers).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        metrics.error("invalid_request")
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(first.get("loc", ()))
        param = _param(loc[1:] if loc[:1] in (("body",), ("path",), ("query",)) else loc)
        message = f"Invalid request: {first.get('msg')}."
        return APIError(400, message, param=param, code="invalid_request").response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        metrics.error("internal")
        message = f"Internal error ({type(exc).__name__}); see the server log."
        return APIError(500, message, code="internal_error").response()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus `ChatCompletionRequest`, which the handler validates itself."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    request_schema = ChatCompletionRequest.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components.update(request_schema.pop("$defs", {}))
    components["ChatCompletionRequest"] = request_schema
    app.openapi_schema = schema
    return schema


def _version() -> str:
    from routellm_lc import __version__

    return __version__
