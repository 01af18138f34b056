"""Shared setup for the examples: command-line flags, the models' endpoint and the router.

Every example runs offline by default: with no provider key in the environment and no
`--api-base`, it starts the bundled local OpenAI-compatible backend
(`routellm_lc.testing.LocalBackend`), whose replies say which model answered
("[strong] echo: ..."). With `OPENAI_API_KEY` (or another provider's key) set, the same example
calls your real models (`--strong` / `--weak`, LiteLLM model strings).

The router defaults to `mf` when its checkpoint is available; otherwise (and with
`--router keywords`) a tiny demo router scores prompts by keywords, so routes are predictable.

The threshold defaults to a calibrated one. A learned router's raw scores depend on the traffic
(the bundled `mf` leans on prompt length: most short prompts score below 0.1), so a fixed 0.5
means little; as RouteLLM recommends, the examples pick the threshold that sends a chosen share
of calls (50%) to the strong model on a sample of prompts, `SAMPLE_PROMPTS` below, with
`routellm_lc.calibrate.calibrate_threshold`. `--threshold` sets one instead. For your own
traffic, calibrate on hundreds or thousands of your prompts:
`routellm-lc calibrate --router mf --strong-pct 0.5 --prompts my_prompts.txt`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from routellm_lc.calibrate import calibrate_threshold
from routellm_lc.chat_model import shared_router
from routellm_lc.errors import RouteLLMError
from routellm_lc.routers.base import Router, register_router

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")

#: Everyday prompts, short and long, easy and hard, to calibrate the threshold on. 20 of them,
#: so that 10%, 30%, 50% or 90% of the sample is a whole number of prompts.
SAMPLE_PROMPTS = [
    "hi",
    "What time zone is Chicago in?",
    "How many ounces are in a cup?",
    'Translate "good morning" into Spanish.',
    "Write a haiku about autumn rain.",
    "Is it safe to eat eggs after the best-before date?",
    "What's a good side dish for grilled salmon?",
    "Solve for x: 3x + 7 = 22.",
    "Explain the difference between a list and a tuple in Python.",
    "Recommend three science fiction novels for someone who loved The Martian.",
    "Write a short cover letter for a junior data analyst position at a hospital.",
    "A ball is thrown upward at 20 m/s from a 45 m cliff. How long until it hits the ground "
    "below, and how fast is it moving then?",
    "Write a Python function that checks whether a string is a palindrome, ignoring case and "
    "punctuation, and include a few unit tests.",
    "My sourdough starter smells like nail polish remover and isn't rising much anymore. I feed "
    "it once a day with equal weights of flour and water. What's going wrong and how do I fix it?",
    "I have a job offer from a startup with a lower salary but 0.5% equity, and a stable offer "
    "from a large company that pays 20% more. Help me think through the trade-offs, including "
    "how to value the equity.",
    "Explain how public-key cryptography lets two people who have never met agree on a secret "
    "over an insecure channel, and why an eavesdropper can't work it out.",
    "Design a database schema for a library that tracks books, copies, members, loans and "
    "reservations, and explain how you would stop one copy being lent to two members at once.",
    "Our Kubernetes pods get OOMKilled under load although the memory limit is 2 GiB and the JVM "
    "heap is 1.5 GiB. What else could be using memory, and how would you investigate?",
    "Refactor this to async/await: fs.readFile('a.txt', (e, a) => { fs.readFile('b.txt', "
    "(e, b) => { console.log(a + b); }); });",
    "Compare the economic causes of the 2008 financial crisis with those of the Great "
    "Depression, and say which policy lessons carried over.",
]
#: The share of the sample sent to the strong model by the default (calibrated) threshold.
DEFAULT_STRONG_SHARE = 0.5


@register_router("keywords")
class KeywordRouter(Router):
    """Demo router: a high strong-win score for prompts that look hard (proofs, derivations,
    analysis), a low one otherwise. Deterministic, instant, no checkpoint."""

    HARD_WORDS = ("prove", "proof", "derive", "analy", "theorem", "optimi", "complexity")

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        def score(prompt: str) -> float:
            text = prompt.lower()
            hits = sum(word in text for word in self.HARD_WORDS)
            return min(0.2 + 0.4 * hits, 0.95)

        return np.array([score(p) for p in prompts], dtype=np.float64)


def default_router() -> str:
    """`mf` when its bundled checkpoint loads, else the keyword demo router."""
    try:
        shared_router("mf")
    except (RouteLLMError, OSError) as exc:
        print(f"(mf router unavailable: {exc}; using the 'keywords' demo router)", file=sys.stderr)
        return "keywords"
    return "mf"


def threshold_for(router: str, strong_pct: float) -> float:
    """The threshold that sends `strong_pct` of `SAMPLE_PROMPTS` to the strong model
    (RouteLLM's calibration: the (1 − strong_pct) quantile of the router's scores there).

    The keywords demo router's scores are set by hand (0.2 / 0.6 / 0.95), not learned, so
    there is nothing to calibrate: it uses 1 − strong_pct (0.5 for 50%)."""
    if router == "keywords":
        threshold = round(1 - strong_pct, 2)
        print(
            f"(threshold {threshold:.3f} = 1 - {strong_pct:.0%}: keywords demo router)",
            file=sys.stderr,
        )
        return threshold
    threshold = calibrate_threshold(shared_router(router), SAMPLE_PROMPTS, strong_pct)
    print(
        f"(threshold {threshold:.3f}: sends {strong_pct:.0%} of the "
        f"{len(SAMPLE_PROMPTS)} sample prompts to the strong model)",
        file=sys.stderr,
    )
    return threshold


def parser(description: str, *, threshold: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--router", default=None, help="mf (default when available), keywords, …")
    if threshold:
        parser.add_argument(
            "--threshold",
            type=float,
            default=None,
            help="strong iff score ≥ this (default: calibrated to send "
            f"{DEFAULT_STRONG_SHARE:.0%} of the sample prompts to the strong model)",
        )
    parser.add_argument("--strong", default=None, help="strong model (LiteLLM string)")
    parser.add_argument("--weak", default=None, help="weak model (LiteLLM string)")
    parser.add_argument("--api-base", default=None, help="an OpenAI-compatible endpoint")
    parser.add_argument("--api-key", default=None, help="key for --api-base")
    parser.add_argument(
        "--local", action="store_true", help="use the bundled local backend even with keys set"
    )
    return parser


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    namespace_parser: argparse.ArgumentParser | None = None,
) -> argparse.Namespace:
    """Parse the common flags (or `namespace_parser`'s, an extended `parser(...)`); resolve the
    default router and the default, calibrated, threshold."""
    args = (namespace_parser or parser(description)).parse_args(argv)
    args.router = args.router or default_router()
    if getattr(args, "threshold", 0.0) is None:
        args.threshold = threshold_for(args.router, DEFAULT_STRONG_SHARE)
    return args


@contextmanager
def models(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """`RouteLLMChat` keyword arguments for the strong/weak models and their endpoint."""
    if args.api_base or (not args.local and any(os.environ.get(k) for k in PROVIDER_KEYS)):
        chosen = {"api_base": args.api_base, "api_key": args.api_key}
        chosen.update({k: v for k, v in (("strong", args.strong), ("weak", args.weak)) if v})
        yield chosen
        return
    from routellm_lc.testing import LocalBackend

    with LocalBackend() as backend:
        print(f"(no provider key: using the local backend at {backend.base_url})", file=sys.stderr)
        yield {
            "strong": args.strong or "openai/strong",
            "weak": args.weak or "openai/weak",
            "api_base": backend.base_url,
            "api_key": "local",
            "timeout": 10,
            "max_retries": 0,
        }


def flush_traces() -> None:
    """Send pending LangSmith traces before the process exits (no-op when tracing is off)."""
    from langchain_core.tracers.langchain import wait_for_all_tracers

    wait_for_all_tracers()
