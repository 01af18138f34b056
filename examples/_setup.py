"""Shared setup for the examples: command-line flags, the models' endpoint and the router.

Every example runs offline by default: with no provider key in the environment and no
`--api-base`, it starts the bundled local OpenAI-compatible backend
(`routellm_lc.testing.LocalBackend`), whose replies say which model answered
("[strong] echo: ..."). With `OPENAI_API_KEY` (or another provider's key) set, the same example
calls your real models (`--strong` / `--weak`, LiteLLM model strings).

The router defaults to `mf` when its checkpoint is available; otherwise (and with
`--router keywords`) a tiny demo router scores prompts by keywords, so routes are predictable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from routellm_lc.errors import RouteLLMError
from routellm_lc.routers.base import Router, register_router

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")


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
    from routellm_lc.chat_model import shared_router

    try:
        shared_router("mf")
    except (RouteLLMError, OSError) as exc:
        print(f"(mf router unavailable: {exc}; using the 'keywords' demo router)", file=sys.stderr)
        return "keywords"
    return "mf"


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--router", default=None, help="mf (default when available), keywords, …")
    parser.add_argument("--threshold", type=float, default=0.5, help="strong iff score ≥ this")
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
    """Parse the common flags (or `namespace_parser`'s, an extended `parser(...)`)."""
    args = (namespace_parser or parser(description)).parse_args(argv)
    args.router = args.router or default_router()
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
