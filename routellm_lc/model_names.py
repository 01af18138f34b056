"""Model names as LiteLLM spells them, from LangChain's `init_chat_model` spelling too.

Kept apart from `models` (which imports LangChain) so that `costs` and the server's
accounting can normalise names without importing anything heavy.
"""

from __future__ import annotations

#: LangChain's `init_chat_model("provider:model")` provider names → LiteLLM's prefixes, so
#: `strong="openai:gpt-4o"` means what a LangChain user means by it (`openai/gpt-4o`).
LANGCHAIN_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure_openai": "azure",
    "azure_ai": "azure_ai",
    "google_genai": "gemini",
    "google_vertexai": "vertex_ai",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "cohere": "cohere",
    "fireworks": "fireworks_ai",
    "together": "together_ai",
    "mistralai": "mistral",
    "huggingface": "huggingface",
    "groq": "groq",
    "ollama": "ollama",
    "deepseek": "deepseek",
    "xai": "xai",
    "perplexity": "perplexity",
}


def litellm_model_string(model: str) -> str:
    """`model` as LiteLLM spells it: LangChain's `provider:model` (`openai:gpt-4o`,
    `ollama:llama3:8b`) becomes `provider/model` for the providers both know; anything else
    (`openai/gpt-4o`, a Bedrock id ending in `:0`) is returned as it is."""
    provider, sep, name = model.partition(":")
    if sep and name and provider in LANGCHAIN_PROVIDERS:
        return f"{LANGCHAIN_PROVIDERS[provider]}/{name}"
    return model
