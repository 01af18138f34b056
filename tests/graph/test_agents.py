"""RouteLLMChat as the model of LangGraph's prebuilt ReAct agent and of LangChain's
`create_agent`, with tools: each step routed on its own, decisions recorded in the state."""

from __future__ import annotations

import warnings

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from routellm_lc.graph import RoutingAgentState, RoutingMiddleware, record_routing


@tool
def search_papers(query: str) -> str:
    """Search research papers."""
    return f"Top result for {query}: we prove a hard bound on the error."


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}."


TOOLS = [search_papers, get_weather]
QUESTION = {"messages": [("user", "what do papers say about sorting")]}


def _react_agent(chat):
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # deprecated in favour of create_agent, still supported
        warnings.simplefilter("ignore")
        return create_react_agent(
            chat, TOOLS, state_schema=RoutingAgentState, post_model_hook=record_routing
        )


def _check_two_steps_routed_differently(out, fresh_backend, model_node):
    messages = out["messages"]
    calls = [m for m in messages if isinstance(m, AIMessage)]
    assert calls[0].tool_calls and calls[0].tool_calls[0]["name"] == "search_papers"
    assert isinstance(messages[2], ToolMessage) and "prove" in messages[2].content
    # step 1 sees only the easy question (weak); step 2 also sees the tool's hard result
    assert calls[-1].content.startswith("[strong] tool result: Top result")
    records = out["routing_decisions"]
    assert [(r["node"], r["route"]) for r in records] == [
        (model_node, "weak"),
        (model_node, "strong"),
    ]
    assert records[0]["step"] < records[1]["step"]
    assert [r.model for r in fresh_backend.requests if r.path.endswith("/chat/completions")] == [
        "weak",
        "strong",
    ]


def test_prebuilt_react_agent_routes_each_step(make_chat, fresh_backend):
    agent = _react_agent(make_chat(route_on="conversation"))
    out = agent.invoke(QUESTION)
    _check_two_steps_routed_differently(out, fresh_backend, "agent")


async def test_prebuilt_react_agent_async(make_chat, fresh_backend):
    agent = _react_agent(make_chat(route_on="conversation"))
    out = await agent.ainvoke(QUESTION)
    _check_two_steps_routed_differently(out, fresh_backend, "agent")


def test_create_agent_with_routing_middleware(make_chat, fresh_backend):
    agent = create_agent(
        make_chat(route_on="conversation"), TOOLS, middleware=[RoutingMiddleware()]
    )
    out = agent.invoke(QUESTION)
    _check_two_steps_routed_differently(out, fresh_backend, "model")


def test_last_user_routing_scores_every_step_on_the_question(make_chat, fresh_backend):
    """RouteLLM's rule (last user message): both steps see the same text, so route alike."""
    agent = create_agent(make_chat(), TOOLS, middleware=[RoutingMiddleware()])
    out = agent.invoke(QUESTION)
    assert [r["route"] for r in out["routing_decisions"]] == ["weak", "weak"]


@pytest.mark.parametrize(
    "threshold, routes", [(0.05, ["strong", "strong"]), (0.95, ["weak", "weak"])]
)
def test_agent_threshold_from_the_runs_configurable(make_chat, threshold, routes):
    agent = create_agent(
        make_chat(route_on="conversation"), TOOLS, middleware=[RoutingMiddleware()]
    )
    out = agent.invoke(QUESTION, {"configurable": {"routellm_threshold": threshold}})
    assert [r["route"] for r in out["routing_decisions"]] == routes
    assert {r["threshold"] for r in out["routing_decisions"]} == {threshold}


def test_prebuilt_react_agent_with_a_response_format(make_chat, fresh_backend):
    """`create_react_agent(response_format=...)` needs a `structured_response` key in its
    state schema; RoutingAgentState has it (it used to raise at construction)."""
    from langgraph.prebuilt import create_react_agent
    from pydantic import BaseModel

    class Topic(BaseModel):
        topic: str

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = create_react_agent(
            make_chat(route_on="conversation"),
            TOOLS,
            state_schema=RoutingAgentState,
            post_model_hook=record_routing,
            response_format=Topic,
        )
    out = agent.invoke(QUESTION)
    assert isinstance(out["structured_response"], Topic)
    assert [r["node"] for r in out["routing_decisions"]] == ["agent", "agent"]


