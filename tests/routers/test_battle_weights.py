"""Battle weights in `fit`: a missing weight (None) counts 1, a weight of 0 counts nothing, and
negative or non-finite weights are refused, in `mf` and `sw_ranking` alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routellm_lc.routers.base import battle_weights
from routellm_lc.routers.mf import MatrixFactorizationRouter
from routellm_lc.routers.sw_ranking import SWRankingRouter


class Table:
    name = "table"
    dim = 2

    def embed(self, texts):
        return np.array([[1.0, 0.0] if t == "hard" else [0.0, 1.0] for t in texts], np.float32)


def _battles(winner, n, weight):
    return [
        {"prompt": "hard", "model_a": "big", "model_b": "small", "winner": winner, "weight": weight}
    ] * n


def test_battle_weights_default_none_to_one_and_keep_zero():
    assert battle_weights([None, 0, 0.0, 2, "1.5", np.float32(0.25)]).tolist() == [
        1.0,
        0.0,
        0.0,
        2.0,
        1.5,
        0.25,
    ]


@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf, "heavy", True, [1.0]])
def test_battle_weights_refuse_negative_non_finite_and_non_numbers(weight):
    with pytest.raises(ValueError, match="Battle 1: weight must be"):
        battle_weights([1.0, weight])


def test_huge_weights_keep_their_ratios():
    """Two weights of 1e308 overflowed the total, so normalised weights were all 0 and the
    router learnt nothing, silently."""
    weights = battle_weights([1e308, 1e308, 1e307])
    assert np.isfinite(weights.sum()) and weights.tolist() == pytest.approx([1.0, 1.0, 0.1])
    router = MatrixFactorizationRouter("big", "small", embedder=Table(), dim=2, epochs=60, lr=0.05)
    battles = [dict(b, weight=1e308) for b in _battles("model_a", 20, 1.0)]
    assert router.fit(battles).strong_win_rate(["hard"])[0] > 0.8


def test_battle_weights_refuse_all_zero():
    with pytest.raises(ValueError, match="Every battle has weight 0"):
        battle_weights([0.0, 0])


def test_mf_fit_ignores_zero_weight_battles():
    """200 strong wins of weight 0 must not outvote 20 weak wins of weight 1 (`w or 1.0` made
    each 0 count as 1)."""
    battles = _battles("model_b", 20, 1.0) + _battles("model_a", 200, 0.0)
    router = MatrixFactorizationRouter("big", "small", embedder=Table(), dim=2, epochs=60, lr=0.05)
    assert router.fit(battles).strong_win_rate(["hard"])[0] < 0.2


def test_sw_ranking_fit_counts_missing_weights_as_one():
    """20 weak wins without a weight and 1 strong win of weight 1: 1/21 (`w or 0.0` dropped the
    20 and scored 1.0)."""
    battles = _battles("model_b", 20, None) + _battles("model_a", 1, 1.0)
    router = SWRankingRouter("big", "small", embedder=Table()).fit(battles)
    assert router.strong_win_rate(["hard"])[0] == pytest.approx(1 / 21)


@pytest.mark.parametrize("weight", [-1.0, math.nan])
def test_fits_refuse_bad_weights(weight):
    battles = _battles("model_a", 2, 1.0) + _battles("model_b", 1, weight)
    with pytest.raises(ValueError, match="Battle 2: weight must be finite and ≥ 0"):
        MatrixFactorizationRouter("big", "small", embedder=Table(), dim=2).fit(battles)
    with pytest.raises(ValueError, match="Battle 2: weight must be finite and ≥ 0"):
        SWRankingRouter("big", "small", embedder=Table()).fit(battles)
