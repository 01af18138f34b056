"""Model-name normalisation and strong/weak tiers, in one place.

Sources spell the same model differently (`gpt4_1106_preview`, `gpt-4-1106-preview`,
`mistralai/Mixtral-8x7B-Instruct-v0.1`, `Mixtral-8x7B-Instruct-v0.1_5shots`,
`gpt-4(2023-06)`…). `canonical` maps them to one lower-case name; `tier` says whether a model
belongs to the strong tier (GPT-4 class) or the weak tier (Mixtral / GPT-3.5 class).
"""

from __future__ import annotations

import re
from typing import Literal

Tier = Literal["strong", "weak"]

_SUFFIXES = re.compile(
    r"(_5shots|_cot_promptstudy|_api-[\w-]+|_merged|@[\w.-]+|-hf$|\(.*?\)|\s+\(.*$)", re.IGNORECASE
)
_ALIASES = {
    "gpt4_1106_preview": "gpt-4-1106-preview",
    "gpt4": "gpt-4",
    "gpt4_0314": "gpt-4-0314",
    "gpt4_0613": "gpt-4-0613",
    "gpt-4o_api-2024-07_run_gpt4o": "gpt-4o",
    "text_davinci_003": "text-davinci-003",
    "text_davinci_001": "text-davinci-001",
    "chatgpt": "gpt-3.5-turbo",
    "meta-llama-3_1-70b-instruct": "meta-llama-3.1-70b-instruct",
    "meta-llama-3_1-8b-instruct": "meta-llama-3.1-8b-instruct",
}

# Strong tier: GPT-4-class models (the RouteLLM "strong" side). Weak tier: Mixtral-8x7B,
# GPT-3.5 and smaller open models (the "weak" side). Models in neither tier are left out of
# tier targets but still take part in pairwise battles.
_STRONG = re.compile(
    r"^(gpt-4(?!o-mini)|gpt4|chatgpt-4o|claude-3-opus|claude-3-5-sonnet|claude-3\.5-sonnet|"
    r"gemini-1\.5-pro|meta-llama-3\.1-70b-instruct|meta-llama-3\.1-405b|llama-3\.1-405b|"
    r"mistral-large|qwen2\.5-72b-instruct)",
)
_WEAK = re.compile(
    r"^(mixtral-8x7b-instruct|mistral-7b-instruct|gpt-3\.5-turbo|llama-2-\d+b|llama-13b|"
    r"vicuna|alpaca|oasst|text-davinci|code-davinci|meta-llama-3-8b|meta-llama-3\.1-8b|"
    r"gemma-(7b|2-2b|2-9b)|phi-3|qwen1\.5-7b|qwen2-7b|yi-6b|yi-1\.5-9b|starling|openchat|"
    r"claude-instant|claude-3-haiku|starchat)"
)


def canonical(name: str) -> str:
    """One lower-case spelling per model: `mistralai/Mixtral-8x7B-Instruct-v0.1` →
    `mixtral-8x7b-instruct-v0.1`, `gpt4_1106_preview` → `gpt-4-1106-preview`."""
    text = name.strip()
    lowered = text.lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    text = _SUFFIXES.sub("", text).strip()
    text = text.split("/")[-1].lower()
    return _ALIASES.get(text, text)


def tier(name: str) -> Tier | None:
    """ "strong", "weak", or None for a (canonical or raw) model name."""
    model = canonical(name)
    if _STRONG.match(model):
        return "strong"
    if _WEAK.match(model):
        return "weak"
    return None
