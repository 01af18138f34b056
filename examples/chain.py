"""A LangChain chain with a routed model: prompt | RouteLLMChat | StrOutputParser.

    python examples/chain.py [--router mf|keywords] [--threshold 0.5]

Easy questions go to the weak model, hard ones to the strong model; each line shows the
decision. With LANGSMITH_TRACING=true and LANGSMITH_API_KEY set, every call is traced: the
decision is on the RouteLLMChat run (metadata `routing`, tags `routellm:<route>`) and the chosen
model appears as its child run, named for the model.
"""

from __future__ import annotations

from _setup import flush_traces, models, parse_args
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from routellm_lc import RouteLLMChat
from routellm_lc.graph import RoutingCallbackHandler

QUESTIONS = [
    "What is the capital of France?",
    "Prove that the square root of 2 is irrational.",
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
