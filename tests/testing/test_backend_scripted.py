"""Scripted backend answers: chosen by what the last user message contains."""

from __future__ import annotations

import json

import openai
import pytest


@pytest.fixture
def client(fresh_backend):
    return openai.OpenAI(base_url=fresh_backend.base_url, api_key="k", max_retries=0)


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
        },
    },
}


def test_scripted_reply_and_tool_arguments_by_prompt(fresh_backend, client):
    fresh_backend.configure(
        "m",
        scripted={
            "capital of France": {"reply": "Paris."},
            "look up": {"tool_arguments": {"lookup": {"q": "你好"}}},
        },
    )

    def ask(text, **kw):
        messages = [{"role": "user", "content": text}]
        return client.chat.completions.create(model="m", messages=messages, **kw)

    assert ask("What is the capital of France?").choices[0].message.content == "Paris."
    call = ask("please look up this", tools=[TOOL]).choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"q": "你好"}
    # Unscripted prompts and other models keep the default echo.
    assert ask("anything else").choices[0].message.content == "[m] echo: anything else"
    other = client.chat.completions.create(
        model="n", messages=[{"role": "user", "content": "capital of France"}]
    )
    assert other.choices[0].message.content == "[n] echo: capital of France"
