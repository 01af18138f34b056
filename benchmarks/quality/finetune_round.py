"""Round 18 of docs/router-research.md: the bundled MiniLM fine-tuned end to end on the
within-domain difficulty label (RouteLLM's `bert` method on R10's label), scored on the
leave-source-out criterion with the evaluation figures logged.

    .venv/bin/python benchmarks/quality/finetune_round.py [--data-dir DIR]

About 45 minutes on 2 CPU cores (four fine-tuning passes plus scoring ~60k prompts). Settings
are the pre-registered ones; nothing here is tuned.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from router_research import LOSO, Study, apgr, cdf, row, source_weights

from routellm_lc.routers.bert import bundled_base_model

MAX_TOKENS = 128
BATCH = 32


class Regressor(torch.nn.Module):
    """Encoder + mean pooling + a linear head (one score per prompt)."""

    def __init__(self, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        super().__init__()
        base = str(bundled_base_model())
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.encoder = AutoModel.from_pretrained(base, dtype=torch.float32)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        self.device = torch.device(device)
        self.to(self.device)

    def forward(self, prompts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(
            prompts, return_tensors="pt", padding=True, truncation=True, max_length=MAX_TOKENS
        ).to(self.device)
        hidden = self.encoder(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    @torch.no_grad()
    def score(self, prompts: list[str]) -> np.ndarray:
        self.eval()
        order = np.argsort([len(p) for p in prompts])  # length-sorted batches pad less
        out = np.empty(len(prompts))
        for start in range(0, len(order), 128):
            rows = order[start : start + 128]
            out[rows] = self([prompts[i] for i in rows]).cpu().numpy()
        return out


def demeaned_target(
    diff: np.ndarray, dom: np.ndarray, src: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """R10's label minus its domain's weighted mean, and the source-equal weights, on `mask`."""
    y = diff.copy()
    w = source_weights(src, mask)
    for g in np.unique(dom[mask]):
        m = mask & (dom == g)
        y[m] -= np.average(y[m], weights=w[m])
    return y, w


def fine_tune(
    prompts: list[str],
    y: np.ndarray,
    w: np.ndarray,
    mask: np.ndarray,
    *,
    epochs: int = 1,
    device: str = "cpu",
    seed: int = 0,
) -> Regressor:
    """Weighted-MSE fine-tune on the questions in `mask`; each epoch a fresh seeded order
    (the first epoch's order is round 18's)."""
    torch.manual_seed(seed)
    model = Regressor(device)
    idx = np.flatnonzero(mask)
    optimiser = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": 5e-5},
            {"params": model.head.parameters(), "lr": 1e-3},
        ]
    )
    rng = np.random.default_rng(seed)
    model.train()
    started = time.perf_counter()
    for epoch in range(epochs):
        order = idx[rng.permutation(len(idx))]
        for step, start in enumerate(range(0, len(order), BATCH)):
            rows = order[start : start + BATCH]
            pred = model([prompts[i] for i in rows])
            weight = torch.tensor(w[rows], dtype=torch.float32, device=model.device)
            target = torch.tensor(y[rows], dtype=torch.float32, device=model.device)
            loss = (weight * (pred - target) ** 2).sum() / weight.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step % 50 == 0:
                print(
                    f"  epoch {epoch + 1}/{epochs} step {step}/{len(order) // BATCH} "
                    f"{time.perf_counter() - started:.0f}s",
                    flush=True,
                )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    study = Study(args.data_dir)
    prompts = [q.prompt for q in study.qs]
    bench = {}
    from routellm_lc.evals.benchmarks import load_benchmark

    for name in ("mt-bench", "gsm8k", "mmlu"):
        b = load_benchmark(name, args.data_dir)
        bench[name] = (b.prompts, np.log([max(len(p), 1) for p in b.prompts]), b.strong, b.weak)
    length = np.log([max(len(p), 1) for p in prompts])
    arrays = (study.targets["diff"], study.dom, study.src)

    results = {"R18 = F(fine-tuned) + F(len)": {}, "fine-tuned alone (logged)": {}}
    for vname, (idx, strong, weak) in study.vsets.items():
        mask = ~np.isin(study.src, LOSO[vname])
        print(f"LOSO fit for {vname}: {mask.sum()} questions", flush=True)
        model = fine_tune(prompts, *demeaned_target(*arrays, mask), mask)
        model_scores = model.score([prompts[i] for i in idx])
        ref = model.score([prompts[i] for i in np.flatnonzero(mask)])
        combined = cdf(model_scores, ref) + cdf(length[idx], length[mask])
        results["R18 = F(fine-tuned) + F(len)"][vname] = apgr(combined, strong, weak)
        results["fine-tuned alone (logged)"][vname] = apgr(model_scores, strong, weak)
        print(f"  {vname}: R18 {results['R18 = F(fine-tuned) + F(len)'][vname]:.3f}", flush=True)
    everything = np.ones(len(study.qs), bool)
    print(f"full fit: {everything.sum()} questions", flush=True)
    model = fine_tune(prompts, *demeaned_target(*arrays, everything), everything)
    ref = model.score(prompts)
    evals: dict[str, dict[str, float]] = {k: {} for k in results}
    for name, (bp, blen, strong, weak) in bench.items():
        s = model.score(bp)
        evals["R18 = F(fine-tuned) + F(len)"][name] = apgr(
            cdf(s, ref) + cdf(blen, length), strong, weak
        )
        evals["fine-tuned alone (logged)"][name] = apgr(s, strong, weak)
    print("| variant | LOSO V-chat | V-math | V-mcq | LOSO mean | MT-Bench | GSM8K | MMLU |")
    print("|---|---|---|---|---|---|---|---|")
    for name in results:
        print(row(name, results[name], evals[name]))
        print(f"  LOSO mean {np.mean(list(results[name].values())):.5f}")


if __name__ == "__main__":
    main()
