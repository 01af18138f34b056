"""RouteLLM's routing metrics: the threshold curve, AUC, APGR, CPT and the optimal curve.

Definitions follow RouteLLM's `routellm/evals/benchmarks.py` and `evaluate.py`:

- **Curve.** Thresholds are the 11 decile edges of the router's scores (min, 10%, ..., max:
  `pd.qcut(scores, 10, retbins=True)`, i.e. linear-interpolation quantiles; duplicate edges
  are kept, where RouteLLM's `qcut` would raise). At each edge the prompts scoring ≥ it go to
  the strong model, except at the last edge (the maximum) where RouteLLM uses a strict `>`:
  nothing scores above the maximum, so that point is always (0 strong calls, weak quality).
  The first edge (the minimum) sends everything strong: (1, strong quality). The curve
  therefore always spans [0, 1]; no point is added or extrapolated.
- **AUC** = trapezoid of quality over the *fraction* of strong calls, points sorted by it.
- **APGR** = (AUC − weak) / (strong − weak) (random ≈ 0.5, the oracle well above).
- **CPT(x)** = the strong-call share at which quality reaches weak + x·(strong − weak):
  RouteLLM's `np.interp(target, quality, share)` over the points in order of strong share,
  computed in RouteLLM's units (accuracies in percent, as its `sum / len * 100`; judge points
  for MT-Bench) so that a point exactly at the target compares as it does there. On a flat
  stretch exactly at the target that is the stretch's *last* point, as `np.interp` answers.
  `np.interp` assumes quality never falls along the curve; where a router's curve dips, its
  answer is undefined, and CPT is the first crossing (linear inside the crossing segment).
  NaN when the curve never reaches the target, or when strong and weak have the same quality
  (as APGR).
- Threshold edges are numpy's exact linear-interpolation quantiles. pandas' `qcut` computes the
  same edges, but through `np.percentile(q * 100)` (pandas 2) or quantiles nudged up by one
  unit in the last place (pandas 3), so where an edge falls exactly on a score RouteLLM's own
  edges differ by 1e-16 between pandas versions, and one prompt there can route either way;
  never on the built-in benchmarks' full prompt counts (72, 1,307, 14,037).
- **Bootstrap** (ours, not RouteLLM's): APGR recomputed on resamples of the prompts drawn with
  replacement, every router on the same resamples, so differences between routers are paired.
  The standard deviation and the 2.5–97.5% percentiles say how much an APGR would move on
  another draw of prompts like these (on MT-Bench's 72 prompts, about ±0.05).
- **Optimal curve**: an oracle that spends its strong calls on the prompts where the strong
  model beats the weak one, largest gain first; once those run out, extra strong calls gain
  nothing. Evaluated at 0, 10, ..., 100% strong calls (RouteLLM's grid), linear between whole
  prompt counts: exactly RouteLLM's MMLU/GSM8K formula (`weak_correct + min(strong_calls,
  n_strong_only)`), and for MT-Bench its ranked score differences without flooring the call
  count to an integer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

N_BINS = 10
CPT_LEVELS = (0.2, 0.5, 0.8)


@dataclass(frozen=True)
class Curve:
    """Quality against the fraction of calls sent to the strong model, sorted by that fraction."""

    strong_share: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray | None = None

    def points(self) -> list[dict[str, float]]:
        """JSON-ready points; `strong_pct` in percent, as RouteLLM reports it."""
        rows = []
        for i, (share, quality) in enumerate(zip(self.strong_share, self.quality, strict=True)):
            row = {"strong_pct": round(float(share) * 100, 9), "quality": float(quality)}
            if self.thresholds is not None:
                row["threshold"] = float(self.thresholds[i])
            rows.append(row)
        return rows


def threshold_curve(
    scores: np.ndarray, strong: np.ndarray, weak: np.ndarray, n_bins: int = N_BINS
) -> Curve:
    """RouteLLM's curve: one point per decile edge of `scores` (see the module docstring);
    `n_bins` is RouteLLM's `--num-results` (n_bins + 1 edges)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number of at least 1, got {n_bins!r}")
    scores = np.asarray(scores, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    if not (scores.shape == strong.shape == weak.shape) or scores.ndim != 1 or not len(scores):
        raise ValueError("scores, strong and weak must be 1-D arrays of the same, non-zero length")
    thresholds = np.quantile(scores, np.linspace(0.0, 1.0, n_bins + 1))
    to_strong = scores[None, :] >= thresholds[:, None]
    to_strong[-1] = scores > thresholds[-1]
    share = to_strong.mean(axis=1)
    quality = np.where(to_strong, strong[None, :], weak[None, :]).mean(axis=1)
    # By strong share; equal shares (tied scores) listed from the highest threshold down.
    order = np.lexsort((-thresholds, share))
    return Curve(share[order], quality[order], thresholds[order])


def auc(curve: Curve) -> float:
    """Area under quality over the fraction of strong calls (trapezoid rule)."""
    return float(np.trapezoid(curve.quality, curve.strong_share))


def apgr(curve: Curve, strong_quality: float, weak_quality: float) -> float:
    """Average performance gap recovered: (AUC − weak) / (strong − weak); NaN if no gap."""
    gap = strong_quality - weak_quality
    if gap == 0:
        return float("nan")
    return (auc(curve) - weak_quality) / gap


def cpt(
    curve: Curve, level: float, strong_quality: float, weak_quality: float, scale: float = 1.0
) -> float:
    """Fraction of strong calls needed to reach weak + level·(strong − weak) quality.

    RouteLLM's `np.interp(target, quality, share)` where quality never falls along the curve;
    on a dipping curve the first point where quality reaches the target, interpolated linearly
    inside the segment that crosses it. NaN if the curve never reaches it or there is no
    quality gap. `scale` puts quality in RouteLLM's units first (100: accuracy in percent).
    """
    if strong_quality == weak_quality:
        return float("nan")  # no gap: every share "reaches" it (APGR is NaN too)
    strong, weak = strong_quality * scale, weak_quality * scale
    target = level * (strong - weak) + weak  # RouteLLM's own expression, in its units
    share, quality = curve.strong_share, curve.quality * scale
    if not quality.max() >= target:
        return float("nan")
    if np.all(np.diff(quality) >= 0):
        return float(np.interp(target, quality, share))
    reached = np.flatnonzero(quality >= target)
    if not len(reached):
        return float("nan")
    i = int(reached[0])
    if i == 0:
        return float(share[0])
    q0, q1 = quality[i - 1], quality[i]
    s0, s1 = share[i - 1], share[i]
    return float(s0 + (target - q0) / (q1 - q0) * (s1 - s0))


def optimal_curve(strong: np.ndarray, weak: np.ndarray, shares: np.ndarray | None = None) -> Curve:
    """The oracle's quality at each strong-call share (default: 0, 0.1, ..., 1)."""
    strong = np.asarray(strong, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    if shares is None:
        shares = np.linspace(0.0, 1.0, N_BINS + 1)
    shares = np.asarray(shares, dtype=np.float64)
    n = len(strong)
    gains = np.sort(np.clip(strong - weak, 0.0, None))[::-1]
    total_at_k = weak.sum() + np.concatenate([[0.0], np.cumsum(gains)])
    quality = np.interp(shares * n, np.arange(n + 1), total_at_k) / n
    return Curve(shares, quality)


def summarize(
    curve: Curve, strong_quality: float, weak_quality: float, scale: float = 1.0
) -> dict[str, object]:
    """APGR, AUC, CPT(20/50/80%) in percent of calls, and the curve's points. `scale`: see
    `cpt` (RouteLLM's units for quality; the figures written stay on the benchmark's scale)."""
    result: dict[str, object] = {
        "apgr": apgr(curve, strong_quality, weak_quality),
        "auc": auc(curve),
    }
    for level in CPT_LEVELS:
        share = cpt(curve, level, strong_quality, weak_quality, scale)
        result[f"cpt{round(level * 100)}"] = share * 100
    result["curve"] = curve.points()
    return result


def mean_curve(curves: list[Curve]) -> Curve:
    """Pointwise mean of curves with the same number of points (the random router's runs)."""
    return Curve(
        np.mean([c.strong_share for c in curves], axis=0),
        np.mean([c.quality for c in curves], axis=0),
        None,
    )


def bootstrap_apgr(
    scores: Mapping[str, np.ndarray],
    strong: np.ndarray,
    weak: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    n_bins: int = N_BINS,
) -> dict[str, np.ndarray]:
    """Each router's APGR on the same `resamples` bootstrap resamples of the prompts (indices
    drawn with replacement from `np.random.default_rng(seed)`); NaN where a resample has no
    quality gap."""
    strong = np.asarray(strong, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    n = len(strong)
    rng = np.random.default_rng(seed)
    out = {name: np.empty(resamples) for name in arrays}
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        s, w = strong[idx], weak[idx]
        strong_q, weak_q = s.mean(), w.mean()
        for name, values in arrays.items():
            out[name][b] = apgr(threshold_curve(values[idx], s, w, n_bins), strong_q, weak_q)
    return out


def spread(values: np.ndarray) -> dict[str, object]:
    """Standard deviation and 95% percentile interval of bootstrap values (NaNs left out)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 2:
        return {"sd": float("nan"), "ci95": [float("nan"), float("nan")]}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"sd": float(finite.std(ddof=1)), "ci95": [float(low), float(high)]}
