"""Cheap prompt features that can be appended to a prompt embedding.

Each feature is a vectorised function of a batch of prompts; checkpoints name the features they
use (config `features`) so a checkpoint always scores with exactly what it was trained on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import numpy as np

FeatureFn = Callable[[Sequence[str]], np.ndarray]

FEATURES: dict[str, FeatureFn] = {}

_DIGIT = re.compile(r"\d")
_CODE = re.compile(r"```|def |class |function |#include|\{\s*$|;\s*$", re.MULTILINE)
_MATH = re.compile(r"[=+\-*/^]|\\frac|\\sqrt|\$")


def feature(name: str) -> Callable[[FeatureFn], FeatureFn]:
    def register(fn: FeatureFn) -> FeatureFn:
        FEATURES[name] = fn
        return fn

    return register


@feature("log_chars")
def log_chars(prompts: Sequence[str]) -> np.ndarray:
    return np.log1p(np.array([len(p) for p in prompts], dtype=np.float64))


@feature("log_words")
def log_words(prompts: Sequence[str]) -> np.ndarray:
    return np.log1p(np.array([len(p.split()) for p in prompts], dtype=np.float64))


@feature("log_lines")
def log_lines(prompts: Sequence[str]) -> np.ndarray:
    return np.log1p(np.array([p.count("\n") for p in prompts], dtype=np.float64))


@feature("digit_frac")
def digit_frac(prompts: Sequence[str]) -> np.ndarray:
    return np.array([_digits(p) / max(len(p), 1) for p in prompts], dtype=np.float64)


def _digits(prompt: str) -> int:
    """How many characters `\\d` matches (Unicode digits): counted per ASCII digit when the
    prompt is ASCII, much faster on long prompts."""
    if prompt.isascii():
        return sum(map(prompt.count, "0123456789"))
    return len(_DIGIT.findall(prompt))


@feature("math_symbol_frac")
def math_symbol_frac(prompts: Sequence[str]) -> np.ndarray:
    return np.array([_math_symbols(p) / max(len(p), 1) for p in prompts], dtype=np.float64)


def _math_symbols(prompt: str) -> int:
    """How many times `_MATH` matches: its alternatives never overlap, so counted each."""
    return sum(map(prompt.count, "=+-*/^$")) + prompt.count("\\frac") + prompt.count("\\sqrt")


@feature("has_code")
def has_code(prompts: Sequence[str]) -> np.ndarray:
    return np.array([1.0 if _CODE.search(p) else 0.0 for p in prompts], dtype=np.float64)


@feature("question_marks")
def question_marks(prompts: Sequence[str]) -> np.ndarray:
    return np.log1p(np.array([p.count("?") for p in prompts], dtype=np.float64))


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_CHOICE_LINE = re.compile(r"^\s*\(?[A-Ja-j][.)]\s", re.MULTILINE)


@feature("log_numbers")
def log_numbers(prompts: Sequence[str]) -> np.ndarray:
    """How many numbers the prompt states: a proxy for the steps a word problem needs."""
    return np.log1p(np.array([_numbers(p)[0] for p in prompts], dtype=np.float64))


@functools.lru_cache(maxsize=4)  # a few prompts: they may be megabytes long
def _numbers(prompt: str) -> tuple[int, int]:
    """How many numbers the prompt states, and the longest one's length (0 without): one
    pass for `log_numbers` and `max_number_digits`, which score the same prompts."""
    lengths = [len(n) for n in _NUMBER.findall(prompt)]
    return len(lengths), max(lengths, default=0)


@feature("log_sentences")
def log_sentences(prompts: Sequence[str]) -> np.ndarray:
    return np.log1p(np.array([len(_SENTENCE_END.findall(p)) for p in prompts], dtype=np.float64))


@feature("log_choice_lines")
def log_choice_lines(prompts: Sequence[str]) -> np.ndarray:
    """Lines that look like multiple-choice options (`A. …`, `(b) …`)."""
    return np.log1p(np.array([len(_CHOICE_LINE.findall(p)) for p in prompts], dtype=np.float64))


@feature("max_number_digits")
def max_number_digits(prompts: Sequence[str]) -> np.ndarray:
    """Digits of the longest number in the prompt (0 without numbers)."""
    return np.array([_numbers(p)[1] for p in prompts], dtype=np.float64)


def compute_features(names: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
    """(n, len(names)) raw feature matrix, in the order `names` lists them."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise KeyError(f"Unknown prompt feature(s) {unknown}; known: {sorted(FEATURES)}")
    if not names:
        return np.zeros((len(prompts), 0), dtype=np.float64)
    return np.stack([FEATURES[n](prompts) for n in names], axis=1)
