"""Exceptions raised for bad input: each names the problem in words a user can act on."""

from __future__ import annotations

from collections.abc import Iterator


def error_chain(error: BaseException | None, limit: int = 10) -> Iterator[BaseException]:
    """`error` and the errors it was raised from or while handling (`__cause__`, else
    `__context__`), at most `limit` of them: libraries wrap a provider's error (LiteLLM's
    `ContextWindowExceededError`, huggingface_hub's around httpx's timeout)."""
    while error is not None and limit > 0:
        yield error
        error, limit = error.__cause__ or error.__context__, limit - 1


#: Upstream HTTP statuses that mean the request itself is wrong (bad parameters, a body too
#: large, a context too long): the other model would reject it too, so neither the server nor
#: `RouteLLMChat` retries it there.
REQUEST_ERROR_STATUSES = frozenset({400, 413, 422})


class RouteLLMError(Exception):
    """Base class for every error this package raises on purpose."""


class InvalidThresholdError(RouteLLMError, ValueError):
    """The cost threshold is not a number in [0, 1]."""


class RoutingError(RouteLLMError, ValueError):
    """A call cannot be routed as asked: no router or threshold given, a router that is not
    loaded, a bad threshold (RouteLLM's `RoutingError`, raised by `Controller`)."""


class RouterModelNameError(RoutingError):
    """A model name is not `router-<router>-<threshold>` with a known router and a threshold
    in [0, 1]. `code`: `invalid_model`, `model_not_found` or `invalid_threshold`."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class UnknownRouterError(RouteLLMError, ValueError):
    """No router is registered under the requested name."""


class CheckpointError(RouteLLMError, FileNotFoundError):
    """A router checkpoint is missing, incomplete or malformed."""


class EmptyPromptError(RoutingError):
    """There is nothing to route on (empty message list or no text)."""


class DeviceError(RouteLLMError, ValueError):
    """The torch device asked for is unknown or not present on this machine."""


class RouterOutputError(RouteLLMError, RuntimeError):
    """A router's `strong_win_rate` broke its contract (not one score in [0, 1] per prompt):
    a bug in the router or its checkpoint, not in the request."""


class EmbeddingError(RouteLLMError, RuntimeError):
    """A remote embedder (a LiteLLM embedding model, as RouteLLM's own `mf` checkpoints use)
    failed: no key, no network, or the provider refused."""
