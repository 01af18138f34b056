"""Model names as LiteLLM spells them, from LangChain's `init_chat_model` spelling too.

Kept apart from `models` (which imports LangChain) so that `costs` and the server's
accounting can normalise names without importing anything heavy. RouteLLM's
`router-<router>-<threshold>` names are parsed here too, for the server and `Controller`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from routellm_lc.errors import InvalidThresholdError, RouterModelNameError

#: LangChain's `init_chat_model("provider:model")` provider names → LiteLLM's prefixes, so
#: `strong="openai:gpt-4o"` means what a LangChain user means by it (`openai/gpt-4o`).
LANGCHAIN_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure_openai": "azure",
    "azure_ai": "azure_ai",
    "google_genai": "gemini",
    "google_vertexai": "vertex_ai",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "cohere": "cohere",
    "fireworks": "fireworks_ai",
    "together": "together_ai",
    "mistralai": "mistral",
    "huggingface": "huggingface",
    "groq": "groq",
    "ollama": "ollama",
    "deepseek": "deepseek",
    "xai": "xai",
    "perplexity": "perplexity",
}


def litellm_model_string(model: str) -> str:
    """`model` as LiteLLM spells it: LangChain's `provider:model` (`openai:gpt-4o`,
    `ollama:llama3:8b`) becomes `provider/model` for the providers both know; anything else
    (`openai/gpt-4o`, a Bedrock id ending in `:0`) is returned as it is."""
    provider, sep, name = model.partition(":")
    if sep and name and provider in LANGCHAIN_PROVIDERS:
        return f"{LANGCHAIN_PROVIDERS[provider]}/{name}"
    return model


#: RouteLLM's model names for routed calls: `router-<router>-<threshold>`.
ROUTER_MODEL_PREFIX = "router-"
#: A decimal number: digits with an optional fraction, or a bare fraction, and an exponent.
#: One way to read any digit run (`\d+\.?\d*` could split a run between its two `\d`s, which
#: made a long run of digits a quadratic regex search: one request could stall the server).
_DECIMAL = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([eE][-+]?\d+)?")
#: Longer model names are refused before any regex runs (ids are a few dozen characters).
MAX_MODEL_NAME_CHARS = 256
_NAMED_THRESHOLD = re.compile(r"(.+?)-(?:" + _DECIMAL.pattern + r")?")


def parse_router_model(
    name: Any,
    routers: Sequence[str],
    default_threshold: float | None,
    listing: str = "served routers",
) -> tuple[str, float | None]:
    """`router-<router>-<threshold>` (or `router-<router>`: `default_threshold`) → (router,
    threshold), for the server and `Controller` alike.

    Router names may hold hyphens (a plugin's `keyword-router`), and so may thresholds
    (`1e-05`): the longest of `routers` that the name starts with is the router. Raises
    `RouterModelNameError` whose `code` says what is wrong: `invalid_model` (not a model name:
    not a string, or too long), `model_not_found` (a name that is no router model, or a router
    not among `routers`: OpenAI's 404 for a model it does not have) or `invalid_threshold`.
    `listing` names `routers` in the first message.
    """
    if isinstance(name, str) and len(name) > MAX_MODEL_NAME_CHARS:
        raise RouterModelNameError(
            f"Model name of {len(name)} characters: a router model name is "
            f"'router-<router>-<threshold>', at most {MAX_MODEL_NAME_CHARS} characters.",
            code="invalid_model",
        )
    if not isinstance(name, str) or not name.startswith(ROUTER_MODEL_PREFIX):
        example = routers[0] if routers else "mf"
        raise RouterModelNameError(
            f"Model {name!r} is not a router model name. Use 'router-<router>-<threshold>', "
            f"e.g. 'router-{example}-0.5' ({listing}: {', '.join(routers)}).",
            # a model name this server does not have is OpenAI's 404; anything else is 400
            code="model_not_found" if isinstance(name, str) and name.strip() else "invalid_model",
        )
    from routellm_lc.decision import validate_threshold  # numpy: not for `costs`' imports

    rest = name[len(ROUTER_MODEL_PREFIX) :]
    matches = [r for r in routers if rest == r or rest.startswith(r + "-")]
    if not matches:
        asked = _NAMED_THRESHOLD.fullmatch(rest)
        router = asked.group(1) if asked else rest
        raise RouterModelNameError(
            f"Router {router!r} is not served here. Served routers: {', '.join(routers)} "
            f"(model names 'router-<router>-<threshold>').",
            code="model_not_found",
        )
    router = max(matches, key=len)
    if rest == router:
        return router, default_threshold
    threshold_text = rest[len(router) + 1 :]
    try:
        if not _DECIMAL.fullmatch(threshold_text):  # `float` would take "0.1_1" and " 0.2"
            raise InvalidThresholdError(
                f"threshold must be a decimal number in [0, 1], got {threshold_text!r}."
            )
        return router, validate_threshold(float(threshold_text))
    except InvalidThresholdError as exc:
        raise RouterModelNameError(
            f"Bad threshold in model {name!r}: {exc} Use 'router-{router}-<threshold>', "
            f"e.g. 'router-{router}-0.5'.",
            code="invalid_threshold",
        ) from None
