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
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.data import data_dir as resolve_data_dir
from routellm_lc.files import atomic_write

THRESHOLD = 0.95


def evaluation_prompts(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Every prompt text of the evaluation sets (all MT-Bench turns, GSM8K, MMLU)."""
    from routellm_lc.data import require_data

    root = resolve_data_dir(data_dir)
    why = "training prompts are decontaminated against the evaluation prompts"
    folder = require_data(root, "routellm_evals", why)
    for name in ("mt_bench_question.jsonl", "gsm8k_responses.csv", "mmlu_responses"):
        require_data(root, f"routellm_evals/{name}", why)
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


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()[:16]


class EmbeddingStore:
    """Embeddings on disk, one entry per (embedder, text hash): any subset or superset of
    texts seen before costs only the new texts. Files are append-only `.npz` chunks under
    `cache_dir()/embeddings/<embedder>/`, written atomically, so concurrent processes are safe.
    """

    def __init__(self, embedder_name: str, root: Path | None = None) -> None:
        from routellm_lc.embeddings import cache_dir

        slug = "".join(c if c.isalnum() or c in "-." else "_" for c in embedder_name)
        if slug != embedder_name:  # `local:/a/b` and `local:/a_b` would share a folder
            slug += "-" + hashlib.sha256(embedder_name.encode("utf-8")).hexdigest()[:12]
        self.folder = (root or cache_dir() / "embeddings") / slug
        self._vectors: dict[bytes, np.ndarray] = {}
        self._seen: set[str] = set()

    def _refresh(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("[!.]*.npz")):  # not a writer's temporary file
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            try:
                with np.load(path, allow_pickle=False) as chunk:
                    pairs = list(zip(chunk["keys"], chunk["vectors"], strict=True))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                # a damaged chunk (a full disk) costs its texts a new embedding, not every run
                warnings.warn(
                    f"Skipping an unreadable embedding cache file {path}: {exc}", stacklevel=3
                )
                continue
            for key, vector in pairs:
                # NumPy's "S16" drops trailing NUL bytes: 1 digest in 256 ends in one
                self._vectors[bytes(key).ljust(16, b"\0")] = vector

    def get(self, texts: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """(vectors with zero rows where missing, or None if nothing is stored; missing rows)."""
        self._refresh()
        keys = [_text_key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._vectors]
        if len(missing) == len(texts):
            return None, missing
        dim = len(next(iter(self._vectors.values())))
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            vector = self._vectors.get(key)
            if vector is not None:
                out[i] = vector
        return out, missing

    def embed(self, texts: Sequence[str], embedder: Any, *, progress: bool = False) -> np.ndarray:
        """Embeddings of `texts` (rows in order): the stored ones read, the others embedded by
        `embedder` in chunks of 512 (with a progress bar when asked and there are more) and
        stored after each chunk, so progress survives an interruption."""
        texts = list(texts)
        vectors, missing = self.get(texts)
        if not missing:  # all stored, or no texts
            return vectors if vectors is not None else np.zeros((0, embedder.dim), np.float32)
        from tqdm.auto import tqdm

        todo = [texts[i] for i in missing]
        step = 512
        chunks = []
        bar = tqdm(
            total=len(todo),
            desc="embedding",
            unit="prompt",
            disable=not progress or len(todo) <= step,
        )
        for start in range(0, len(todo), step):
            chunk = np.asarray(embedder.embed(todo[start : start + step]), dtype=np.float32)
            self.put(todo[start : start + step], chunk)
            chunks.append(chunk)
            bar.update(len(chunk))
        bar.close()
        fresh = np.concatenate(chunks)
        if vectors is None:  # nothing was stored: every row is fresh
            return fresh
        vectors[missing] = fresh
        return vectors

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        fresh = {}
        for text, vector in zip(texts, vectors, strict=True):
            key = _text_key(text)
            if key not in self._vectors:
                fresh[key] = vector
        if not fresh:
            return
        digest = hashlib.sha256(b"".join(sorted(fresh))).hexdigest()[:16]
        path = self.folder / f"{digest}.npz"
        keys = np.array(list(fresh), dtype="S16")
        vectors = np.stack(list(fresh.values())).astype(np.float32)
        atomic_write(path, lambda file: np.savez(file, keys=keys, vectors=vectors))
        self._vectors.update(fresh)
        self._seen.add(path.name)


def _legacy_list_path(embedder_name: str, texts: Sequence[str]) -> Path:
    """Where earlier versions cached one array per exact list of texts (still read)."""
    from routellm_lc.embeddings import cache_dir

    digest = hashlib.sha256(embedder_name.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\x00")
    return cache_dir() / "embeddings" / f"{digest.hexdigest()[:24]}.npy"


def cached_embeddings(
    texts: Sequence[str], embedder: Any = None, *, progress: bool = True
) -> np.ndarray:
    """Embeddings of `texts` (rows in order), cached on disk per (embedder name, text hash).

    Embedding the 15k evaluation prompts takes minutes on a small CPU: it happens once.
    """
    from routellm_lc.embeddings import get_embedder

    embedder = get_embedder(embedder, cache=False) if not hasattr(embedder, "embed") else embedder
    texts = list(texts)
    store = EmbeddingStore(embedder.name)
    vectors, missing = store.get(texts)
    if missing:
        legacy = _legacy_list_path(embedder.name, texts)
        if legacy.is_file():
            vectors = np.load(legacy)
            store.put(texts, vectors)
            return vectors
    return store.embed(texts, embedder, progress=progress)


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


def contaminated_prompts(
    prompts: Sequence[str],
    data_dir: str | os.PathLike[str] | None = None,
    threshold: float = THRESHOLD,
    embedder: Any = None,
    eval_prompts: Sequence[str] | None = None,
) -> set[str]:
    """The prompts among `prompts` whose embedding has cosine ≥ `threshold` with any
    evaluation prompt (`eval_prompts`, default: every prompt of the evaluation sets)."""
    unique = list(dict.fromkeys(prompts))
    if not unique:
        return set()
    if eval_prompts is None:
        eval_prompts = evaluation_prompts(data_dir)
    train = cached_embeddings(unique, embedder)
    evaluation = cached_embeddings(list(dict.fromkeys(eval_prompts)), embedder)
    hits = contaminated_mask(train, evaluation, threshold)
    return {p for p, hit in zip(unique, hits, strict=True) if hit}


def decontaminate_questions(
    questions: Sequence[Any],
    data_dir: str | os.PathLike[str] | None = None,
    threshold: float = THRESHOLD,
    embedder: Any = None,
) -> tuple[list[Any], dict[str, int]]:
    """Questions or battles (anything with `.prompt` and `.source`) minus near-copies of
    evaluation prompts; returns (kept, dropped count per source)."""
    bad = contaminated_prompts([q.prompt for q in questions], data_dir, threshold, embedder)
    dropped = Counter(q.source for q in questions if q.prompt in bad)
    return [q for q in questions if q.prompt not in bad], dict(dropped)


#: Battles carry `.prompt` and `.source` too.
decontaminate_battles = decontaminate_questions


def format_report(items: Sequence[Any], dropped: dict[str, int]) -> str:
    """One line per source: kept / total (dropped)."""
    totals = Counter(item.source for item in items)
    lines = [
        f"{source}: kept {total - dropped.get(source, 0)} of {total} "
        f"(dropped {dropped.get(source, 0)} near-copies of evaluation prompts)"
        for source, total in sorted(totals.items())
    ]
    return "\n".join(lines)
