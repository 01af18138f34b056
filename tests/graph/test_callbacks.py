"""`RoutingCallbackHandler`: one record per routed call (run ids, step, node, decision, latency,
token usage), and the run's summary (strong share, calls and tokens per model)."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

from routellm_lc.graph import RoutingCallbackHandler, RoutingState, routed_model_node
from routellm_lc.models import LiteLLMChatModel


@tool
def search_papers(query: str) -> str:
    """Search research papers."""
    return f"For {query} we prove a hard bound."


def test_handler_records_each_agent_step(make_chat, fresh_backend):
    handler = RoutingCallbackHandler()
    agent = create_agent(make_chat(route_on="conversation"), [search_papers])
    agent.invoke({"messages": [("user", "sorting papers?")]}, {"callbacks": [handler]})
    calls = handler.calls
    assert [(c.node, c.route, c.model) for c in calls] == [
        ("model", "weak", "openai/weak"),
        ("model", "strong", "openai/strong"),
    ]
    assert calls[0].step < calls[1].step
    assert len({c.run_id for c in calls}) == 2
    assert all(c.parent_run_id and c.parent_run_id != c.run_id for c in calls)
    assert all(c.call_latency_ms is not None and c.call_latency_ms >= 0 for c in calls)
    assert [c.score for c in calls] == [pytest.approx(0.1), pytest.approx(0.9)]
    # token usage as the backend reported it for each model
    requests = [r for r in fresh_backend.requests if r.path.endswith("/chat/completions")]
    for call in calls:
        assert (
            call.usage["total_tokens"] == call.usage["input_tokens"] + call.usage["output_tokens"]
        )
        assert call.usage["input_tokens"] > 0
    assert len(requests) == 2


def test_summary_counts_calls_tokens_and_nodes(make_chat):
    handler = RoutingCallbackHandler()
    graph = StateGraph(RoutingState)
    graph.add_node("planner", routed_model_node(make_chat(), threshold=0.3))
    graph.add_node("writer", routed_model_node(make_chat(), threshold=0.7))
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "writer")
    graph.add_edge("writer", END)
    app = graph.compile()
    for _ in range(2):
        app.invoke({"messages": [HumanMessage("a medium one")]}, {"callbacks": [handler]})
    summary = handler.summary()
    assert summary.calls == 4
    assert summary.strong_calls == 2 and summary.strong_share == 0.5
    assert summary.calls_per_model == {"openai/strong": 2, "openai/weak": 2}
    per_model = {c.model: 0 for c in handler.calls}
    for call in handler.calls:
        per_model[call.model] += call.usage["total_tokens"]
    assert {m: t["total_tokens"] for m, t in summary.tokens_per_model.items()} == per_model
    assert {k: dict(v) for k, v in summary.calls_per_node.items()} == {
        "planner": {"strong": 2},
        "writer": {"weak": 2},
    }
    text = summary.format()
    assert "routed calls: 4  strong: 2 (50%)" in text
    assert "node planner: strong 2" in text
    assert summary.to_dict()["calls_per_node"]["writer"] == {"weak": 2}


def test_fallback_and_errors_are_recorded(make_chat, fresh_backend):
    handler = RoutingCallbackHandler()
    chat = make_chat()
    fresh_backend.fail(status=503, model="strong", times=1)
    chat.invoke("a hard one", {"callbacks": [handler]})
    fresh_backend.fail(status=503, times=None)  # every model, every time
    with pytest.raises(Exception):  # noqa: B017 - the provider error type is LiteLLM's
        chat.invoke("an easy one", {"callbacks": [handler]})
    first, second = handler.calls
    assert (first.model, first.route, first.fallback_from) == (
        "openai/weak",
        "weak",
        "openai/strong",
    )
    assert second.error is not None and second.usage == {}
    summary = handler.summary()
    assert (summary.calls, summary.fallbacks, summary.errors) == (1, 1, 1)


async def test_async_runs_and_other_models_are_told_apart(make_chat, fresh_backend):
    handler = RoutingCallbackHandler()
    plain = LiteLLMChatModel(
        model="openai/weak", api_base=fresh_backend.base_url, api_key="k", timeout=10, max_retries=0
    )
    await make_chat().ainvoke("a hard one", {"callbacks": [handler]})
    await plain.ainvoke("not routed", {"callbacks": [handler]})
    assert [c.route for c in handler.calls] == ["strong"]
    assert handler.calls[0].step is None and handler.calls[0].node is None
    handler.reset()
    assert handler.summary().calls == 0 and handler.summary().strong_share == 0.0


async def test_streamed_graph_calls_are_recorded_with_usage(make_chat):
    """Streaming inside the graph (messages mode) still yields one record with token usage."""
    handler = RoutingCallbackHandler()
    graph = StateGraph(RoutingState)
    graph.add_node("agent", routed_model_node(make_chat()))
    graph.add_edge(START, "agent")
    app = graph.compile()
    inputs = {"messages": [HumanMessage("a hard one")]}
    async for _ in app.astream(inputs, {"callbacks": [handler]}, stream_mode="messages"):
        pass
    (call,) = handler.calls
    assert (call.node, call.step, call.route) == ("agent", 1, "strong")
    assert call.usage["output_tokens"] > 0 and call.usage["input_tokens"] > 0


def test_prompt_cache_reads_reach_the_savings_report(make_chat, fresh_backend):
    """Input read from the provider's prompt cache is billed at its own (lower) rate: the
    handler keeps the count, so a run's savings price it as the provider does."""
    from routellm_lc.costs import call_cost, model_price

    fresh_backend.configure(usage_details={"prompt_tokens_details": {"cached_tokens": 4}})
    handler = RoutingCallbackHandler()
    make_chat().invoke("a hard one", {"callbacks": [handler]})
    (call,) = handler.calls
    assert call.usage["cache_read_input_tokens"] == 4 and call.usage["input_tokens"] > 4
    prices = {"openai/strong": model_price("openai/gpt-4o"), "openai/weak": None}
    report = handler.savings("openai/strong", {k: v for k, v in prices.items() if v})
    uncached = {k: v for k, v in call.usage.items() if not k.startswith("cache_")}
    assert report.cost == pytest.approx(call_cost("openai/gpt-4o", call.usage))
    assert report.cost < call_cost("openai/gpt-4o", uncached)  # the cached rate applied
    assert handler.summary().tokens_per_model["openai/strong"]["cache_read_input_tokens"] == 4


