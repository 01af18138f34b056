"""RouteLLM's metrics against curves worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from routellm_lc.evals import metrics
from routellm_lc.evals.benchmarks import Benchmark
from routellm_lc.evals.harness import random_curve

# Four prompts. Per prompt (strong, weak): (1, 0), (1, 1), (0, 0), (1, 0); scores rise with
# the index, so the top-k scorers go strong. Quality with k strong calls:
#   k=0: weak mean 1/4 = 0.25; k=1,2,3: 2/4 = 0.5; k=4: strong mean 3/4 = 0.75.
SCORES = np.array([0.1, 0.2, 0.3, 0.4])
STRONG = np.array([1.0, 1.0, 0.0, 1.0])
WEAK = np.array([0.0, 1.0, 0.0, 0.0])


def test_curve_points_at_decile_thresholds():
    curve = metrics.threshold_curve(SCORES, STRONG, WEAK)
    # Deciles of [0.1, 0.2, 0.3, 0.4] by linear interpolation: 0.1, 0.13, ..., 0.37, 0.4.
    # ≥ 0.13..0.19 keeps 3 prompts, ≥ 0.22..0.28 keeps 2, ≥ 0.31..0.37 keeps 1.
    assert curve.strong_share.tolist() == [0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 1]
    np.testing.assert_allclose(curve.quality, [0.25] + [0.5] * 9 + [0.75])
    np.testing.assert_allclose(
        sorted(curve.thresholds), [0.1, 0.13, 0.16, 0.19, 0.22, 0.25, 0.28, 0.31, 0.34, 0.37, 0.4]
    )


def test_auc_apgr_and_cpt_by_hand():
    curve = metrics.threshold_curve(SCORES, STRONG, WEAK)
    # Trapezoids: [0, .25]: (.25 + .5)/2 · .25 = .09375; [.25, .75]: .5 · .5 = .25;
    # [.75, 1]: (.5 + .75)/2 · .25 = .15625. AUC = 0.5, APGR = (0.5 − 0.25) / 0.5 = 0.5.
    assert metrics.auc(curve) == pytest.approx(0.5)
    assert metrics.apgr(curve, 0.75, 0.25) == pytest.approx(0.5)
    # CPT targets 0.35 / 0.5 / 0.65: inside the first segment at 0.1; in the last segment
    # .75 + (.65 − .5)/(.75 − .5) · .25 = 0.9. Target 0.5 is the quality of the whole flat
    # stretch from 0.25 to 0.75: RouteLLM's np.interp(50, accuracy, strong_percentage) answers
    # its last point, 75%, and so does CPT here (the first crossing would say 25%).
    assert metrics.cpt(curve, 0.2, 0.75, 0.25) == pytest.approx(0.10)
    assert metrics.cpt(curve, 0.5, 0.75, 0.25) == pytest.approx(0.75)
    assert metrics.cpt(curve, 0.8, 0.75, 0.25) == pytest.approx(0.90)
    summary = metrics.summarize(curve, 0.75, 0.25, scale=100.0)
    assert summary["cpt20"] == pytest.approx(10.0)
    assert summary["cpt50"] == pytest.approx(75.0)
    assert summary["cpt80"] == pytest.approx(90.0)
    assert [p["strong_pct"] for p in summary["curve"]][:2] == [0.0, 25.0]


def test_cpt_is_routellm_interp_in_its_units_where_a_point_sits_on_the_target():
    """201 GSM8K-like prompts whose 80% target, 163/201, is exactly two curve points' accuracy:
    RouteLLM (accuracy in percent, `pct * (strong − weak) + weak`, np.interp) answers the flat
    stretch's right end; the first crossing said its left end, 10 points of calls less."""
    n = 201
    strong = np.zeros(n)
    weak = np.zeros(n)
    strong[:171], weak[:131] = 1.0, 1.0  # strong 171/201, weak 131/201: target 163/201
    quality = np.array([131, 140, 150, 155, 160, 163, 163, 166, 168, 170, 171]) / n
    share = np.linspace(0.0, 1.0, 11)
    curve = metrics.Curve(share, quality)
    s_pct, w_pct = 171 / n * 100, 131 / n * 100
    expected = np.interp(0.8 * (s_pct - w_pct) + w_pct, quality * 100, share * 100)
    summary = metrics.summarize(curve, strong.mean(), weak.mean(), scale=100.0)
    assert summary["cpt80"] == pytest.approx(expected) and expected == pytest.approx(60.0)
    bench = Benchmark("b", [f"q{i}" for i in range(n)], strong, weak)
    assert bench.quality_scale == 100.0
    assert Benchmark("m", ["a", "b"], np.array([9.0, 8.5]), np.array([7.0, 1.0])).quality_scale == 1


