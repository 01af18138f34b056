"""A multi-node LangGraph graph in which each node routes with its own threshold.

    python examples/multi_node_graph.py [--router mf|keywords]

`triage` (threshold 0.8) rarely needs the strong model, `solve` (0.3) usually does, `polish`
(0.7) mostly does not: the same router, the same question, three cost policies. Decisions stream
live through `stream_mode="custom"` and end up in the state's `routing_decisions`.
"""

from __future__ import annotations

from _setup import flush_traces, models, parse_args

from routellm_lc import RouteLLMChat


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    with models(args) as endpoint:
        llm = RouteLLMChat(router=args.router, threshold=args.threshold, **endpoint)

        # [README:langgraph]
        from langgraph.graph import END, START, StateGraph

        from routellm_lc.graph import DECISION_EVENT, RoutingState, routed_model_node

        graph = StateGraph(RoutingState)
        graph.add_node("triage", routed_model_node(llm, threshold=0.8, system_prompt="Classify."))
        graph.add_node("solve", routed_model_node(llm, threshold=0.3, system_prompt="Solve it."))
        graph.add_node("polish", routed_model_node(llm, threshold=0.7, system_prompt="Tidy up."))
        graph.add_edge(START, "triage")
        graph.add_edge("triage", "solve")
        graph.add_edge("solve", "polish")
        graph.add_edge("polish", END)
        app = graph.compile()

        inputs = {"messages": [("user", "Prove that there are infinitely many primes.")]}
        for mode, chunk in app.stream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom" and DECISION_EVENT in chunk:  # live, as each node decides
                d = chunk[DECISION_EVENT]
                print(f"live: {d['extra']['node']:7} {d['route']:6} threshold={d['threshold']}")
            elif mode == "values":
                state = chunk
        for r in state["routing_decisions"]:  # the same decisions, recorded in the state
            print(f"step {r['step']} {r['node']:7} score={r['score']:.2f} -> {r['model']}")
        # [/README]
    flush_traces()


if __name__ == "__main__":
    main()
