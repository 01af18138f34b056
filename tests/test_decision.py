"""The routing step: what is routed on, threshold validation, and the strong-iff-≥ rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)

from routellm_lc.decision import (
    CONVERSATION_CHARS,
    TOOL_ARGUMENT_CHARS,
    RoutingDecision,
    decide,
    routing_text,
    validate_threshold,
)
from routellm_lc.errors import EmptyPromptError, InvalidThresholdError, RouteLLMError
from routellm_lc.routers.base import Router, RouterOutputError, load_router


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
    assert text == (  # newest first
        "user: and tomorrow?\ntool: 18C and sunny\nassistant: calling a tool\n"
        "user: weather in Paris?"
    )


def test_conversation_names_the_tools_an_assistant_turn_called():
    """A turn with tool calls and no text used to vanish from the routing text."""
    lc = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "primes"}, "id": "1"}])
    openai_style = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "2", "type": "function",
             "function": {"name": "fetch", "arguments": '{"url": "' + "u" * 500 + '"}'}},
        ],
    }  # fmt: skip
    text = routing_text([HumanMessage("find primes"), lc, openai_style], "conversation")
    first, second, third = text.split("\n")
    assert first.startswith('assistant: [calls fetch({"url": "uuu') and first.endswith(")]")
    assert len(first) == len("assistant: [calls fetch()]") + TOOL_ARGUMENT_CHARS
    assert second == 'assistant: [calls search({"q": "primes"})]'
    assert third == "user: find primes"


def test_tool_calls_read_the_same_from_openai_dicts_and_langchain_messages():
    """The server routes OpenAI dicts and RouteLLMChat LangChain messages: the same call must
    give the same text (compact JSON arguments used to stay compact on one side only)."""
    from langchain_core.messages import convert_to_messages

    history = [
        {"role": "user", "content": "primes?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function",
         "function": {"name": "search", "arguments": '{"q":"primes below 100","limit":5}'}}]},
        {"role": "tool", "tool_call_id": "1", "content": "2, 3, 5"},
    ]  # fmt: skip
    as_dicts = routing_text(history, "conversation")
    assert as_dicts == routing_text(convert_to_messages(history), "conversation")
    assert '[calls search({"q": "primes below 100", "limit": 5})]' in as_dicts


@pytest.mark.parametrize("user_role", ["user", "human"])
def test_a_chat_message_is_routed_by_its_own_role(user_role):
    """`ChatMessage(role="user")` is a user turn (LangChain sends it with role `user`), so
    last_user scores it, not the assistant's reply after it."""
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role=user_role, content="Prove the Riemann hypothesis"),
        ChatMessage(role="assistant", content="Sure, here is an outline"),
    ]
    assert routing_text(messages) == "Prove the Riemann hypothesis"
    assert routing_text(messages, "conversation") == (
        "assistant: Sure, here is an outline\nuser: Prove the Riemann hypothesis"
    )
    ai = [
        HumanMessage("q"),
        ChatMessage(role="ai", content="a"),
        ChatMessage(role="tool", content="t"),
    ]
    assert routing_text(ai, "conversation") == "tool: t\nassistant: a\nuser: q"


def test_message_chunks_are_routed_as_their_messages():
    """A streamed history (`HumanMessageChunk`, `AIMessageChunk`, ...) has the roles of the
    messages it stands for, not its class names."""
    messages = [
        SystemMessageChunk(content="system prompt"),
        HumanMessageChunk(content="hard question"),
        AIMessageChunk(content="streamed answer"),
        ToolMessageChunk(content="tool result", tool_call_id="1"),
    ]
    assert routing_text(messages) == "hard question"
    assert routing_text(messages, "conversation") == (
        "tool: tool result\nassistant: streamed answer\nuser: hard question"
    )


def test_conversation_keeps_most_recent_characters():
    messages = [HumanMessage("x" * 5000), HumanMessage("the latest question")]
    text = routing_text(messages, "conversation")
    assert len(text) == CONVERSATION_CHARS
    assert text.startswith("user: the latest question\nuser: xxx")


def test_the_embedder_reads_the_latest_turn_of_a_long_conversation():
    """The embedder reads a text's first 256 tokens: with the turns oldest first, a 1.7k
    character tool result pushed the latest question out of what it read, so a proof request
    and a goodbye embedded identically (cosine 1.000)."""
    from routellm_lc.embeddings import get_embedder

    result = " ".join(
        f"Row {i}: station {i % 17} reported {i * 7 % 31} mm of rain." for i in range(40)
    )
    history = [HumanMessage("Get me the rain data."), ToolMessage(result, tool_call_id="1")]
    proof = history + [HumanMessage("Now prove rigorously that the series of 1/p diverges.")]
    bye = history + [HumanMessage("thanks, bye")]
    texts = [routing_text(proof, "conversation"), routing_text(bye, "conversation")]
    assert len(result) > 1500
    a, b = get_embedder("local").embed(texts)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cosine < 0.95


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


def test_negative_zero_threshold_is_plain_zero():
    """-0.0 used to be kept, so a model id built from it read `router-random--0`."""
    value = validate_threshold(-0.0)
    assert math.copysign(1.0, value) == 1.0 and f"{value:g}" == "0"


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


