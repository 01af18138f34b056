"""The online strong-share controller holds its target as the score distribution drifts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tracers.context import collect_runs

from routellm_lc import RouteLLMChat
from routellm_lc.budget import StrongShareController
from routellm_lc.routers.base import Router


class ScoreTable(Router):
    """Scores from a table (0.5 for unknown prompts); counts its calls, optionally slowly."""

    name = "table"

    def __init__(self, scores: dict[str, float], delay: float = 0.0) -> None:
        self.scores = scores
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def strong_win_rate(self, prompts):
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return np.array([self.scores.get(p, 0.5) for p in prompts])


def _chat(router: Router, controller: StrongShareController, **options) -> RouteLLMChat:
    return RouteLLMChat(
        router=router,
        controller=controller,
        strong=FakeListChatModel(responses=["S"]),
        weak=FakeListChatModel(responses=["W"]),
        **options,
    )


def _strong_share(messages) -> float:
    return float(np.mean([m.response_metadata["routing"]["route"] == "strong" for m in messages]))


def _routed_share(controller, scores):
    strong = 0
    for score in scores:
        strong += score >= controller.threshold()
        controller.observe([score])
    return strong / len(scores)


def test_holds_target_share_through_a_distribution_shift():
    rng = np.random.default_rng(0)
    controller = StrongShareController(0.2, initial_threshold=0.5, window=500, warmup=50)
    easy = rng.beta(2, 5, size=3000)  # mostly low scores
    hard = rng.beta(5, 2, size=3000)  # traffic turns hard: a fixed threshold would drift to ~90%
    assert np.mean(hard >= 0.5) > 0.8
    _routed_share(controller, easy[:1000])
    assert _routed_share(controller, easy[1000:]) == pytest.approx(0.2, abs=0.03)
    _routed_share(controller, hard[:1000])  # adapting
    assert _routed_share(controller, hard[1000:]) == pytest.approx(0.2, abs=0.03)


def test_tied_scores_do_not_send_the_whole_tie_strong():
    """Scores from {0.1, 0.5, 0.5, 0.5, 0.9} (a repeated prompt scores the same each time):
    the interpolated quantile landed on 0.5 whenever 0.9 held a bit under 20% of the window,
    sending 80% strong; a 20% target held 42-49%. The threshold is now the window score whose
    share is closest to the target."""
    rng = np.random.default_rng(0)
    controller = StrongShareController(0.2, window=1000, warmup=100)
    routed = []
    for score in rng.choice([0.1, 0.5, 0.5, 0.5, 0.9], size=6000):
        routed.append(score >= controller.threshold())
        controller.observe([score])
    assert np.mean(routed[-3000:]) == pytest.approx(0.2, abs=0.03)
    assert controller.threshold() == 0.9


def test_uses_initial_threshold_until_warm_and_validates():
    controller = StrongShareController(0.5, initial_threshold=0.3, warmup=10)
    controller.observe([0.9] * 9)
    assert controller.threshold() == 0.3
    controller.observe([0.1])
    assert controller.threshold() != 0.3
    for share in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="target_strong_share"):
            StrongShareController(share)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_a_share_of_zero_or_one_is_refused_not_approximated(share):
    """No threshold sends nothing strong (scores of exactly 1.0 pass 1.0), and until warm-up
    the initial threshold would route ~a fifth of the calls strong: refused, as calibrate does."""
    with pytest.raises(ValueError, match="strictly between 0 and 1.*call the weak"):
        StrongShareController(share)


def test_route_llm_chat_uses_the_controller_threshold():
    from routellm_lc import RouteLLMChat
    from routellm_lc.routers.random import RandomRouter

    controller = StrongShareController(0.25, initial_threshold=0.9, window=400, warmup=100)
    llm = RouteLLMChat(router=RandomRouter(seed=3), strong="s", weak="w", controller=controller)
    decisions = [d for _ in range(40) for d in llm.decide([f"prompt {i}" for i in range(50)])]
    late = decisions[-1000:]
    assert np.mean([d.route == "strong" for d in late]) == pytest.approx(0.25, abs=0.04)
    assert all(d.threshold == pytest.approx(controller.threshold(), abs=0.2) for d in late[-10:])
    assert decisions[0].threshold == 0.9  # before warm-up: the initial threshold


def test_calls_with_their_own_threshold_do_not_move_the_controller():
    """A node forced strong (`threshold=1.0`, high scores) used to fill the controller's window,
    so the calls it does decide went all weak: 0% strong for a 50% target."""
    from routellm_lc.routers.random import RandomRouter

    controller = StrongShareController(0.5, window=400, warmup=100)
    llm = RouteLLMChat(router=RandomRouter(seed=5), strong="s", weak="w", controller=controller)
    before = controller.state().to_dict()
    for i in range(20):
        llm.decide([f"forced {i}.{j}" for j in range(30)], threshold=1.0)
    assert controller.state().to_dict() == before  # nothing observed
    governed = [d for i in range(30) for d in llm.decide([f"p {i}.{j}" for j in range(40)])]
    late = governed[-600:]
    assert np.mean([d.route == "strong" for d in late]) == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize("mode", ["batch", "abatch"])
def test_batch_calls_with_their_own_threshold_do_not_move_the_controller(mode):
    """The batch path scores all prompts first and hands each call the controller's threshold
    in order: items with their own threshold were counted there all the same."""
    import asyncio

    controller = StrongShareController(0.5, window=400, warmup=10)
    llm = _chat(ScoreTable({}), controller)
    before = controller.state().to_dict()
    prompts = [f"forced {i}" for i in range(30)]
    forced = {"configurable": {"routellm_threshold": 1.0}}
    if mode == "batch":
        replies = llm.batch(prompts, forced)
    else:
        replies = asyncio.run(llm.abatch(prompts, forced))
    assert all(r.response_metadata["routing"]["threshold"] == 1.0 for r in replies)
    assert controller.state().to_dict() == before
    # mixed: only the items without their own threshold are the controller's
    configs = [forced if i % 2 else {} for i in range(20)]
    llm.batch([f"mixed {i}" for i in range(20)], configs)
    assert controller.state().to_dict()["observed"] == 10


def test_abatch_moves_the_controller_off_the_event_loop(monkeypatch):
    """`abatch` scored in a worker thread but updated the controller (a quantile per item,
    ~50 µs each with the default window) on the event loop: 2,000 prompts stalled it ~0.2 s."""
    import asyncio
    import threading

    controller = StrongShareController(0.5, window=400, warmup=10)
    threads = []
    real = controller.route_in_order

    def spy(scores):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(scores)

    monkeypatch.setattr(controller, "route_in_order", spy)
    llm = _chat(ScoreTable({}), controller)
    replies = asyncio.run(llm.abatch([f"p {i}" for i in range(40)]))
    assert len(replies) == 40 and controller.state().observed == 40
    assert threads == [False]  # once, in the worker thread


def test_a_call_cancelled_while_it_is_scored_does_not_move_the_controller():
    """`asyncio.wait_for` timing out while the router scored: the call was never routed, but
    its score moved the controller all the same."""
    import asyncio
    import time

    class Slow(ScoreTable):
        def strong_win_rate(self, prompts):
            time.sleep(0.3)
            return super().strong_win_rate(prompts)

    controller = StrongShareController(0.5, window=400, warmup=10)
    llm = _chat(Slow({}), controller)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(llm.adecide(["p"]), 0.05)
        with pytest.raises(asyncio.TimeoutError):  # a batch, scored in one pass
            await asyncio.wait_for(llm.abatch(["p1", "p2", "p3"]), 0.05)
        await asyncio.sleep(0.7)  # the scoring threads have finished by now
        assert controller.state().observed == 0
        await llm.adecide(["q"])  # a call that waits is observed
        assert controller.state().observed == 1

    asyncio.run(main())


def test_with_a_controller_the_model_name_says_so_and_cache_keys_stay_put():
    scores = {f"p{i}": i / 100 for i in range(100)}
    controller = StrongShareController(0.2, warmup=10)
    llm = _chat(ScoreTable(scores), controller, threshold=0.5, cache=InMemoryCache())
    assert llm.model_name == "router-table-share0.2"
    assert llm._identifying_params == {
        "router": "table",
        "target_strong_share": 0.2,
        "strong": "fake-list-chat-model",
        "weak": "fake-list-chat-model",
    }
    with collect_runs() as runs:
        first = llm.invoke("p95")
    assert runs.traced_runs[0].extra["metadata"]["ls_model_name"] == "router-table-share0.2"
    for i in range(100):
        llm.invoke(f"p{i}")
    assert controller.threshold() != 0.5  # the controller moved the threshold...
    again = llm.invoke("p95")
    assert again.content == first.content == "S"
    # ...and the routed answer still came from the cache: the key holds no moving threshold
    assert again.response_metadata["routing"] == first.response_metadata["routing"]


def _traffic_with_a_hot_prompt() -> tuple[dict[str, float], list[str]]:
    """300 prompts spread over [0, 1), plus one hard prompt (score 0.95) that is 10% of calls."""
    scores = {f"p{i}": i / 300 for i in range(300)}
    scores["hot"] = 0.95
    traffic = []
    for i in range(300):
        traffic.append(f"p{i}")
        if i % 9 == 0:
            traffic.append("hot")
    return scores, traffic


def test_batch_counts_a_repeated_prompt_once_per_call():
    """A batch scores a repeated prompt once, but each call is routed: the controller must see
    it as often as it is sent, or the share it holds overshoots."""
    scores, traffic = _traffic_with_a_hot_prompt()
    controller = StrongShareController(0.2, warmup=20, window=1000)
    llm = _chat(ScoreTable(scores), controller)
    replies = []
    for _ in range(4):
        for start in range(0, len(traffic), 30):
            replies += llm.batch(traffic[start : start + 30])
    assert controller.state().observed == len(replies) == 4 * len(traffic)
    assert _strong_share(replies[-len(traffic) :]) == pytest.approx(0.2, abs=0.02)


def test_concurrent_batches_on_one_instance_keep_their_own_scores():
    """Batches running at once on one chat model share prompts; one batch finishing must not
    drop the scores another still routes with (they would be scored and counted again)."""
    prompts = [f"p{i}" for i in range(100)]
    router = ScoreTable({p: i / 100 for i, p in enumerate(prompts)}, delay=0.02)
    controller = StrongShareController(0.2, warmup=20)
    llm = _chat(router, controller)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: llm.batch(prompts), range(8)))
    assert router.calls == 8  # one router pass per batch, none per call
    assert controller.state().observed == 800
    for replies in results:
        routing = [r.response_metadata["routing"] for r in replies]
        assert [r["score"] for r in routing] == [i / 100 for i in range(100)]
        assert all(r["batch_size"] == 100 for r in routing)


# -- copies and persistence ----------------------------------------------------------------------
def _warm_controller() -> StrongShareController:
    controller = StrongShareController(0.3, window=100, warmup=10)
    controller.observe([i / 100 for i in range(100)])
    return controller


def test_a_controller_pickles_and_deep_copies_into_an_independent_one():
    """Its lock cannot be copied: a copy gets its own, keeps the window and threshold, and
    adapts on its own afterwards. A shallow model copy still shares the controller."""
    import copy
    import pickle

    from routellm_lc.routers.random import RandomRouter

    controller = _warm_controller()
    llm = RouteLLMChat(router=RandomRouter(seed=0), strong="s", weak="w", controller=controller)
    for clone in (
        pickle.loads(pickle.dumps(controller)),
        copy.deepcopy(controller),
        llm.model_copy(deep=True).controller,
    ):
        assert clone is not controller
        assert clone.state() == controller.state()
        assert clone.state().scores == [i / 100 for i in range(100)]
        clone.observe([1.0] * 100)  # its own lock works, and only the copy moves
        assert clone.threshold() == 1.0
        assert controller.threshold() == pytest.approx(0.70)  # 30 of 100 scores ≥ 0.70
    assert llm.model_copy().controller is controller


def test_a_saved_state_resumes_after_a_restart_without_warming_up_again():
    """`state().to_dict()` is JSON; a new controller that loads it routes at the same
    threshold and moves with new traffic exactly as the old one would have."""
    import json

    old = _warm_controller()
    saved = json.dumps(old.state().to_dict())
    fresh = StrongShareController(0.3, window=100, warmup=10)
    assert fresh.threshold() == 0.5  # without the state: back to warm-up
    fresh.load_state(json.loads(saved))
    assert fresh.state() == old.state() and fresh.threshold() == pytest.approx(0.70)
    more = np.random.default_rng(1).uniform(0.6, 1.0, size=37)
    assert fresh.observe(more) == old.observe(more)
    assert fresh.state() == old.state() and fresh.state().observed == 137

    smaller = StrongShareController(0.5, window=40, warmup=50)  # new settings apply at once
    smaller.load_state(old.state())
    assert smaller.state().scores == old.state().scores[-40:]
    window = np.sort(old.state().scores[-40:])
    assert smaller.threshold() == window[-20]  # 20 of 40 at or above it: the 50% target


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"observed": 2, "scores": [0.1, float("nan")]}, r"in \[0, 1\]"),
        ({"observed": 2, "scores": [0.1, 1.5]}, r"in \[0, 1\]"),
        ({"observed": 1, "scores": [0.1, 0.2]}, "less than the saved window"),
    ],
)
def test_load_state_refuses_a_state_no_controller_could_have(state, match):
    controller = _warm_controller()
    before = controller.state()
    with pytest.raises(ValueError, match=match):
        controller.load_state(state)
    assert controller.state() == before  # left as it was


async def test_decide_with_observe_false_is_a_dry_run_for_the_controller():
    """`decide` is also how one previews routing: those previews moved the controller as if
    they were calls. `observe=False` leaves it alone; the default still counts (routing with
    `decide` and calling the models yourself)."""
    router = ScoreTable({f"p{i}": i / 100 for i in range(100)})
    controller = StrongShareController(0.2, window=100, warmup=10)
    chat = _chat(router, controller)
    prompts = [f"p{i}" for i in range(100)]
    before = controller.state().to_dict()
    dry = chat.decide(prompts, observe=False) + await chat.adecide(prompts, observe=False)
    assert controller.state().to_dict() == before
    assert {d.threshold for d in dry} == {controller.threshold()}
    chat.decide(prompts[:30])
    await chat.adecide(prompts[30:50])
    assert controller.state().observed == before["observed"] + 50
