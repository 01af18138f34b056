"""One routing step that every shell (chat model, graph node, server) calls.

`decide` turns a batch of routing texts into `RoutingDecision`s with one router call;
`routing_text` picks what to route on from a conversation (LangChain messages or OpenAI dicts).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from routellm_lc.errors import EmptyPromptError, InvalidThresholdError
from routellm_lc.routers.base import as_probabilities, router_label

Route = Literal["strong", "weak"]
RouteOn = Literal["last_user", "conversation"]

#: How many characters of a conversation are routed on (the most recent ones): keeps routing
#: cost flat however long an agent's history grows. The turns go newest first, because an
#: embedder reads the *start* of a text (the bundled one: 256 tokens, about 800–1,200
#: characters): the latest turn is always read, earlier ones as far as the window reaches.
CONVERSATION_CHARS = 2000
#: Characters of one tool call's arguments kept in a conversation's routing text.
TOOL_ARGUMENT_CHARS = 200


@dataclass(frozen=True)
class RoutingDecision:
    """What the router decided for one call.

    `score` is the strong model's predicted win rate; `route` is "strong" iff
    score ≥ threshold. `model` names the model that was chosen (after a fallback: the one that
    answered, with `fallback_from` naming the one that failed).
    """

    router: str
    score: float
    threshold: float
    model: str
    route: Route
    latency_ms: float
    batch_size: int = 1
    fallback_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)  # `asdict` costs ~10x more: every response carries this
        if self.extra:
            data["extra"] = copy.deepcopy(self.extra)
        else:
            data.pop("extra")
        if data["fallback_from"] is None:
            data.pop("fallback_from")
        return data

    def with_fallback(self, model: str) -> RoutingDecision:
        """The decision after the chosen model failed and `model` answered instead."""
        other: Route = "weak" if self.route == "strong" else "strong"
        return replace(self, model=model, route=other, fallback_from=self.model)


def validate_threshold(threshold: Any) -> float:
    """Return `threshold` as a float in [0, 1], or raise `InvalidThresholdError`."""
    if isinstance(threshold, bool) or threshold is None:
        raise InvalidThresholdError(f"threshold must be a number in [0, 1], got {threshold!r}.")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InvalidThresholdError(
            f"threshold must be a number in [0, 1], got {threshold!r}."
        ) from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidThresholdError(f"threshold must be in [0, 1], got {value!r}.")
    return value + 0.0  # -0.0 → 0.0, else a model id reads router-random--0


def decide(
    router: Any,
    texts: Sequence[str],
    threshold: float,
    *,
    strong_model: str,
    weak_model: str,
    router_name: str | None = None,
) -> list[RoutingDecision]:
    """Score all `texts` in one router call and decide each (strong iff score ≥ threshold).

    Scores that are not one win rate in [0, 1] per text raise `RouterOutputError` naming the
    router (a NaN would route every call weak, whatever the threshold).
    """
    threshold = validate_threshold(threshold)
    if not texts:
        return []
    start = time.perf_counter()
    raw = router.strong_win_rate(list(texts))
    latency_ms = (time.perf_counter() - start) * 1000.0
    name = router_name or router_label(router)
    decisions = []
    for score in as_probabilities(raw, len(texts), name).tolist():
        strong = score >= threshold
        decisions.append(
            RoutingDecision(
                router=name,
                score=score,
                threshold=threshold,
                model=strong_model if strong else weak_model,
                route="strong" if strong else "weak",
                latency_ms=latency_ms,
                batch_size=len(texts),
            )
        )
    return decisions


#: A LangChain message's `type`, or a role as LangChain accepts it (`("human", "hi")`,
#: `ChatMessage(role="ai")`), as the OpenAI role the model receives it with (see
#: `langchain_core.messages.convert_to_openai_messages`). Anything else is kept as it is.
_ROLES = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "developer": "system",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
    "FunctionMessageChunk": "function",
}
#: Types of the LangChain messages that carry their own `role` (`ChatMessage`, its chunk).
_ROLE_CARRYING_TYPES = ("chat", "ChatMessageChunk")


def _role_and_text(message: Any) -> tuple[str, str]:
    """(role, text) of a LangChain message or an OpenAI-style dict; the role as OpenAI's:
    user, assistant, system, tool (a `ChatMessage` by its own `role`, a chunk as its
    message)."""
    if isinstance(message, Mapping):
        role = str(message.get("role", ""))
        content = message.get("content")
    else:
        role = str(getattr(message, "type", ""))
        if role in _ROLE_CARRYING_TYPES:
            role = str(getattr(message, "role", ""))
        content = getattr(message, "content", "")
    return _ROLES.get(role, role), _content_text(content)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:  # OpenAI / LangChain content blocks: keep the text ones
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def _tool_calls_text(message: Any) -> str:
    """The tools an assistant turn called, as `[calls name(arguments)]`, each call's arguments
    cut to `TOOL_ARGUMENT_CHARS`: calls with arguments that parse, then those that do not, then
    custom tools' calls. OpenAI's dicts are read as langchain-openai reads them into a message
    (`arguments` parsed leniently, empty as `{}`, unparseable ones as `invalid_tool_calls` with
    their raw text), so the server and `RouteLLMChat` see the same text for the same call."""
    valid: list[tuple[Any, Any]] = []
    invalid: list[tuple[Any, Any]] = []
    custom: list[tuple[Any, Any]] = []
    if isinstance(message, Mapping):
        for call in message.get("tool_calls") or ():
            if not isinstance(call, Mapping):
                continue
            if isinstance(fn := call.get("function"), Mapping):
                raw = fn.get("arguments")
                try:
                    parsed = json.loads(raw or "{}", strict=False) if isinstance(raw, str) else raw
                except (ValueError, RecursionError):
                    invalid.append((fn.get("name"), raw))
                    continue
                valid.append((fn.get("name"), {} if parsed is None else parsed))
            elif isinstance(tool := call.get("custom"), Mapping):
                custom.append((tool.get("name"), tool.get("input")))
    else:
        for found, field_name in ((valid, "tool_calls"), (invalid, "invalid_tool_calls")):
            for call in getattr(message, field_name, None) or ():
                if isinstance(call, Mapping):
                    found.append((call.get("name"), call.get("args")))
    shown = []
    for name, arguments in valid + invalid + custom:
        if not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments, ensure_ascii=False, default=str)
            except (ValueError, TypeError, RecursionError):  # circular, or an int too long
                arguments = "…"
        shown.append(f"{name}({arguments[:TOOL_ARGUMENT_CHARS]})")
    return f"[calls {'; '.join(shown)}]" if shown else ""


def routing_text(messages: Sequence[Any], route_on: RouteOn = "last_user") -> str:
    """The text the router scores for a conversation (text parts only; a lone surrogate, as
    a surrogateescape-decoded byte gives, becomes "?": tokenizers refuse the whole text).

    `last_user` (RouteLLM scores the last message whatever its role: the same text whenever a
    conversation ends with a user turn): the last user message with text (a latest turn with
    an image alone is scored by the user turn before it). `conversation`: the recent turns
    (user, assistant with the tools it called, tool; not system prompts), *most recent first*,
    cut to `CONVERSATION_CHARS` characters, so a follow-up like "and now in Rust?" is scored
    with its context and an embedder that reads a text's start reads the latest turn.
    """
    return _encodable(_routing_text(messages, route_on))


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _routing_text(messages: Sequence[Any], route_on: RouteOn) -> str:
    if not messages:
        raise EmptyPromptError("Cannot route an empty message list: give at least one message.")
    turns = [_role_and_text(m) for m in messages]
    if route_on == "last_user":
        for role, text in reversed(turns):
            if role == "user" and text.strip():
                return text
        # No user turn (e.g. a system-only prompt): fall back to the last non-empty text.
        for _, text in reversed(turns):
            if text.strip():
                return text
        raise EmptyPromptError("Cannot route: no message has any text content.")
    if route_on == "conversation":
        lines = []
        for message, (role, text) in zip(messages, turns, strict=True):
            if role == "system":
                continue
            calls = _tool_calls_text(message) if role == "assistant" else ""
            body = " ".join(part for part in (text.strip() and text, calls) if part)
            if body:
                lines.append(f"{role}: {body}")
        if not lines:
            lines = [text for _, text in turns if text.strip()]
        if not lines:
            raise EmptyPromptError("Cannot route: no message has any text content.")
        return "\n".join(reversed(lines))[:CONVERSATION_CHARS]
    raise ValueError(f"route_on must be 'last_user' or 'conversation', got {route_on!r}.")
