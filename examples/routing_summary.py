"""Print a run's routing summary: strong share, calls and tokens per model, routes per graph
node, and what routing saved against sending everything to the strong model.

    python examples/routing_summary.py [--router mf|keywords] [--threshold T] [--json]

An agent answers two easy questions and two hard ones with a `RoutingCallbackHandler` attached;
the handler records every routed call (run ids, step, node, score, threshold, model, latency,
token usage). At the default threshold (calibrated on `_setup.SAMPLE_PROMPTS`) the hard
questions go to the strong model at both of the agent's steps: half the calls are strong.
"""

from __future__ import annotations

import json

from _setup import flush_traces, models, parse_args, parser
from langchain.agents import create_agent
from langchain_core.tools import tool

from routellm_lc import RouteLLMChat
from routellm_lc.costs import model_price
from routellm_lc.graph import RoutingCallbackHandler


@tool
def lookup(topic: str) -> str:
    """Look a topic up in the encyclopedia."""
    return f"Encyclopedia entry on {topic}: a short, plain summary."


QUESTIONS = [
    "What is the capital of Japan?",
    "Prove that a graph is bipartite if and only if it has no odd cycle.",
    "Give me a synonym for happy.",
    "Derive the time complexity of heapsort and prove it is optimal.",
]


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parse_args(__doc__.splitlines()[0], namespace_parser=cli)
    with models(args) as endpoint:
        llm = RouteLLMChat(router=args.router, threshold=args.threshold, **endpoint)
        agent = create_agent(llm, [lookup])

        # [README:summary]
        handler = RoutingCallbackHandler()
        for question in QUESTIONS:
            agent.invoke({"messages": [("user", question)]}, {"callbacks": [handler]})
        summary = handler.summary()
        # [/README]

        # Local models have no price: price them as gpt-4o / gpt-4o-mini (LiteLLM's price map).
        prices = {
            llm.strong_name: model_price(llm.strong_name) or model_price("openai/gpt-4o"),
            llm.weak_name: model_price(llm.weak_name) or model_price("openai/gpt-4o-mini"),
        }
        savings = handler.savings(llm.strong_name, prices)
        if args.json:
            print(json.dumps({"summary": summary.to_dict(), "savings": savings.to_dict()}))
        else:
            print(summary.format())
            print(
                f"cost ${savings.cost:.6f} vs all-strong ${savings.all_strong_cost:.6f} "
                f"(saved {savings.savings_pct:.0f}%, same token counts at strong prices)"
            )
    flush_traces()


if __name__ == "__main__":
    main()