def test_repeated_completion_ids_never_replace_earlier_answers(
    make_chat, fresh_backend, monkeypatch
):
    """The LiteLLM adapter gave each answer the completion's id as its message id. An endpoint
    that repeats completion ids (Ollama's are `chatcmpl-<0..998>`) then made LangGraph replace
    an earlier answer with a later one: the tool-calling message vanished, its ToolMessage was
    left orphaned, and a checkpointed thread lost its first reply."""
    import itertools

    from langgraph.checkpoint.memory import InMemorySaver

    monkeypatch.setattr(fresh_backend, "_ids", itertools.repeat(7))  # every id the same
    agent = create_agent(
        make_chat(route_on="conversation"),
        TOOLS,
        middleware=[RoutingMiddleware()],
        checkpointer=InMemorySaver(),
    )
    thread = {"configurable": {"thread_id": "t1"}}
    out = agent.invoke(QUESTION, thread)
    _check_two_steps_routed_differently(out, fresh_backend, "model")
    assert [type(m).__name__ for m in out["messages"]] == [
        "HumanMessage", "AIMessage", "ToolMessage", "AIMessage"
    ]  # fmt: skip
    out = agent.invoke({"messages": [("user", "and the weather in Paris?")]}, thread)
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds[:5] == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage", "HumanMessage"]
    answers = [m for m in out["messages"] if isinstance(m, AIMessage)]
    assert len({m.id for m in answers}) == len(answers)
    assert answers[0].response_metadata["id"] == answers[-1].response_metadata["id"]  # kept


def test_the_router_has_a_model_profile_from_both_sides(fresh_backend):
    """Without a profile, `create_agent(router, response_format=Schema)` fell back to
    ToolStrategy where the same agent on gpt-4o uses the provider's structured output, and
    `SummarizationMiddleware(trigger=("fraction", ...))` refused the router."""
    from langchain.agents.middleware import SummarizationMiddleware
    from pydantic import BaseModel

    from routellm_lc import RouteLLMChat
    from routellm_lc.models import LiteLLMChatModel

    class Answer(BaseModel):
        text: str

    common = {"api_base": fresh_backend.base_url, "api_key": "k", "timeout": 10, "max_retries": 0}
    router = RouteLLMChat(
        strong="openai/gpt-4o", weak="openai/gpt-4o-mini", router="random", **common
    )
    strong = LiteLLMChatModel(model="openai/gpt-4o", **common).profile
    assert strong["max_input_tokens"] == 128000 and strong["structured_output"] is True
    assert router.profile["max_input_tokens"] == 128000
    assert router.profile["structured_output"] is router.profile["tool_calling"] is True
    # a side the price map does not know (self-hosted): no profile to promise
    local = router.model_copy(update={"weak": "openai/my-local-llama"})
    assert local.profile is None
    assert RouteLLMChat(weak="openai/my-local-llama", router="random").profile is None
    assert RouteLLMChat(router="random", profile={"max_input_tokens": 9}).model_copy(
        update={"weak": "openai/x"}
    ).profile == {"max_input_tokens": 9}  # given, kept
    # a router LangChain rebuilds from its fields derives its own sides' profile
    from langchain_core.runnables import ConfigurableField

    configurable = router.configurable_fields(weak=ConfigurableField(id="weak"))
    rebuilt, _ = configurable._prepare({"configurable": {"weak": "openai/my-local-llama"}})
    assert rebuilt.profile is None
    rebuilt, _ = configurable._prepare({"configurable": {"weak": "openai/gpt-4o-mini"}})
    assert rebuilt.profile == router.profile

    agent = create_agent(router, TOOLS, response_format=Answer)
    agent.invoke({"messages": [("user", "hello")]})
    body = fresh_backend.requests[-1].body
    assert body["response_format"]["type"] == "json_schema"  # the provider's strategy
    SummarizationMiddleware(model=router, trigger=("fraction", 0.8))