def test_cpt_is_nan_without_a_quality_gap():
    curve = metrics.threshold_curve(SCORES, np.ones(4), np.ones(4))
    assert all(np.isnan(metrics.cpt(curve, level, 1.0, 1.0)) for level in (0.2, 0.5, 0.8))
    assert np.isnan(metrics.summarize(curve, 1.0, 1.0)["cpt50"])


def test_extreme_thresholds_span_zero_and_all_strong_calls():
    # Two prompts tie at the maximum score 0.9. RouteLLM's last threshold (the maximum) uses
    # a strict '>', so no prompt goes strong there: the curve starts at (0, weak quality) even
    # though the ties at the maximum would go strong under '≥'.
    scores = np.array([0.9, 0.9, 0.1, 0.5])
    strong = np.array([1.0, 0.0, 1.0, 1.0])
    weak = np.array([0.0, 0.0, 0.0, 1.0])
    curve = metrics.threshold_curve(scores, strong, weak)
    assert curve.strong_share[0] == 0.0 and curve.quality[0] == pytest.approx(0.25)
    assert curve.strong_share[-1] == 1.0 and curve.quality[-1] == pytest.approx(0.75)
    # The 90% decile is 0.9 itself (position 2.7 in [.1, .5, .9, .9]): both ties go strong.
    assert curve.strong_share[1] == 0.5 and curve.quality[1] == pytest.approx(0.5)
    assert 0.25 not in curve.strong_share  # ties move together: no point splits them


def test_a_constant_router_scores_exactly_half():
    # All scores tie: only the endpoints exist, (0, weak) and (1, strong); the straight line
    # between them is the random router's expected curve, APGR 0.5 and CPT(x) = x.
    curve = metrics.threshold_curve(np.full(4, 0.3), STRONG, WEAK)
    assert set(curve.strong_share.tolist()) == {0.0, 1.0}
    assert metrics.apgr(curve, 0.75, 0.25) == pytest.approx(0.5)
    assert metrics.cpt(curve, 0.5, 0.75, 0.25) == pytest.approx(0.5)


def test_cpt_takes_the_first_crossing_when_the_curve_dips():
    # Quality overshoots then falls; RouteLLM's np.interp(target, quality, share) needs a
    # rising quality. Walking the curve, target 0.4 is crossed in the first segment at 0.2.
    curve = metrics.Curve(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.8]))
    assert metrics.cpt(curve, 0.5, 0.8, 0.0) == pytest.approx(0.2)
    assert metrics.cpt(curve, 0.8, 0.8, 0.0) == pytest.approx(0.32)


def test_apgr_is_nan_without_a_quality_gap():
    curve = metrics.threshold_curve(SCORES, np.ones(4), np.ones(4))
    assert np.isnan(metrics.apgr(curve, 1.0, 1.0))


def test_optimal_curve_spends_strong_calls_on_gains_first():
    # Gains strong − weak: [1, 0, 0, 1]: two prompts to win. Quality (weak sum 1 + gains) / 4
    # rises 0.25 → 0.75 over the first half of calls, then stays at 0.75.
    curve = metrics.optimal_curve(STRONG, WEAK)
    np.testing.assert_allclose(curve.strong_share, np.linspace(0, 1, 11))
    np.testing.assert_allclose(curve.quality, [0.25, 0.35, 0.45, 0.55, 0.65] + [0.75] * 6)
    # AUC = .25 (triangle-and-rectangle over [0, .5]) + .375 over [.5, 1]: APGR 0.75.
    assert metrics.apgr(curve, 0.75, 0.25) == pytest.approx(0.75)