@pytest.mark.parametrize("layer", ["router", "models"])
def test_answers_from_an_llm_cache_are_counted_but_not_billed(make_chat, fresh_backend, layer):
    """LangChain marks a cache hit with `usage_metadata["total_cost"] = 0`: no provider billed
    it, so the savings report prices it at 0 on both sides and counts it apart."""
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import get_llm_cache, set_llm_cache

    from routellm_lc.costs import Price, call_cost

    before = get_llm_cache()
    chat = make_chat(cache=InMemoryCache()) if layer == "router" else make_chat()
    if layer == "models":
        set_llm_cache(InMemoryCache())
    handler = RoutingCallbackHandler()
    try:
        for _ in range(3):
            chat.invoke("a hard one", {"callbacks": [handler]})
    finally:
        set_llm_cache(before)
    assert len([r for r in fresh_backend.requests if r.path.endswith("/completions")]) == 1
    assert [c.cached for c in handler.calls] == [False, True, True]
    prices = {"openai/strong": Price(10e-6, 30e-6), "openai/weak": Price(1e-6, 2e-6)}
    report = handler.savings("openai/strong", prices)
    one_call = call_cost("openai/strong", handler.calls[0].usage, prices)
    assert (report.calls, report.cached_calls) == (3, 2)
    assert report.cost == pytest.approx(one_call) and report.all_strong_cost == pytest.approx(
        one_call
    )
    summary = handler.summary()
    assert summary.cached == 2 and "cached: 2" in summary.format()
    # the tokens the model processed: one call's, not three times the first call's usage
    assert summary.tokens_per_model["openai/strong"] == {
        k: handler.calls[0].usage[k] for k in ("input_tokens", "output_tokens", "total_tokens")
    }


def test_reset_and_take_keep_calls_that_are_still_running(make_chat, fresh_backend):
    """`summary()` then `reset()` every N seconds lost every call running at the reset (84 of
    300 calls were counted). A running call lands in the next interval; `take()` moves the
    finished ones out atomically."""
    import threading
    import time

    fresh_backend.configure("strong", latency_ms=300)
    chat = make_chat()
    handler = RoutingCallbackHandler()
    started = threading.Event()

    def slow_call():
        started.set()
        chat.invoke("a hard one", {"callbacks": [handler]})

    chat.invoke("an easy one", {"callbacks": [handler]})
    worker = threading.Thread(target=slow_call)
    worker.start()
    started.wait()
    time.sleep(0.1)  # the strong call is running now
    first = handler.take()
    assert [c.route for c in first.calls] == ["weak"] and handler.calls == []
    handler.reset()
    worker.join()
    assert [c.route for c in handler.calls] == ["strong"]
    assert first.summary().calls == 1 and handler.take().summary().calls == 1


