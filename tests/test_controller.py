"""`Controller`, RouteLLM's interface, over real HTTP to the local backend through LiteLLM:
the routed model answers, decisions match `RouteLLMChat`'s, RouteLLM's errors and counts."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from routellm_lc import Controller, RouteLLMChat
from routellm_lc.errors import RouterModelNameError, RoutingError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

STRONG, WEAK = "openai/strong-model", "openai/weak-model"
HARD = "Prove that the set of primes is infinite, then bound the n-th prime from above."
EASY = "hi"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client(fresh_backend) -> Controller:
    return Controller(
        routers=["mf", "random"],
        strong_model=STRONG,
        weak_model=WEAK,
        api_base=fresh_backend.base_url,
        api_key="test-key",
        max_retries=0,
    )


@pytest.mark.parametrize(("threshold", "answered"), [("0", "strong-model"), ("1", "weak-model")])
def test_create_sends_the_call_to_the_routed_model(client, fresh_backend, threshold, answered):
    response = client.chat.completions.create(model=f"router-mf-{threshold}", messages=user(EASY))
    assert response.choices[0].message.content == f"[{answered}] echo: {EASY}"
    assert [r.model for r in fresh_backend.requests] == [answered]
    routing = response._hidden_params["routing"]
    assert routing["model"] == f"openai/{answered}" and routing["router"] == "mf"
    assert routing["threshold"] == float(threshold)


def test_decisions_match_routellm_chat(client, fresh_backend):
    """The same router, threshold and prompt decide alike through both shells."""
    prompts = [HARD, EASY, "Write a haiku about routers.", "Sum the integers 1 to 100."]
    scores = client.batch_calculate_win_rate(prompts, "mf")
    threshold = float(np.median(scores))  # splits the four prompts
    chat = RouteLLMChat(
        router="mf",
        threshold=threshold,
        strong=STRONG,
        weak=WEAK,
        api_base=fresh_backend.base_url,
        api_key="test-key",
        max_retries=0,
    )
    for prompt, score in zip(prompts, scores, strict=True):
        ours = client.completion(router="mf", threshold=threshold, messages=user(prompt))
        theirs = chat.invoke(prompt).response_metadata["routing"]
        assert ours._hidden_params["routing"]["model"] == theirs["model"]
        assert ours._hidden_params["routing"]["score"] == pytest.approx(theirs["score"])
        assert theirs["score"] == pytest.approx(float(score))
    routes = {chat.invoke(p).response_metadata["routing"]["route"] for p in prompts}
    assert routes == {"strong", "weak"}


def test_model_counts_count_routed_calls_per_router(client):
    client.chat.completions.create(model="router-mf-0", messages=user(EASY))
    client.chat.completions.create(model="router-mf-1", messages=user(EASY))
    client.chat.completions.create(model="router-mf-1", messages=user(HARD))
    client.chat.completions.create(model="router-random-1", messages=user(EASY))
    client.route(EASY, "mf", 0.0)  # routing alone is not a call
    assert {r: dict(c) for r, c in client.model_counts.items()} == {
        "mf": {STRONG: 1, WEAK: 2},
        "random": {WEAK: 1},
    }


def test_acreate_routes_concurrent_calls_without_blocking(client, fresh_backend):
    fresh_backend.configure(latency_ms=300)

    async def main():
        calls = [
            client.chat.completions.acreate(model=f"router-mf-{t}", messages=user(f"q{i}"))
            for i, t in enumerate([0, 1] * 4)
        ]
        return await asyncio.gather(*calls)

    start = time.perf_counter()
    replies = asyncio.run(main())
    elapsed = time.perf_counter() - start
    assert [r.choices[0].message.content.split("]")[0] for r in replies] == [
        "[strong-model",
        "[weak-model",
    ] * 4
    assert elapsed < 8 * 0.3  # the eight 300 ms calls overlapped
    assert sum(client.model_counts["mf"].values()) == 8


def test_a_stream_comes_from_the_routed_model_and_carries_the_decision(client):
    stream = client.chat.completions.create(model="router-mf-1", messages=user(EASY), stream=True)
    assert stream._hidden_params["routing"]["route"] == "weak"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == f"[weak-model] echo: {EASY}"


def test_router_and_threshold_arguments_and_model_name_precedence(client, fresh_backend):
    reply = client.completion(router="mf", threshold=0.0, messages=user(EASY))
    assert reply.choices[0].message.content.startswith("[strong-model]")
    # the model name wins over router= / threshold=, as in RouteLLM
    reply = client.completion(model="router-mf-1", threshold=0.0, messages=user(EASY))
    assert reply.choices[0].message.content.startswith("[weak-model]")
    # a bare `router-mf` takes its threshold from threshold=
    reply = client.completion(model="router-mf", threshold=0.0, messages=user(EASY))
    assert reply.choices[0].message.content.startswith("[strong-model]")
    # the other arguments reach the model
    client.completion(model="router-mf-1", messages=user(EASY), temperature=0.2, max_tokens=7)
    body = fresh_backend.requests[-1].body
    assert body["temperature"] == 0.2 and body["max_tokens"] == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "router-bert-0.5"}, r"router is not loaded\. Available routers are"),
        ({"model": "router-mf-1.5"}, "Bad threshold"),
        ({"model": "gpt-4"}, "not a router model name"),
        ({}, "Router or threshold unspecified"),
        ({"model": "router-mf"}, "Router or threshold unspecified"),
        ({"router": "bert", "threshold": 0.5}, "Invalid router 'bert'"),
        ({"router": "mf", "threshold": -0.1}, "Invalid threshold"),
    ],
)
def test_bad_routing_raises_routing_error_before_any_call(client, fresh_backend, kwargs, match):
    with pytest.raises(RoutingError, match=match):
        client.completion(messages=user(EASY), **kwargs)
    assert fresh_backend.requests == []
    assert not client.model_counts


def test_model_name_errors_say_what_is_wrong():
    assert issubclass(RouterModelNameError, RoutingError)
    assert issubclass(RoutingError, ValueError)


@pytest.mark.parametrize(
    "content", ["", None, [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]]
)
def test_a_conversation_with_no_text_is_a_routing_error(client, fresh_backend, content):
    """`except RoutingError` catches every call that cannot be routed, before any call."""
    with pytest.raises(RoutingError, match="no message has any text"):
        client.completion(model="router-mf-0.5", messages=[{"role": "user", "content": content}])
    assert fresh_backend.requests == []


def test_route_and_batch_win_rates_use_the_same_scores(client):
    scores = client.batch_calculate_win_rate([HARD, EASY], "mf")
    assert isinstance(scores, np.ndarray) and scores.shape == (2,)
    lo, hi = sorted(scores)
    between = (lo + hi) / 2
    assert client.route(HARD, "mf", between) == (STRONG if scores[0] >= between else WEAK)
    assert client.route(EASY, "mf", between) == (STRONG if scores[1] >= between else WEAK)
    with pytest.raises(RoutingError, match="Invalid router"):
        client.batch_calculate_win_rate([EASY], "bert")


def test_batch_win_rates_keep_a_pandas_series_index(client, monkeypatch):
    pd = pytest.importorskip("pandas")
    prompts = pd.Series([HARD, EASY, "x y z"] * 3, index=[f"q{i}" for i in range(9)], name="p")
    whole = client.batch_calculate_win_rate(prompts, "mf")
    assert isinstance(whole, pd.Series)
    assert list(whole.index) == list(prompts.index) and whole.name == "p"
    # with a progress bar the prompts are scored in chunks: the same scores
    monkeypatch.setattr("routellm_lc.controller.PROGRESS_CHUNK", 2)
    client.progress_bar = True
    chunked = client.batch_calculate_win_rate(prompts, "mf")
    np.testing.assert_allclose(chunked.to_numpy(), whole.to_numpy(), rtol=1e-6)


def test_timeout_and_retries_are_bounded(fresh_backend):
    fresh_backend.configure("weak-model", latency_ms=3000)
    client = Controller(["random"], STRONG, WEAK, api_base=fresh_backend.base_url, api_key="k",
                        timeout=0.5, max_retries=0)  # fmt: skip
    start = time.perf_counter()
    with pytest.raises(Exception, match="(?i)time"):
        client.completion(model="router-random-1", messages=user(EASY))
    assert time.perf_counter() - start < 2.5
    # a 503 is retried up to max_retries times
    fresh_backend.reset()
    fresh_backend.fail(status=503, times=1, model="weak-model")
    client = Controller(["random"], STRONG, WEAK, api_base=fresh_backend.base_url, api_key="k",
                        max_retries=1)  # fmt: skip
    reply = client.completion(model="router-random-1", messages=user(EASY))
    assert reply.choices[0].message.content.startswith("[weak-model]")
    assert len(fresh_backend.requests_for("weak-model")) == 2


def test_config_names_checkpoints_like_routellm(fresh_backend, tmp_path):
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    battles = [
        {"prompt": p, "model_a": "big", "model_b": "small", "winner": w}
        for p, w in ((HARD, "model_a"), (EASY, "model_b"))
    ]
    mine = MatrixFactorizationRouter("big", "small", embedder="local", dim=2).fit(battles * 4)
    mine.save_pretrained(tmp_path / "my-mf")
    client = Controller(["mf"], "openai:strong-model", WEAK, config={"mf": {"checkpoint_path": str(tmp_path / "my-mf")}},
                        api_base=fresh_backend.base_url, api_key="k")  # fmt: skip
    assert client.model_pair.strong == STRONG  # LangChain's provider:model spelling
    assert (client.routers["mf"].strong_model, client.routers["mf"].weak_model) == ("big", "small")
    ours = client.batch_calculate_win_rate([HARD, EASY], "mf")
    np.testing.assert_allclose(ours, mine.strong_win_rate([HARD, EASY]), rtol=1e-6)
    bundled = Controller(["mf"], STRONG, WEAK).batch_calculate_win_rate([HARD, EASY], "mf")
    assert not np.allclose(ours, bundled)
    with pytest.raises(RoutingError, match="arena_battle_datasets"):
        Controller(["sw_ranking"], STRONG, WEAK,
                   config={"sw_ranking": {"arena_battle_datasets": ["lmsys/x"]}})  # fmt: skip
    with pytest.raises(Exception, match="sw_ranking has no bundled checkpoint"):
        Controller(["sw_ranking"], STRONG, WEAK)
    assert list(Controller("random", STRONG, WEAK).routers) == ["random"]


def test_routellms_config_name_imports():
    from routellm_lc.controller import GPT_4_AUGMENTED_CONFIG, ROUTELLM_CONFIG

    assert GPT_4_AUGMENTED_CONFIG == ROUTELLM_CONFIG
    assert GPT_4_AUGMENTED_CONFIG["mf"] == {"checkpoint_path": "routellm/mf_gpt4_augmented"}


def test_routellm_mf_architecture_keys_are_a_clear_error(tmp_path):
    """A RouteLLM config naming mf's architecture (`hidden_size: 128`, its class's arguments)
    crashed with a raw TypeError from the router's constructor."""
    config = {"mf": {"checkpoint_path": "routellm_lc/checkpoints/mf_default", "hidden_size": 128}}
    with pytest.raises(RoutingError, match="hidden_size are RouteLLM's mf architecture settings"):
        Controller(["mf"], STRONG, WEAK, config=config)


