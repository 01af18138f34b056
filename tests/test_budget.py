"""The online strong-share controller holds its target as the score distribution drifts."""

from __future__ import annotations

import numpy as np
import pytest

from routellm_lc.budget import StrongShareController


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


def test_uses_initial_threshold_until_warm_and_validates():
    controller = StrongShareController(0.5, initial_threshold=0.3, warmup=10)
    controller.observe([0.9] * 9)
    assert controller.threshold() == 0.3
    controller.observe([0.1])
    assert controller.threshold() != 0.3
    assert StrongShareController(0.0).observe([0.2] * 100) == 1.0
    with pytest.raises(ValueError, match="target_strong_share"):
        StrongShareController(1.5)


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
