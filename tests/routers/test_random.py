"""random router: RouteLLM's baseline, a uniform draw per prompt."""

from __future__ import annotations

import numpy as np
import pytest

from routellm_lc.routers import load_router
from routellm_lc.routers.random import RandomRouter


def test_scores_are_one_float_in_unit_interval_per_prompt():
    scores = RandomRouter(seed=1).strong_win_rate(["a", "b", "c", "a"])
    assert scores.shape == (4,) and scores.dtype == np.float64
    assert np.all((scores >= 0.0) & (scores < 1.0))
    assert len(set(scores.tolist())) == 4  # repeated prompts get fresh draws
    assert RandomRouter().strong_win_rate([]).shape == (0,)


def test_same_seed_same_scores_different_seed_different_scores():
    prompts = [f"p{i}" for i in range(50)]
    first = RandomRouter(seed=7).strong_win_rate(prompts)
    np.testing.assert_array_equal(first, RandomRouter(seed=7).strong_win_rate(prompts))
    assert not np.array_equal(first, RandomRouter(seed=8).strong_win_rate(prompts))
    # One router's successive calls continue its stream (one batch == the same draws split).
    router = RandomRouter(seed=7)
    split = np.concatenate(
        [router.strong_win_rate(prompts[:20]), router.strong_win_rate(prompts[20:])]
    )
    np.testing.assert_array_equal(split, first)


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.8])
def test_share_of_strong_calls_is_one_minus_threshold(threshold):
    router = load_router("random", seed=123)
    routed = router.route([f"prompt {i}" for i in range(10_000)], threshold)
    # Binomial(10k, 1 - t): standard deviation ≤ 0.005; allow 4 of them.
    assert abs(routed.mean() - (1 - threshold)) < 0.02


def test_scores_are_uniform():
    scores = RandomRouter(seed=0).strong_win_rate(["x"] * 10_000)
    counts, _ = np.histogram(scores, bins=10, range=(0, 1))
    assert counts.min() > 900 and counts.max() < 1100  # each decile ≈ 1,000 ± 3 sd
