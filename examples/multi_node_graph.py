"""A multi-node LangGraph graph in which each node routes with its own threshold.

    python examples/multi_node_graph.py [--router mf|keywords]

Each node's cost policy is a share of strong calls: `triage` rarely needs the strong model
(10% of calls), `solve` usually does (90%), `polish` mostly does not (30%). Each share becomes
the node's threshold, calibrated on the sample prompts of `_setup.py` (`threshold_for`, i.e.
`calibrate_threshold`; the keywords demo router uses 1 − share). The same router, the same
question, three policies: triage weak, solve strong, polish weak. Decisions stream live through
`stream_mode="custom"` and end up in the state's `routing_decisions`.
"""

from __future__ import annotations

from _setup import flush_traces, models, parse_args, parser, threshold_for

from routellm_lc import RouteLLMChat


def main() -> None:
    cli = parser(__doc__.splitlines()[0], threshold=False)  # each node sets its own
    args = parse_args(__doc__.splitlines()[0], namespace_parser=cli)
    with models(args) as endpoint:
        llm = RouteLLMChat(router=args.router, **endpoint)

        # [README:langgraph]
        from langgraph.graph import END, START, StateGraph

        from routellm_lc.graph import DECISION_EVENT, RoutingState, routed_model_node

        # each node's strong share (10%, 90%, 30%) as a threshold calibrated on the sample
        triage, solve, polish = (threshold_for(args.router, share) for share in (0.1, 0.9, 0.3))
        graph = StateGraph(RoutingState)
        graph.add_node(
            "triage", routed_model_node(llm, threshold=triage, system_prompt="Classify.")
        )
        graph.add_node("solve", routed_model_node(llm, threshold=solve, system_prompt="Solve it."))
        graph.add_node("polish", routed_model_node(llm, threshold=polish, system_prompt="Tidy up."))
        graph.add_edge(START, "triage")
        graph.add_edge("triage", "solve")
        graph.add_edge("solve", "polish")
        graph.add_edge("polish", END)
        app = graph.compile()

        inputs = {"messages": [("user", "Prove that there are infinitely many primes.")]}
        for mode, chunk in app.stream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom" and DECISION_EVENT in chunk:  # live, as each node decides
                d = chunk[DECISION_EVENT]
                print(f"live: {d['extra']['node']:7} {d['route']:6} threshold={d['threshold']:.3f}")
            elif mode == "values":
                state = chunk
        for r in state["routing_decisions"]:  # the same decisions, recorded in the state
            print(f"step {r['step']} {r['node']:7} score={r['score']:.2f} -> {r['model']}")
        # [/README]
    flush_traces()


if __name__ == "__main__":
    main()
