"""The cheap prompt features `mf` checkpoints append to the embedding: counted fast on long
prompts, and still exactly what their definitions (the regexes the checkpoints were trained
with) give."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from routellm_lc.routers.features import FEATURES, compute_features

DIGIT = re.compile(r"\d")
MATH = re.compile(r"[=+\-*/^]|\\frac|\\sqrt|\$")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _reference(prompt: str) -> dict[str, float]:
    numbers = [len(n) for n in NUMBER.findall(prompt)]
    return {
        "digit_frac": len(DIGIT.findall(prompt)) / max(len(prompt), 1),
        "math_symbol_frac": len(MATH.findall(prompt)) / max(len(prompt), 1),
        "log_numbers": float(np.log1p(len(numbers))),
        "max_number_digits": float(max(numbers, default=0)),
    }


def _prompts() -> list[str]:
    rng = random.Random(0)
    pieces = ["12", "3.5", "1,000.25", "..", ",", "٣٤", "x", " ", "\\frac{1}{2}", "\\sqrt", "$"]
    pieces += ["=", "+", "-", "*", "/", "^", "a\\", "frac", "数", "😀", "\n", "?", "1.", ".2"]
    prompts = ["", "no digits", "x = 2 + 3", "١٢٣ and 456"]
    prompts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    return prompts


@pytest.mark.parametrize(
    "name", ["digit_frac", "math_symbol_frac", "log_numbers", "max_number_digits"]
)
def test_features_are_their_regex_definitions(name):
    prompts = _prompts()
    expected = [_reference(p)[name] for p in prompts]
    np.testing.assert_array_equal(FEATURES[name](prompts), expected)


def test_features_of_a_batch_are_each_prompts_own():
    """The number counts are shared between two features through a small cache: a batch
    larger than the cache still gives each prompt its own figures, in order."""
    prompts = _prompts()
    batch = compute_features(list(FEATURES), prompts)
    one_by_one = np.vstack([compute_features(list(FEATURES), [p]) for p in prompts])
    np.testing.assert_array_equal(batch, one_by_one)