def test_routellms_published_threshold_on_the_bundled_checkpoint_is_warned_about(
    fresh_backend, caplog
):
    """`router-mf-0.11593` (RouteLLM's README) is a 50% strong share with RouteLLM's mf; with
    the bundled one it sends most calls strong, and a migration multiplied costs silently."""
    client = Controller(
        ["mf", "random"], STRONG, WEAK, api_base=fresh_backend.base_url, api_key="k"
    )
    with caplog.at_level("WARNING", logger="routellm_lc"):
        for _ in range(2):
            client.completion(model="router-mf-0.11593", messages=user(EASY))
        client.completion(model="router-mf-0.2", messages=user(EASY))
        client.completion(model="router-random-0.11593", messages=user(EASY))
    warnings = [r.getMessage() for r in caplog.records if "RouteLLM's published" in r.getMessage()]
    assert len(warnings) == 1 and "routellm-lc calibrate --router mf" in warnings[0]


def test_the_readme_snippet_runs_as_written(fresh_backend, monkeypatch, capsys):
    """The README's `Controller` example, verbatim, with OpenAI's endpoint variables pointing
    at the local backend."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Coming from RouteLLM", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("OPENAI_BASE_URL", fresh_backend.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    exec(compile(snippet, "README.md", "exec"), {})
    out = capsys.readouterr().out
    model = fresh_backend.requests[-1].model
    assert model in ("gpt-4o", "gpt-4o-mini")
    assert out.startswith(f"[{model}] echo: Hello!") and "'router': 'mf'" in out