def test_reasoning_tokens_reach_the_savings_report(make_chat, fresh_backend):
    """Reasoning output is billed at its own rate where the price map has one (Qwen's thinking
    mode costs 3.3× its answers): the handler keeps the count, so a run's savings use it."""
    from routellm_lc.costs import call_cost, model_price

    fresh_backend.configure(usage_details={"completion_tokens_details": {"reasoning_tokens": 2}})
    handler = RoutingCallbackHandler()
    make_chat().invoke("a hard one", {"callbacks": [handler]})
    (call,) = handler.calls
    assert call.usage["reasoning_output_tokens"] == 2 and call.usage["output_tokens"] > 2
    qwen = "dashscope/qwen-plus-2025-04-28"
    report = handler.savings("openai/strong", {"strong": model_price(qwen)})
    plain = {k: v for k, v in call.usage.items() if k != "reasoning_output_tokens"}
    assert report.cost == pytest.approx(call_cost(qwen, call.usage))
    assert report.cost > call_cost(qwen, plain)  # the reasoning rate applied
    assert handler.summary().tokens_per_model["openai/strong"]["reasoning_output_tokens"] == 2


def test_strong_share_under_a_router_over_a_pool_counts_the_top_model(make_chat, fresh_backend):
    """README's composition, top over a pool of [cheap, mid]: mid's own level says "strong",
    but the strong share (summary, per node, savings) is the top model's, the share a
    controller on the outer router holds."""
    from routellm_lc.costs import Price
    from routellm_lc.pool import routed_pool

    router = make_chat().router
    pool = routed_pool(
        ["openai/cheap", "openai/mid"],
        [0.3],
        router=router,
        api_base=fresh_backend.base_url,
        api_key="test-key",
    )
    graph = StateGraph(RoutingState)
    outer = make_chat(strong="openai/top", weak=pool, threshold=0.7)
    graph.add_node("agent", routed_model_node(outer))
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    app = graph.compile()
    handler = RoutingCallbackHandler()
    for prompt in ("a hard one", "a medium one", "an easy one"):  # scores 0.9, 0.5, 0.1
        app.invoke({"messages": [HumanMessage(prompt)]}, {"callbacks": [handler]})
    calls = handler.calls
    assert [(c.model, c.route, c.strongest) for c in calls] == [
        ("openai/top", "strong", True),
        ("openai/mid", "strong", False),  # the pool level's route
        ("openai/cheap", "weak", False),
    ]
    assert [[level["route"] for level in c.cascade] for c in calls] == [
        ["strong"],
        ["weak", "strong"],
        ["weak", "weak"],
    ]
    summary = handler.summary()
    assert (summary.calls, summary.strong_calls) == (3, 1)
    assert summary.strong_share == pytest.approx(1 / 3)
    assert {k: dict(v) for k, v in summary.calls_per_node.items()} == {
        "agent": {"strong": 1, "weak": 2}
    }
    assert "strong: 1 (33%)" in summary.format()
    prices = {name: Price(1e-6, 2e-6) for name in ("top", "mid", "cheap")}
    report = handler.savings("openai/top", prices)
    assert (report.strong_calls, report.unpriced_calls) == (1, 0)
    assert report.strong_share == pytest.approx(1 / 3)


async def test_a_call_its_caller_gave_up_on_is_recorded_as_abandoned(make_chat, fresh_backend):
    """A cancelled `ainvoke` (LangChain sends no end callback for it) and a stream closed
    early both end their run: counted as routed calls, marked abandoned, not as errors."""
    import asyncio

    handler = RoutingCallbackHandler()
    chat = make_chat()
    fresh_backend.configure(latency_ms=500)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(chat.ainvoke("a hard one", {"callbacks": [handler]}), 0.1)
    fresh_backend.configure(latency_ms=0)
    stream = chat.stream("an easy one", {"callbacks": [handler]})
    next(stream)
    stream.close()  # the caller stops reading
    assert handler._started == {}
    assert [(c.route, c.abandoned, c.error) for c in handler.calls] == [
        ("strong", True, None),
        ("weak", True, None),
    ]
    summary = handler.summary()
    assert (summary.calls, summary.errors, summary.abandoned) == (2, 0, 2)
    assert "abandoned: 2" in summary.format()
    assert handler.savings("openai/strong", {}).calls == 0  # no usage to price


