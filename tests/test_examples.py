"""Every example runs as a script against the local backend (offline), with the default router
(`mf`) at its default, calibrated, threshold and with the keywords demo router, and routes as its
docstring promises; the README's LangChain / LangGraph snippets are the examples' code."""

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


#: The routers every example is run with: None is the default (`mf`, whose bundled checkpoint
#: ships with the package) at the default, calibrated, threshold; `keywords` the demo router.
ROUTERS = [None, "keywords"]
CALIBRATED = re.compile(
    r"\(threshold (0\.\d{3}): sends (\d+)% of the 20 sample prompts to the strong model\)"
)


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Python with `args` in the examples' environment; it must exit 0."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_example(name: str, *args: str, router: str | None) -> tuple[str, str]:
    """Run an example; its stdout and stderr."""
    router_args = ["--router", router] if router else []
    result = run_python([str(EXAMPLES / name), *router_args, *args], REPO)
    assert "local backend" in result.stderr  # no keys given: it started the bundled backend
    assert "mf router unavailable" not in result.stderr  # the default really is mf
    return result.stdout, result.stderr


def thresholds_printed(stderr: str, router: str | None) -> list[tuple[float, int]]:
    """The thresholds the example chose and the strong share each was chosen for."""
    if router == "keywords":  # hand-set scores: 1 − share, not calibrated
        found = re.findall(r"\(threshold (0\.\d{3}) = 1 - (\d+)%: keywords demo router\)", stderr)
    else:
        found = CALIBRATED.findall(stderr)
    return [(float(t), int(pct)) for t, pct in found]


@pytest.mark.parametrize("router", ROUTERS)
def test_chain_routes_easy_to_weak_and_hard_to_strong(router):
    out, err = run_example("chain.py", router=router)
    lines = out.splitlines()
    assert len(lines) == 2
    assert re.match(
        r"weak +openai/weak +score=0\.\d\d \| \[weak\] echo: What is the capital", lines[0]
    )
    assert re.match(r"strong +openai/strong +score=0\.\d\d \| \[strong\] echo: Derive", lines[1])
    ((threshold, pct),) = thresholds_printed(err, router)  # printed once
    assert pct == 50
    if router == "keywords":
        assert threshold == 0.5 and "score=0.20" in lines[0] and "score=0.95" in lines[1]


def test_an_explicit_threshold_wins_over_the_calibrated_one():
    out, err = run_example("chain.py", "--threshold", "0.01", router=None)
    assert [line.split()[0] for line in out.splitlines()] == ["strong", "strong"]
    assert "threshold" not in err  # nothing calibrated


def test_calibrated_thresholds_send_the_stated_share_of_the_sample_to_strong():
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        import _setup
        from routellm_lc.chat_model import shared_router

        scores = shared_router("mf").strong_win_rate(_setup.SAMPLE_PROMPTS)
        shares = {}
        for pct in (0.1, 0.3, 0.5, 0.9):
            threshold = _setup.threshold_for("mf", pct)
            shares[pct] = float(np.mean(scores >= threshold))
        print(json.dumps({"shares": shares, "keywords": _setup.threshold_for("keywords", 0.5)}))
        """
    )
    result = run_python(["-c", script], EXAMPLES)
    data = json.loads(result.stdout)
    assert data["shares"] == {"0.1": 0.1, "0.3": 0.3, "0.5": 0.5, "0.9": 0.9}
    assert data["keywords"] == 0.5
    assert len(CALIBRATED.findall(result.stderr)) == 4


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


@pytest.mark.parametrize("router", ROUTERS)
def test_react_agents_route_their_two_steps_differently(router):
    out, _ = run_example("react_agent.py", router=router)
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


@pytest.mark.parametrize("router", ROUTERS)
def test_multi_node_graph_applies_each_nodes_threshold(router):
    out, err = run_example("multi_node_graph.py", router=router)
    # triage sends 10% of the sample strong, solve 90%, polish 30%
    thresholds = thresholds_printed(err, router)
    assert [pct for _, pct in thresholds] == [10, 90, 30]
    triage, solve, polish = (t for t, _ in thresholds)
    assert solve < polish < triage
    if router == "keywords":
        assert (triage, solve, polish) == (0.9, 0.1, 0.7)
    live = re.findall(r"live: (\w+) +(\w+) +threshold=([\d.]+)", out)
    assert live == [
        ("triage", "weak", f"{triage:.3f}"),
        ("solve", "strong", f"{solve:.3f}"),
        ("polish", "weak", f"{polish:.3f}"),
    ]
    recorded = re.findall(r"step (\d) (\w+) +score=([\d.]+) -> (\S+)", out)
    assert [(step, node, model) for step, node, _, model in recorded] == [
        ("1", "triage", "openai/weak"),
        ("2", "solve", "openai/strong"),
        ("3", "polish", "openai/weak"),
    ]
    assert len({score for _, _, score, _ in recorded}) == 1  # the same question at every node


@pytest.mark.parametrize("router", ROUTERS)
def test_routing_summary_reports_shares_tokens_and_savings(router):
    out, _ = run_example("routing_summary.py", "--json", router=router)
    data = json.loads(out)
    summary, savings = data["summary"], data["savings"]
    # 4 questions x 2 agent steps; the two hard questions go strong on both steps
    assert summary["calls"] == 8 and summary["strong_calls"] == 4
    assert summary["calls_per_model"] == {"openai/strong": 4, "openai/weak": 4}
    assert summary["calls_per_node"] == {"model": {"strong": 4, "weak": 4}}
    for tokens in summary["tokens_per_model"].values():
        assert tokens["total_tokens"] == tokens["input_tokens"] + tokens["output_tokens"] > 0
    assert savings["unpriced_calls"] == 0
    assert 0 < savings["cost_usd"] < savings["all_strong_cost_usd"]
    if router is None:
        text, _ = run_example("routing_summary.py", router=router)
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
