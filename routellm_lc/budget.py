"""Online threshold control: hold a target share of strong-model calls as traffic drifts.

RouteLLM's thresholds are calibrated once, offline, on a public sample; real traffic drifts
(a new feature ships, users ask harder questions) and the strong share drifts with it. The
controller keeps a window of recent router scores and sets the threshold to the score quantile
that would have sent `target_strong_share` of that window to the strong model — the same
calibration rule as `routellm-lc calibrate`, applied continuously to live traffic.

Its state (the window and the count of scores seen) can be saved and restored, so a service
restart neither forgets the traffic it adapted to nor warms up again: `state().to_dict()` is
JSON, `load_state(...)` takes it back. Pickling or deep-copying a controller copies it too: the
copy adapts on its own from then on. Routers that should hold one share together must share
the same object (a shallow `model_copy()`, `bind_tools` or `with_config` keeps it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from routellm_lc.decision import validate_threshold


@dataclass
class ControllerState:
    """A snapshot of a controller: what it routes at, and what `load_state` restores."""

    threshold: float
    observed: int
    """Scores seen, those of a state it was loaded from included."""
    strong_share_window: float
    """Share of the window's scores at or above `threshold`."""
    scores: list[float] = field(default_factory=list, repr=False)
    """The window, oldest first: the scores the threshold is the quantile of."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, to persist across restarts (`StrongShareController.load_state`)."""
        return asdict(self)


class StrongShareController:
    """Adapts the cost threshold online so ≈ `target_strong_share` of calls go strong.

    Args:
        target_strong_share: wanted share of strong-model calls, strictly between 0 and 1
            (as `routellm-lc calibrate`): 0 and 1 need no controller (see below).
        initial_threshold: used until `warmup` scores have been seen (e.g. from calibration).
        window: how many recent scores the quantile is taken over.
        warmup: scores needed before the controller takes over from `initial_threshold`.

    A share of 0 or 1 is refused rather than approximated: no threshold sends nothing strong
    (1.0, the highest, still sends scores of exactly 1.0), and until warm-up the controller
    would route at `initial_threshold`. Answer with the weak (or strong) model itself instead.
    """

    def __init__(
        self,
        target_strong_share: float,
        *,
        initial_threshold: float = 0.5,
        window: int = 1000,
        warmup: int = 50,
    ) -> None:
        share = float(target_strong_share)
        if not 0.0 < share < 1.0:  # also rejects NaN
            raise ValueError(
                f"target_strong_share must be strictly between 0 and 1, got "
                f"{target_strong_share!r}. A share of 0 or 1 needs no router: call the weak "
                "(or the strong) model directly."
            )
        if window < 1 or warmup < 1:
            raise ValueError("window and warmup must be positive")
        self.target_strong_share = share
        self.initial_threshold = validate_threshold(initial_threshold)
        self.window = window
        self.warmup = min(warmup, window)
        self._scores: deque[float] = deque(maxlen=window)
        self._observed = 0
        self._threshold = self.initial_threshold
        self._lock = threading.Lock()

    def threshold(self) -> float:
        """The threshold to use for the next decision."""
        return self._threshold

    def observe(self, scores: np.ndarray | list[float]) -> float:
        """Record router scores of calls just routed; returns the updated threshold."""
        with self._lock:
            self._observed += int(np.size(scores))
            return self._record(np.atleast_1d(scores))

    def route_in_order(self, scores: Sequence[float]) -> list[float]:
        """The threshold in force for each of these calls' scores, in order, each score
        observed after its call's threshold is read (as one lock hold): a batch is routed as
        its calls would be one by one, not all at the threshold fitted to its end."""
        in_force = []
        with self._lock:
            for score in scores:
                in_force.append(self._threshold)
                self._observed += 1
                self._record([score])
        return in_force

    def _record(self, scores: np.ndarray | list[float]) -> float:
        """Add scores to the window and move the threshold (the caller holds the lock)."""
        self._scores.extend(float(s) for s in scores)
        if len(self._scores) >= self.warmup:
            self._threshold = _threshold_for_share(
                np.fromiter(self._scores, float), self.target_strong_share
            )
        return self._threshold

    def state(self) -> ControllerState:
        """The threshold, the count of scores seen and the score window (`load_state` takes
        it back)."""
        with self._lock:
            window = np.fromiter(self._scores, float)
            share = float(np.mean(window >= self._threshold)) if window.size else 0.0
            return ControllerState(self._threshold, self._observed, share, window.tolist())

    def load_state(self, state: ControllerState | Mapping[str, Any]) -> None:
        """Resume from a saved `state()` (or its `to_dict()`), e.g. after a restart.

        The window is restored (its newest `window` scores, if it holds more) and the threshold
        follows from it under this controller's settings, as if the scores had been observed
        here: a changed target takes effect at once, and a window shorter than `warmup` keeps
        `initial_threshold` until it fills.
        """
        data = asdict(state) if isinstance(state, ControllerState) else state
        scores = np.asarray(data.get("scores", []), dtype=float).reshape(-1)
        if not np.all((scores >= 0.0) & (scores <= 1.0)):  # also rejects NaN
            raise ValueError("a saved controller window holds scores in [0, 1] only")
        observed = data.get("observed", scores.size)
        if isinstance(observed, float) and observed.is_integer():  # not inf or NaN
            observed = int(observed)
        if isinstance(observed, bool) or not isinstance(observed, int | np.integer):
            raise ValueError(f"observed must be a whole number of scores, got {observed!r}")
        observed = int(observed)
        if observed < scores.size:
            raise ValueError(
                f"observed ({observed}) cannot be less than the saved window ({scores.size})"
            )
        with self._lock:
            self._scores.clear()
            self._threshold = self.initial_threshold
            self._observed = observed
            self._record(scores)

    # A lock cannot be pickled or deep-copied: a copy gets a fresh one (and its own window).
    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = {**self.__dict__, "_scores": deque(self._scores, maxlen=self.window)}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The window score t whose share mean(scores ≥ t) is closest to `share` (on a tie, the
    higher t: fewer strong calls). With distinct scores this is RouteLLM's calibration
    quantile within one score; with tied scores the interpolated quantile could land on a
    tied value and send all of it strong (a 20% target held 45% when most scores were equal)."""
    values, counts = np.unique(scores, return_counts=True)  # ascending
    at_or_above = np.cumsum(counts[::-1])[::-1] / scores.size
    distance = np.abs(at_or_above - share)
    best = len(values) - 1 - int(np.argmin(distance[::-1]))  # the highest of equally close
    return float(np.clip(values[best], 0.0, 1.0))