class _Tracer:
    """A tracer that keeps every run it saw, sync (as LangSmith's) or async."""

    @staticmethod
    def sync():
        from langchain_core.tracers.base import BaseTracer

        class Sync(BaseTracer):
            def __init__(self):
                super().__init__()
                self.ended = []

            def _persist_run(self, run):
                pass

            def _end_trace(self, run):
                self.ended.append(run)
                super()._end_trace(run)

        return Sync()

    @staticmethod
    def asynchronous():
        from langchain_core.tracers.base import AsyncBaseTracer

        class Async(AsyncBaseTracer):
            def __init__(self):
                super().__init__()
                self.ended = []

            async def _persist_run(self, run):
                pass

            async def _end_trace(self, run):
                self.ended.append(run)
                await super()._end_trace(run)

        return Async()


@pytest.mark.parametrize("kind", ["sync", "asynchronous"])
async def test_a_cancelled_ainvoke_ends_the_chosen_models_run_too(make_chat, fresh_backend, kind):
    """The router's run ended on cancellation, but the chosen model's child run stayed open in
    the tracer for good (in LangSmith: pending forever; in memory: one `Run` per call). An
    async tracer never saw the child run at all."""
    import asyncio

    tracer = getattr(_Tracer, kind)()
    chat = make_chat()
    await chat.ainvoke("a hard one", {"callbacks": [tracer]})  # answered: two runs, both ended
    names = sorted(r.name for r in tracer.ended)
    assert len(names) == 2 and "RouteLLMChat" in names
    child = next(n for n in names if n != "RouteLLMChat")
    fresh_backend.configure(latency_ms=2000)
    for _ in range(3):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(chat.ainvoke("a hard one", {"callbacks": [tracer]}), 0.2)
    assert tracer.run_map == {}
    cancelled = [r for r in tracer.ended[2:]]
    assert sorted(r.name for r in cancelled) == sorted(["RouteLLMChat", child] * 3)
    assert all(r.end_time is not None and "CancelledError" in (r.error or "") for r in cancelled)


async def test_a_call_that_fails_before_any_model_is_traced_and_counted(make_chat):
    """An empty prompt, or a router (its remote embedder) down, raised before the run
    started: no tracer and no `RoutingCallbackHandler` saw the call, so an outage of the
    router was invisible in LangSmith and in the summary."""
    from langchain_core.tracers.context import collect_runs

    from routellm_lc.errors import EmptyPromptError
    from routellm_lc.routers.base import Router

    class Down(Router):
        name = "down"

        def strong_win_rate(self, prompts):
            raise RuntimeError("embedding service down")

    handler = RoutingCallbackHandler()
    chat = make_chat()
    with collect_runs() as runs:
        with pytest.raises(EmptyPromptError) as empty:
            chat.invoke("   ", {"callbacks": [handler]})
        down = chat.model_copy(update={"router": Down()})
        with pytest.raises(RuntimeError, match="embedding service down"):
            await down.ainvoke("a hard one", {"callbacks": [handler], "run_name": "agent-llm"})
        items = chat.batch(["a hard one", ""], {"callbacks": [handler]}, return_exceptions=True)
    assert isinstance(items[1], EmptyPromptError)
    assert handler.routing_errors == [
        f"EmptyPromptError: {empty.value}",
        "RuntimeError: embedding service down",
        f"EmptyPromptError: {items[1]}",
    ]
    summary = handler.summary()
    assert (summary.calls, summary.routing_errors, summary.errors) == (1, 3, 0)
    assert "routing errors: 3" in summary.format()
    failed = [r for r in runs.traced_runs if "routellm:routing_error" in (r.tags or [])]
    assert len(failed) == 3 and all(r.error and r.end_time for r in failed)
    assert [r.name for r in failed] == ["RouteLLMChat", "agent-llm", "RouteLLMChat"]
    assert failed[1].extra["metadata"]["ls_provider"] == "routellm"


async def test_generate_calls_are_recorded_like_invoke_calls(make_chat, fresh_backend):
    """`generate()` (LangChain's classic path, e.g. `LLMChain`) decides inside the run: its
    calls moved a controller but never reached the handler (costs undercounted)."""
    chat = make_chat()
    handler = RoutingCallbackHandler()
    chat.generate(
        [[HumanMessage("a hard one")], [HumanMessage("an easy one")]], callbacks=[handler]
    )
    await chat.agenerate([[HumanMessage("a hard one")]], callbacks=[handler])
    assert [(c.route, c.model) for c in handler.calls] == [
        ("strong", "openai/strong"),
        ("weak", "openai/weak"),
        ("strong", "openai/strong"),
    ]
    assert all(c.usage["total_tokens"] > 0 and c.call_latency_ms is not None for c in handler.calls)
    assert handler.summary().calls == 3 and not handler._started and not handler._undecided
