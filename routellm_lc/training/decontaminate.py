"""Drop training prompts that are near-copies of evaluation prompts.

A training prompt whose embedding has cosine ≥ 0.95 with any evaluation prompt (MT-Bench turns,
GSM8K, MMLU) is removed before training. RouteLLM's own contaminated-prompt lists are applied
on the evaluation side (see `routellm_lc.evals.benchmarks`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from routellm_lc.data import data_dir as resolve_data_dir

THRESHOLD = 0.95


def evaluation_prompts(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Every prompt text of the evaluation sets (all MT-Bench turns, GSM8K, MMLU)."""
    folder = resolve_data_dir(data_dir) / "routellm_evals"
    prompts: list[str] = []
    with open(folder / "mt_bench_question.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                prompts += json.loads(line)["turns"]
    csv.field_size_limit(1 << 30)
    files = [folder / "gsm8k_responses.csv", *sorted((folder / "mmlu_responses").glob("*.csv"))]
    for path in files:
        with open(path, encoding="utf-8", newline="") as handle:
            prompts += [row["prompt"] for row in csv.DictReader(handle)]
    return prompts


def cached_embeddings(texts: Sequence[str], embedder: Any = None) -> np.ndarray:
    """Embeddings of `texts`, cached on disk by (embedder, exact list of texts)."""
    from routellm_lc.embeddings import cache_dir, get_embedder

    embedder = get_embedder(embedder, cache=False) if not hasattr(embedder, "embed") else embedder
    digest = hashlib.sha256(embedder.name.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\x00")
    path = cache_dir() / "embeddings" / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    from tqdm.auto import tqdm

    chunks = []
    step = 512
    for start in tqdm(
        range(0, len(texts), step), desc="embedding", unit="batch", disable=len(texts) <= step
    ):
        chunks.append(embedder.embed(list(texts[start : start + step])))
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def contaminated_mask(
    train: np.ndarray, evaluation: np.ndarray, threshold: float = THRESHOLD, block: int = 2048
) -> np.ndarray:
    """True for rows of `train` with cosine ≥ threshold to any row of `evaluation`
    (rows are L2-normalised, so cosine is a dot product)."""
    mask = np.zeros(len(train), dtype=bool)
    for start in range(0, len(train), block):
        sims = train[start : start + block] @ evaluation.T
        mask[start : start + block] = sims.max(axis=1) >= threshold
    return mask


def decontaminate_questions(
    questions: Sequence[Any],
    data_dir: str | os.PathLike[str] | None = None,
    threshold: float = THRESHOLD,
    embedder: Any = None,
) -> tuple[list[Any], dict[str, int]]:
    """Questions (anything with `.prompt` and `.source`) minus near-copies of eval prompts;
    returns (kept, dropped count per source)."""
    prompts = list(dict.fromkeys(q.prompt for q in questions))
    if not prompts:
        return list(questions), {}
    train = cached_embeddings(prompts, embedder)
    evaluation = cached_embeddings(list(dict.fromkeys(evaluation_prompts(data_dir))), embedder)
    bad = {
        p
        for p, hit in zip(prompts, contaminated_mask(train, evaluation, threshold), strict=True)
        if hit
    }
    dropped = Counter(q.source for q in questions if q.prompt in bad)
    return [q for q in questions if q.prompt not in bad], dict(dropped)
