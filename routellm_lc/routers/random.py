"""The `random` router: a uniform score per prompt, RouteLLM's baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routellm_lc.routers.base import Router, register_router


@register_router("random")
class RandomRouter(Router):
    """Scores every prompt with an independent uniform draw from [0, 1).

    With threshold t it sends about (1 − t) of calls to the strong model, whatever the prompt.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return self._rng.random(len(prompts))