def test_optimal_curve_never_routes_a_losing_prompt_strong():
    # MT-Bench-like scores: strong wins by 2 on one question, loses by 1 on another, ties the
    # third. The oracle's best is weak everywhere but the first: (7+2 + 6 + 8)/3 = 23/3,
    # above the strong model's own mean 22/3, and it keeps it at 100% "strong" calls.
    strong, weak = np.array([9.0, 5.0, 8.0]), np.array([7.0, 6.0, 8.0])
    curve = metrics.optimal_curve(strong, weak, np.array([0.0, 1 / 3, 1.0]))
    np.testing.assert_allclose(curve.quality, [7.0, 23 / 3, 23 / 3])


def test_random_router_averages_ten_runs_near_half():
    rng = np.random.default_rng(12345)  # not 0-9: the random router's own seeds
    strong = (rng.random(2000) < 0.8).astype(float)
    weak = (rng.random(2000) < 0.6).astype(float)
    bench = Benchmark("synthetic", [f"p{i}" for i in range(2000)], strong, weak)
    curve, per_run = random_curve(bench)
    assert len(per_run) == 10 and len(set(per_run)) == 10  # ten different seeds
    assert curve.strong_share[0] == 0.0 and curve.strong_share[-1] == 1.0
    average = metrics.apgr(curve, bench.strong_quality, bench.weak_quality)
    assert average == pytest.approx(np.mean(per_run))  # APGR is linear in the curve
    assert abs(average - 0.5) < 0.05


def test_bootstrap_recomputes_apgr_on_the_same_resamples_for_every_router():
    rng = np.random.default_rng(7)
    strong = (rng.random(50) < 0.8).astype(float)
    weak = (rng.random(50) < 0.6).astype(float)
    scores = {"a": rng.random(50), "b": rng.random(50)}
    draws = metrics.bootstrap_apgr(scores, strong, weak, resamples=5, seed=3)
    by_hand = np.random.default_rng(3)
    for b in range(5):
        idx = by_hand.integers(0, 50, 50)
        for name in ("a", "b"):
            curve = metrics.threshold_curve(scores[name][idx], strong[idx], weak[idx])
            expected = metrics.apgr(curve, strong[idx].mean(), weak[idx].mean())
            assert draws[name][b] == pytest.approx(expected)


def test_bootstrap_spread_is_zero_when_every_prompt_gains_the_same():
    # The strong model always right, the weak always wrong: quality = share of strong calls,
    # AUC 0.5 and APGR exactly 0.5 for any router on any resample.
    strong, weak = np.ones(30), np.zeros(30)
    draws = metrics.bootstrap_apgr({"r": np.linspace(0, 1, 30)}, strong, weak, resamples=50)
    np.testing.assert_allclose(draws["r"], 0.5)
    result = metrics.spread(draws["r"])
    assert result["sd"] == pytest.approx(0.0, abs=1e-12)
    assert result["ci95"] == pytest.approx([0.5, 0.5])


def test_spread_leaves_out_resamples_without_a_gap():
    result = metrics.spread(np.array([np.nan, 1.0, 2.0, 3.0]))
    assert result["sd"] == pytest.approx(1.0)
    assert result["ci95"] == pytest.approx([1.05, 2.95])
    assert np.isnan(metrics.spread(np.array([np.nan, 1.0]))["sd"])


def test_bootstrap_sd_matches_the_spread_over_fresh_samples():
    # A population of 20,000 prompts whose strong-model gain rises with a noisy score; draw
    # 60 independent samples of 150 prompts: the SD of APGR across them is what the bootstrap
    # estimates from one sample at a time.
    rng = np.random.default_rng(11)
    n_pop, n = 20_000, 150
    score = rng.random(n_pop)
    weak = (rng.random(n_pop) < 0.7 - 0.3 * score).astype(float)
    strong = np.maximum(weak, (rng.random(n_pop) < 0.85).astype(float))
    observed, estimated = [], []
    for _ in range(60):
        idx = rng.choice(n_pop, n, replace=False)
        s, w, x = strong[idx], weak[idx], score[idx]
        observed.append(metrics.apgr(metrics.threshold_curve(x, s, w), s.mean(), w.mean()))
        draws = metrics.bootstrap_apgr({"r": x}, s, w, resamples=100, seed=len(observed))
        estimated.append(metrics.spread(draws["r"])["sd"])
    ratio = np.mean(estimated) / np.std(observed, ddof=1)
    assert 0.7 < ratio < 1.4
