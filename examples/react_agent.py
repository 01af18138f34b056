"""A ReAct agent whose every step is routed on its own, built twice: with LangGraph's prebuilt
`create_react_agent` and with LangChain's `create_agent`.

    python examples/react_agent.py [--router mf|keywords] [--threshold T]

The router scores the conversation so far (`route_on="conversation"`): the first step, which
only has to pick a tool, goes to the weak model, while the step that reads a dense research
abstract and answers goes to the strong one (at the default threshold, calibrated on
`_setup.SAMPLE_PROMPTS`). Each step's decision is appended to the agent's state
(`routing_decisions`) with the step number and node.
"""

from __future__ import annotations

import warnings

from _setup import flush_traces, models, parse_args
from langchain.agents import create_agent
from langchain_core.tools import tool

from routellm_lc import RouteLLMChat
from routellm_lc.graph import RoutingAgentState, RoutingMiddleware, record_routing


@tool
def search_papers(query: str) -> str:
    """Search research papers and return the top abstract."""
    return (
        f"Top paper on {query!r}: we prove a tight lower bound and derive the optimal "
        "algorithm's complexity, then analyse its behaviour on adversarial inputs."
    )


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"It is sunny and 21 °C in {city}."


TOOLS = [search_papers, get_weather]
QUESTION = "What does the literature say about comparison sorting?"


def print_steps(title: str, state: dict) -> None:
    print(f"== {title}")
    for record in state["routing_decisions"]:
        print(
            f"  step {record['step']} ({record['node']}): {record['route']:6} "
            f"{record['model']:16} score={record['score']:.2f}"
        )
    print(f"  answer: {state['messages'][-1].content}")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    with models(args) as endpoint:
        llm = RouteLLMChat(
            router=args.router, threshold=args.threshold, route_on="conversation", **endpoint
        )
        inputs = {"messages": [("user", QUESTION)]}

        # [README:langgraph-prebuilt]
        from langgraph.prebuilt import create_react_agent

        with warnings.catch_warnings():  # LangGraph 1.x points to create_agent; both work
            warnings.simplefilter("ignore", DeprecationWarning)
            agent = create_react_agent(
                llm, TOOLS, state_schema=RoutingAgentState, post_model_hook=record_routing
            )
        print_steps("langgraph.prebuilt.create_react_agent", agent.invoke(inputs))

        agent = create_agent(llm, TOOLS, middleware=[RoutingMiddleware()])
        print_steps("langchain.agents.create_agent", agent.invoke(inputs))
        # [/README]
    flush_traces()


if __name__ == "__main__":
    main()
