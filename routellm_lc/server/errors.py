"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}`, never a traceback.

The official SDKs turn these bodies into their typed exceptions (`openai.BadRequestError`,
`AuthenticationError`, ...), so plain OpenAI clients see the usual error types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    504: "server_error",
}


class APIError(Exception):
    """An error answered to the client with an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def sse_error_event(message: str, code: str, type: str = "server_error") -> bytes:
    """The last event of a stream that broke after bytes reached the client: the `openai` SDK
    raises `APIError` on it, other clients see a JSON error instead of a silent truncation."""
    return b"data: " + orjson.dumps(error_body(message, type, None, code)) + b"\n\n"
