"""The `routing_decisions` reducer and the records built from routed replies."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from routellm_lc.graph.state import (
    add_decisions,
    decisions_from_messages,
    record_from_message,
    record_from_routing,
)

ROUTING = {
    "router": "keyword",
    "score": 0.9,
    "threshold": 0.5,
    "model": "openai/strong",
    "route": "strong",
    "latency_ms": 0.2,
    "batch_size": 1,
}


def test_reducer_appends_single_records_and_lists_in_order():
    first = {"step": 1, "node": "a"}
    second = {"step": 2, "node": "b"}
    third = {"step": 3, "node": "c"}
    assert add_decisions(None, first) == [first]
    assert add_decisions([first], [second, third]) == [first, second, third]
    assert add_decisions([first], None) == [first]
    assert add_decisions([first], []) == [first]


def test_record_prefers_the_decisions_own_step_and_node():
    routing = {**ROUTING, "extra": {"step": 4, "node": "agent"}}
    record = record_from_routing(routing, step=9, node="hook")
    assert (record["step"], record["node"]) == (4, "agent")
    assert record["model"] == "openai/strong" and record["threshold"] == 0.5
    assert "fallback_from" not in record


def test_record_falls_back_to_given_position_and_keeps_fallback():
    record = record_from_routing({**ROUTING, "fallback_from": "openai/weak"}, step=2, node="n")
    assert (record["step"], record["node"]) == (2, "n")
    assert record["fallback_from"] == "openai/weak"


def test_records_only_from_routed_replies():
    routed = AIMessage("hi", response_metadata={"routing": ROUTING})
    plain = AIMessage("no router here")
    assert record_from_message(plain) is None
    assert record_from_message(HumanMessage("q")) is None
    assert decisions_from_messages([HumanMessage("q"), routed, plain]) == [
        record_from_routing(ROUTING)
    ]
