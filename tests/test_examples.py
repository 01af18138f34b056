"""Every example runs as a script against the local backend (offline, deterministic router) and
prints what it promises; the README's LangChain / LangGraph snippets are the examples' code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")


def example_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    env = {k: v for k, v in env.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env.update({"HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra})
    return env


def run_example(name: str, *args: str, router: str | None = "keywords") -> str:
    router_args = ["--router", router] if router else []
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *router_args, *args],
        cwd=REPO,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "local backend" in result.stderr  # no keys given: it started the bundled backend
    return result.stdout


def test_chain_routes_easy_to_weak_and_hard_to_strong():
    lines = run_example("chain.py").splitlines()
    assert len(lines) == 2
    assert re.match(
        r"weak +openai/weak +score=0\.20 \| \[weak\] echo: What is the capital", lines[0]
    )
    assert re.match(r"strong +openai/strong +score=0\.60 \| \[strong\] echo: Prove", lines[1])


def test_examples_default_to_the_mf_router_when_its_checkpoint_loads():
    from routellm_lc.errors import RouteLLMError
    from routellm_lc.routers.base import load_router

    try:
        load_router("mf")
        expected = "mf"
    except (RouteLLMError, OSError):
        expected = "keywords"
    result = subprocess.run(
        [sys.executable, "-c", "import _setup; print(_setup.default_router())"],
        cwd=EXAMPLES,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected
    assert ("mf router unavailable" in result.stderr) == (expected == "keywords")


def test_react_agents_route_their_two_steps_differently():
    out = run_example("react_agent.py")
    sections = out.split("== ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "langgraph.prebuilt.create_react_agent",
        "langchain.agents.create_agent",
    ]
    for section, node in zip(sections, ["agent", "model"], strict=True):
        steps = re.findall(r"step (\d+) \((\w+)\): (\w+) +(\S+)", section)
        assert [(n, route, model) for _, n, route, model in steps] == [
            (node, "weak", "openai/weak"),
            (node, "strong", "openai/strong"),
        ]
        assert int(steps[0][0]) < int(steps[1][0])
        assert "answer: [strong] tool result: Top paper" in section


def test_multi_node_graph_applies_each_nodes_threshold():
    out = run_example("multi_node_graph.py")
    live = re.findall(r"live: (\w+) +(\w+) +threshold=([\d.]+)", out)
    assert live == [
        ("triage", "weak", "0.8"),
        ("solve", "strong", "0.3"),
        ("polish", "weak", "0.7"),
    ]
    recorded = re.findall(r"step (\d) (\w+) +score=([\d.]+) -> (\S+)", out)
    assert recorded == [
        ("1", "triage", "0.60", "openai/weak"),
        ("2", "solve", "0.60", "openai/strong"),
        ("3", "polish", "0.60", "openai/weak"),
    ]


def test_routing_summary_reports_shares_tokens_and_savings():
    data = json.loads(run_example("routing_summary.py", "--json"))
    summary, savings = data["summary"], data["savings"]
    # 4 questions x 2 agent steps; the two hard questions go strong on both steps
    assert summary["calls"] == 8 and summary["strong_calls"] == 4
    assert summary["calls_per_model"] == {"openai/strong": 4, "openai/weak": 4}
    assert summary["calls_per_node"] == {"model": {"strong": 4, "weak": 4}}
    for tokens in summary["tokens_per_model"].values():
        assert tokens["total_tokens"] == tokens["input_tokens"] + tokens["output_tokens"] > 0
    assert savings["unpriced_calls"] == 0
    assert 0 < savings["cost_usd"] < savings["all_strong_cost_usd"]
    text = run_example("routing_summary.py")
    assert "routed calls: 8  strong: 4 (50%)" in text and "saved" in text


# -- the README shows the examples' code verbatim --------------------------------------------------
def readme_section(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def example_region(name: str, tag: str) -> str:
    source = (EXAMPLES / name).read_text()
    match = re.search(rf"# \[README:{tag}\]\n(.*?)\n *# \[/README\]", source, re.S)
    assert match, f"no README region {tag!r} in {name}"
    return textwrap.dedent(match.group(1))


@pytest.mark.parametrize(
    "heading, example, tag",
    [
        ("## LangChain", "chain.py", "langchain"),
        ("## LangGraph", "multi_node_graph.py", "langgraph"),
        ("## LangGraph", "react_agent.py", "langgraph-prebuilt"),
        ("## LangGraph", "routing_summary.py", "summary"),
    ],
)
def test_readme_snippets_are_the_tested_examples(heading, example, tag):
    assert example_region(example, tag) in readme_section(heading)
