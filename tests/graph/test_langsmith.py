"""LangSmith tracing with the real `langsmith` client, sent to a local capture server: the
decision is on the router's run (metadata and tags) and the chosen model is its child run,
named for the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tracer(langsmith_capture, monkeypatch):
    monkeypatch.setenv("LANGSMITH_DISABLE_RUN_COMPRESSION", "true")
    client = Client(api_url=langsmith_capture.url, api_key="test-key")
    tracer = LangChainTracer(client=client, project_name="routellm-tests")
    yield tracer
    client.cleanup()


def _flush(tracer: LangChainTracer) -> None:
    tracer.wait_for_futures()
    tracer.client.flush()


def _check_router_run(captured, router_run, route: str, model: str, router="keyword") -> dict:
    routing = router_run["extra"]["metadata"]["routing"]
    assert (routing["route"], routing["model"], routing["router"]) == (route, model, router)
    assert routing["threshold"] == 0.5 and 0 <= routing["score"] <= 1
    assert f"routellm:{route}" in router_run["tags"]
    assert f"routellm:model={model}" in router_run["tags"]
    (child,) = captured.children(router_run["id"])
    assert child["name"] == model
    assert child["run_type"] == "llm"
    assert child["trace_id"] == router_run["trace_id"]
    assert child["dotted_order"].startswith(router_run["dotted_order"] + ".")
    assert child["extra"]["metadata"]["routing"]["model"] == model
    return child


@pytest.mark.parametrize("call", ["invoke", "stream", "batch", "ainvoke"])
async def test_trace_has_decision_and_model_child(make_chat, langsmith_capture, tracer, call):
    chat, config = make_chat(), {"callbacks": [tracer]}
    if call == "invoke":
        chat.invoke("a hard question", config)
    elif call == "stream":
        list(chat.stream("a hard question", config))
    elif call == "batch":
        chat.batch(["a hard question"], config)
    else:
        await chat.ainvoke("a hard question", config)
    _flush(tracer)
    (router_run,) = langsmith_capture.named("RouteLLMChat")
    assert router_run.get("parent_run_id") is None
    _check_router_run(langsmith_capture, router_run, "strong", "openai/strong")
    assert any(
        p.endswith(("/runs/multipart", "/runs/batch", "/runs")) for p in langsmith_capture.paths
    )


async def test_astream_trace_nests_the_streamed_model(make_chat, langsmith_capture, tracer):
    [c async for c in make_chat().astream("an easy one", {"callbacks": [tracer]})]
    _flush(tracer)
    (router_run,) = langsmith_capture.named("RouteLLMChat")
    child = _check_router_run(langsmith_capture, router_run, "weak", "openai/weak")
    assert "[weak] echo: an easy one" in str(child["outputs"])


def test_fallback_trace_shows_both_attempts(make_chat, fresh_backend, langsmith_capture, tracer):
    fresh_backend.fail(status=503, model="strong", times=1)
    make_chat().invoke("a hard one", {"callbacks": [tracer]})
    _flush(tracer)
    (router_run,) = langsmith_capture.named("RouteLLMChat")
    children = sorted(langsmith_capture.children(router_run["id"]), key=lambda r: r["dotted_order"])
    assert [c["name"] for c in children] == ["openai/strong", "openai/weak"]
    assert children[0].get("error") and not children[1].get("error")
    fallback = children[1]["extra"]["metadata"]["routing"]
    assert fallback["fallback_from"] == "openai/strong"


@tool
def search_papers(query: str) -> str:
    """Search research papers."""
    return f"For {query} we prove a hard bound."


def test_agent_trace_has_one_model_child_per_routed_step(make_chat, langsmith_capture, tracer):
    agent = create_agent(make_chat(route_on="conversation"), [search_papers])
    agent.invoke({"messages": [("user", "sorting papers?")]}, {"callbacks": [tracer]})
    _flush(tracer)
    router_runs = sorted(langsmith_capture.named("RouteLLMChat"), key=lambda r: r["dotted_order"])
    assert len(router_runs) == 2
    for run, (route, model) in zip(
        router_runs, [("weak", "openai/weak"), ("strong", "openai/strong")], strict=True
    ):
        _check_router_run(langsmith_capture, run, route, model)
        assert run["extra"]["metadata"]["langgraph_node"] == "model"
        assert run["extra"]["metadata"]["routing"]["extra"]["node"] == "model"
    (root,) = [r for r in langsmith_capture.runs.values() if not r.get("parent_run_id")]
    assert {r["trace_id"] for r in langsmith_capture.runs.values()} == {root["id"]}


def _readme_tracing_commands() -> tuple[dict[str, str], list[str]]:
    """The env vars and the command of the README's LangSmith block."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## LangSmith tracing\n") :]
    block = section[
        section.index("```bash\n") + 8 : section.index("\n```", section.index("```bash"))
    ]
    env, command = {}, []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("=", 1)
            env[name] = value
        elif line.startswith("python "):
            command = line.split()
    return env, command


def test_readme_tracing_command_sends_the_decision_trace(langsmith_capture):
    """The README's commands, run as they are, with the endpoint pointed at the capture server."""
    readme_env, command = _readme_tracing_commands()
    assert readme_env["LANGSMITH_TRACING"] == "true" and "LANGSMITH_API_KEY" in readme_env
    assert command[:2] == ["python", "examples/chain.py"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env = {k: v for k, v in env.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env.update(readme_env)
    env.update(
        LANGSMITH_API_KEY="test-key",
        LANGSMITH_ENDPOINT=langsmith_capture.url,
        LANGSMITH_DISABLE_RUN_COMPRESSION="true",
        HF_HUB_OFFLINE="1",
    )
    result = subprocess.run(
        [sys.executable, *command[1:], "--router", "keywords"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    router_runs = sorted(langsmith_capture.named("RouteLLMChat"), key=lambda r: r["dotted_order"])
    assert len(router_runs) == 2
    for run, (route, model) in zip(
        router_runs, [("weak", "openai/weak"), ("strong", "openai/strong")], strict=True
    ):
        _check_router_run(langsmith_capture, run, route, model, router="keywords")
        # inside the chain: prompt -> RouteLLMChat -> parser, all under one RunnableSequence
        parent = langsmith_capture.runs[str(run["parent_run_id"])]
        assert parent["name"] == "RunnableSequence"
