"""Model-name normalisation and strong/weak tiers, in one place.

Sources spell the same model differently (`gpt4_1106_preview`, `gpt-4-1106-preview`,
`mistralai/Mixtral-8x7B-Instruct-v0.1`, `Mixtral-8x7B-Instruct-v0.1_5shots`,
`gpt-4(2023-06)`…). `canonical` maps them to one lower-case name; `tier` says whether a model
belongs to the strong tier (GPT-4 class) or the weak tier (Mixtral / GPT-3.5 / small models),
as defined in the data README's second probe.
"""

from __future__ import annotations

import re
from typing import Literal

Tier = Literal["strong", "weak"]

#: The evaluation pair, canonical spelling (RouteLLM: gpt-4-1106-preview vs Mixtral-8x7B).
STRONG_MODEL = "gpt-4-1106-preview"
WEAK_MODEL = "mixtral-8x7b-instruct-v0.1"
#: The two model identities the bundled recipes' routers score (one per tier).
STRONG_TIER = "strong-tier"
WEAK_TIER = "weak-tier"

# Run/provider decorations that say how a model was run, not which model it is:
# MMLU-Pro run suffixes, provider tags (`@sambanova`), annotations in brackets, `-hf`.
_DECORATIONS = re.compile(
    r"(_5shots|_cot_promptstudy|_api-[\w-]+|_run_\w+|_merged|@[\w.-]+|\s*\(.*?\)|-hf)$",
    re.IGNORECASE,
)
_ALIASES = {
    "gpt4": "gpt-4",
    "gpt35-turbo-instruct": "gpt-3.5-turbo-instruct",
    "chatgpt": "gpt-3.5-turbo",
    "claude": "claude-1",  # AlpacaEval's 2023 "claude" entry
    "claude-v1": "claude-1",
    "claude-instant-v1": "claude-instant-1",
    "llama-3.1-405b-inst": "meta-llama-3.1-405b-instruct",
}


def canonical(name: str) -> str:
    """One lower-case spelling per model: `mistralai/Mixtral-8x7B-Instruct-v0.1` →
    `mixtral-8x7b-instruct-v0.1`, `gpt4_1106_preview` → `gpt-4-1106-preview`,
    `Meta-Llama-3_1-70B-Instruct_5shots` → `meta-llama-3.1-70b-instruct`."""
    text = name.strip().split("/")[-1]
    previous = None
    while previous != text:  # decorations can stack: `Mistral-7B-v0.2-hf_5shots`
        previous = text
        text = _DECORATIONS.sub("", text).strip()
    text = text.lower()
    text = re.sub(r"llama-3_(\d)", r"llama-3.\1", text)
    if text.startswith(("gpt4", "gpt35", "text_davinci", "gpt-4", "gpt-3")):
        text = text.replace("_", "-")  # AlpacaEval spells OpenAI models with underscores
        text = re.sub(r"^gpt-?4(?=-|$)", "gpt-4", text)
    text = re.sub(r"_(concise|verbose)$", r"-\1", text)
    return _ALIASES.get(text, text)


_STRONG = re.compile(
    r"^(gpt-4(-\d{4}|-1106-preview|-turbo[\w-]*|o(-20\d\d-\d\d-\d\d)?)?"
    r"|chatgpt-4o[\w-]*|gemini-1\.5-pro[\w-]*|meta-llama-3\.1-70b-instruct"
    r"|claude-3-opus[\w-]*|claude-3[-.]5-sonnet[\w-]*)$"
)
_WEAK_FAMILIES = re.compile(
    r"^(mixtral-8x7b[\w.-]*|gpt-3\.5-turbo[\w.-]*|llama-2-[\w.-]+|phi-2[\w-]*|phi-3(\.5)?-mini[\w.-]*"
    r"|openchat[_-]3\.5[\w.-]*)$"
)
# "7-13B models": the parameter count written in the name, e.g. `qwen2-7b-instruct`.
_SIZE = re.compile(r"(?:^|[-_])(\d+(?:\.\d+)?)b(?:$|[-_])")


def _base(model: str) -> str:
    return re.sub(r"-(concise|verbose)$", "", model)


def tier(name: str) -> Tier | None:
    """ "strong", "weak", or None (a model in neither tier) for a raw or canonical name.

    Strong: the GPT-4 family (incl. GPT-4-Turbo and GPT-4o, not 4o-mini), Gemini-1.5-Pro,
    Llama-3.1-70B-Instruct, Claude-3 Opus / 3.5 Sonnet. Weak: Mixtral-8x7B, GPT-3.5-Turbo,
    Llama-2, and models of at most 13B parameters.
    """
    model = _base(canonical(name))
    if _STRONG.match(model):
        return "strong"
    if _WEAK_FAMILIES.match(model):
        return "weak"
    size = _SIZE.search(model)
    if size and float(size.group(1)) <= 13:
        return "weak"
    return None
