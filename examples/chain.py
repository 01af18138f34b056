"""A LangChain chain with a routed model: prompt | RouteLLMChat | StrOutputParser.

    python examples/chain.py [--router mf|keywords] [--threshold T]

Easy questions go to the weak model, hard ones to the strong model; each line shows the
decision. Unless `--threshold` is given, the threshold is calibrated: the one that sends half
of a sample of everyday prompts (`_setup.SAMPLE_PROMPTS`) to the strong model (~0.08 for `mf`,
whose scores are low on short prompts; 0.5 for the keywords demo router).

With LANGSMITH_TRACING=true and LANGSMITH_API_KEY set, every call is traced: the decision is on
the RouteLLMChat run (metadata `routing`, tags `routellm:<route>`) and the chosen model appears
as its child run, named for the model.
"""

from __future__ import annotations

from _setup import flush_traces, models, parse_args
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from routellm_lc import RouteLLMChat
from routellm_lc.graph import RoutingCallbackHandler

QUESTIONS = [
    "What is the capital of France?",
    "Derive the time complexity of mergesort with the master theorem.",
]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    with models(args) as endpoint:
        # [README:langchain]
        llm = RouteLLMChat(router=args.router, threshold=args.threshold, **endpoint)
        prompt = ChatPromptTemplate.from_messages(
            [("system", "Answer in one sentence."), ("human", "{question}")]
        )
        chain = prompt | llm | StrOutputParser()

        decisions = RoutingCallbackHandler()  # records each routed call of the chain
        for question in QUESTIONS:
            answer = chain.invoke({"question": question}, {"callbacks": [decisions]})
            call = decisions.calls[-1]
            print(f"{call.route:6} {call.model:16} score={call.score:.2f} | {answer}")
        # [/README]
    flush_traces()


if __name__ == "__main__":
    main()
