"""The routing step: what is routed on, threshold validation, and the strong-iff-≥ rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from routellm_lc.decision import (
    CONVERSATION_CHARS,
    RoutingDecision,
    decide,
    routing_text,
    validate_threshold,
)
from routellm_lc.errors import EmptyPromptError, InvalidThresholdError


class FixedRouter:
    """Returns the scores it was built with; counts calls."""

    name = "fixed"

    def __init__(self, scores: Sequence[float]) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        self.calls = 0

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return self.scores[: len(prompts)]


# -- routing_text ------------------------------------------------------------------------------
def test_last_user_langchain_messages():
    messages = [
        SystemMessage("be brief"),
        HumanMessage("first"),
        AIMessage("ok"),
        HumanMessage("second"),
    ]
    assert routing_text(messages) == "second"


def test_last_user_openai_dicts():
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    assert routing_text(messages) == "second"


def test_content_blocks_keep_text_only():
    blocks = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,xx"}},
        {"type": "text", "text": "this picture"},
    ]
    assert routing_text([HumanMessage(content=blocks)]) == "describe\nthis picture"
    assert routing_text([{"role": "user", "content": blocks}]) == "describe\nthis picture"


def test_blank_user_turn_is_skipped():
    assert routing_text([HumanMessage("real"), HumanMessage("   ")]) == "real"


def test_no_user_turn_falls_back_to_last_text():
    assert routing_text([SystemMessage("only a system prompt")]) == "only a system prompt"


def test_conversation_includes_roles_and_tool_results_but_not_system():
    messages = [
        SystemMessage("secret system prompt"),
        HumanMessage("weather in Paris?"),
        AIMessage("calling a tool"),
        ToolMessage("18C and sunny", tool_call_id="1"),
        HumanMessage("and tomorrow?"),
    ]
    text = routing_text(messages, "conversation")
    assert text == (
        "user: weather in Paris?\nassistant: calling a tool\ntool: 18C and sunny\n"
        "user: and tomorrow?"
    )


def test_conversation_keeps_most_recent_characters():
    messages = [HumanMessage("x" * 5000), HumanMessage("the latest question")]
    text = routing_text(messages, "conversation")
    assert len(text) == CONVERSATION_CHARS
    assert text.endswith("user: the latest question")


@pytest.mark.parametrize("messages", [[], [HumanMessage("")], [{"role": "user", "content": " "}]])
def test_nothing_to_route_on(messages):
    with pytest.raises(EmptyPromptError):
        routing_text(messages)


def test_unknown_route_on():
    with pytest.raises(ValueError, match="route_on"):
        routing_text([HumanMessage("hi")], "everything")  # type: ignore[arg-type]


# -- validate_threshold ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected", [(0, 0.0), (1, 1.0), ("0.25", 0.25), (np.float32(0.5), 0.5)]
)
def test_valid_thresholds(value, expected):
    assert validate_threshold(value) == expected


@pytest.mark.parametrize(
    "value", [1.0000001, -1e-9, float("nan"), float("inf"), "abc", None, True, [0.5]]
)
def test_invalid_thresholds(value):
    with pytest.raises(InvalidThresholdError, match="threshold"):
        validate_threshold(value)


# -- decide ------------------------------------------------------------------------------------
def test_strong_iff_score_at_least_threshold():
    router = FixedRouter([0.3, 0.29999, 0.7])
    decisions = decide(router, ["a", "b", "c"], 0.3, strong_model="S", weak_model="W")
    assert [d.route for d in decisions] == ["strong", "weak", "strong"]  # equality → strong
    assert [d.model for d in decisions] == ["S", "W", "S"]
    assert router.calls == 1
    assert all(d.batch_size == 3 and d.router == "fixed" for d in decisions)
    assert all(d.latency_ms >= 0 for d in decisions)


def test_threshold_extremes():
    router = FixedRouter([0.0, 1.0])
    assert [d.route for d in decide(router, ["a", "b"], 0.0, strong_model="S", weak_model="W")] == [
        "strong",
        "strong",
    ]
    assert [d.route for d in decide(router, ["a", "b"], 1.0, strong_model="S", weak_model="W")] == [
        "weak",
        "strong",
    ]


def test_decide_empty_batch_does_not_call_router():
    router = FixedRouter([])
    assert decide(router, [], 0.5, strong_model="S", weak_model="W") == []
    assert router.calls == 0


def test_decide_rejects_bad_threshold():
    with pytest.raises(InvalidThresholdError):
        decide(FixedRouter([0.5]), ["a"], 2.0, strong_model="S", weak_model="W")


def test_fallback_records_the_failed_model():
    decision = RoutingDecision("mf", 0.8, 0.5, "S", "strong", 1.0)
    after = decision.with_fallback("W")
    assert (after.model, after.route, after.fallback_from, after.score) == ("W", "weak", "S", 0.8)
    assert after.to_dict()["fallback_from"] == "S"
    assert "fallback_from" not in decision.to_dict()
    assert set(decision.to_dict()) == {
        "router",
        "score",
        "threshold",
        "model",
        "route",
        "latency_ms",
        "batch_size",
    }
