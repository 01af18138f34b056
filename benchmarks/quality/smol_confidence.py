"""Research features (router-research round 19): SmolLM2-135M-Instruct's own confidence.

The data README lists "difficulty features from a small local language model's own confidence
on the prompt" as an idea not yet tried. One forward pass of the whole model (all 30 layers)
over the prompt in SmolLM2's chat format, ending where the assistant's answer begins:

- `nll`: mean next-token loss (nats) over the prompt's own tokens: how surprising the question
  is to the model;
- `entropy`: entropy (nats) of the next-token distribution at the start of the answer: how
  unsure the model is of how to begin answering;
- `top1`: that distribution's largest probability.

Prompts are cut at 192 tokens (as round 9). ~0.1 s per MMLU-length prompt on 2 CPU cores: a
research probe, far outside the default router's 5 ms budget. Used through
`cached_embeddings(texts, SmolConfidence())`, so values are cached on disk per text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from smol_embedder import MAX_TOKENS, load_smollm2

BATCH = 8
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
COLUMNS = ("nll", "entropy", "top1")


class SmolConfidence:
    name = "smollm2-135m-confidence-v1"
    dim = len(COLUMNS)

    def __init__(self) -> None:
        self.model = None  # loaded on the first `embed` (cached values need no model)

    def _load(self) -> None:
        import torch

        self.tok, self.model = load_smollm2()
        self.torch = torch
        encode = lambda s: self.tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.encode = encode
        self.prefix = encode(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
        self.suffix = encode("<|im_end|>\n<|im_start|>assistant\n")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.model is None:
            self._load()
        torch = self.torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bodies = [self.encode(t)[:MAX_TOKENS] or self.encode(" ") for t in texts]
        order = np.argsort([len(b) for b in bodies])
        pad = self.tok.pad_token_id
        with torch.inference_mode():
            for s in range(0, len(texts), BATCH):
                idx = order[s : s + BATCH]
                rows = [self.prefix + bodies[i] + self.suffix for i in idx]
                width = max(map(len, rows))
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, row in enumerate(rows):
                    ids[r, : len(row)] = torch.tensor(row)
                    mask[r, : len(row)] = 1
                logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits, -1)
                for r, i in enumerate(idx):
                    start, n = len(self.prefix), len(bodies[i])
                    # positions start-1 .. start+n-2 predict the prompt's own tokens
                    pred = logp[r, start - 1 : start + n - 1]
                    body = ids[r, start : start + n]
                    nll = -pred.gather(1, body[:, None]).mean()
                    last = logp[r, len(rows[r]) - 1]
                    entropy = -(last.exp() * last).sum()
                    out[i] = [float(nll), float(entropy), float(last.exp().max())]
        return out