@pytest.mark.parametrize("bad", [1.7, -0.3, float("nan"), float("inf"), 1 + 1e-5])
def test_decide_refuses_scores_that_are_not_win_rates(bad):
    """A NaN used to route every call weak, even at threshold 0; 1.7 was recorded as a score."""
    router = FixedRouter([0.5, bad])
    with pytest.raises(RouterOutputError, match=r"Router 'fixed'.*not win rates in \[0, 1\]"):
        decide(router, ["a", "b"], 0.0, strong_model="S", weak_model="W")
    with pytest.raises(RouteLLMError, match="Router 'mine'"):  # the name given wins
        decide(router, ["a", "b"], 0.0, strong_model="S", weak_model="W", router_name="mine")


def test_decide_clips_float_rounding_past_the_ends():
    router = FixedRouter([1 + 1e-9, -1e-9])
    decisions = decide(router, ["a", "b"], 1.0, strong_model="S", weak_model="W")
    assert [(d.score, d.route) for d in decisions] == [(1.0, "strong"), (0.0, "weak")]


@pytest.mark.parametrize("scores", [[], [0.5, 0.5, 0.5]])
def test_decide_refuses_a_score_count_that_is_not_one_per_prompt(scores):
    class Miscounting:
        name = "miscount"

        def strong_win_rate(self, prompts):
            return np.asarray(scores)

    with pytest.raises(RouterOutputError, match=rf"returned {len(scores)} score\(s\) for 2"):
        decide(Miscounting(), ["a", "b"], 0.5, strong_model="S", weak_model="W")


def test_decide_refuses_scores_that_are_not_numbers():
    class Wordy:
        name = "wordy"

        def strong_win_rate(self, prompts):
            return ["high" for _ in prompts]

    with pytest.raises(RouterOutputError, match="Router 'wordy'.*not an array of numbers"):
        decide(Wordy(), ["a"], 0.5, strong_model="S", weak_model="W")


def test_router_route_refuses_bad_scores_too():
    class Broken(Router):
        name = "broken"

        def strong_win_rate(self, prompts):
            return np.full(len(prompts), np.nan)

    with pytest.raises(RouterOutputError, match="Router 'broken'"):
        Broken().route(["a"], 0.0)


def test_chat_model_surfaces_a_broken_router_before_calling_a_model():
    from routellm_lc.chat_model import RouteLLMChat

    class Broken(Router):
        name = "broken"

        def strong_win_rate(self, prompts):
            return np.full(len(prompts), 1.7)

    llm = RouteLLMChat(
        router=Broken(), strong="openai/s", weak="openai/w", api_base="http://127.0.0.1:9/v1"
    )
    with pytest.raises(RouterOutputError, match="Router 'broken'.*1.7"):
        llm.invoke("hello")


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


def test_a_lone_surrogate_is_scored_as_a_replacement_character():
    text = b"caf\xe9 menu?".decode("utf-8", "surrogateescape")  # what stdin or argv can give
    assert routing_text([HumanMessage(text)]) == "caf? menu?"
    router = load_router("mf")
    (score,) = router.strong_win_rate([routing_text([HumanMessage(text)])])
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize(
    "arguments",
    ['{"a": "x\ny"}', "", None, '{"a": ', '{"b":1}'],  # a raw newline; empty; invalid JSON
)
def test_tool_calls_read_as_langchain_openai_reads_them(arguments):
    """An agent's history reaches RouteLLMChat as langchain-openai builds it and the server as
    OpenAI dicts: a raw control character, empty or unparseable arguments used to give two
    texts (two scores) for one conversation."""
    from langchain_openai.chat_models.base import _convert_dict_to_message

    turn = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "1", "type": "function",
                            "function": {"name": "f", "arguments": arguments}}]}  # fmt: skip
    history = [{"role": "user", "content": "q"}, turn]
    messages = [HumanMessage("q"), _convert_dict_to_message(turn)]
    assert routing_text(history, "conversation") == routing_text(messages, "conversation")
    assert routing_text(history, "conversation").startswith("assistant: [calls f(")


def test_tool_calls_that_cannot_be_printed_do_not_fail_routing():
    """Arguments nested 1,000 deep made the server answer 500 (RecursionError); Python-built
    args that json cannot write (a 5,000-digit int, a cycle) raised from routing_text."""
    deep = "[" * 1000 + "]" * 1000
    turn = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "1", "type": "function",
                            "function": {"name": "f", "arguments": deep}}]}  # fmt: skip
    assert routing_text([turn], "conversation").startswith("assistant: [calls f([[[")
    cycle: dict = {}
    cycle["self"] = cycle
    for args in ({"a": 10**5000}, cycle):
        message = AIMessage("", tool_calls=[{"name": "g", "args": args, "id": "1"}])
        assert routing_text([message], "conversation") == "assistant: [calls g(…)]"


def test_custom_tool_calls_are_named_too():
    turn = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "1", "type": "custom", "custom": {"name": "g", "input": "x"}}]}  # fmt: skip
    text = routing_text([{"role": "user", "content": "hello"}, turn], "conversation")
    assert text == "assistant: [calls g(x)]\nuser: hello"
