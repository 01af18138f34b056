"""Decontamination: near-copies of evaluation prompts are dropped; embeddings are cached."""

from __future__ import annotations

import numpy as np
import pytest

from routellm_lc.training.decontaminate import (
    cached_embeddings,
    contaminated_mask,
    contaminated_prompts,
    decontaminate_questions,
    evaluation_prompts,
    format_report,
)
from routellm_lc.training.sources import Question


class CountingEmbedder:
    """Deterministic fake embedder that counts how many texts it was asked to embed."""

    name = "counting-test"
    dim = 8

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts):
        self.calls += len(texts)
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        rows = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path))
    return tmp_path


def test_embeddings_are_cached_per_text_across_lists(cache):
    embedder = CountingEmbedder()
    first = cached_embeddings(["a", "b", "c"], embedder, progress=False)
    assert embedder.calls == 3
    again = cached_embeddings(["c", "a", "d"], embedder, progress=False)
    assert embedder.calls == 4  # only "d" is new
    np.testing.assert_array_equal(again[0], first[2])
    np.testing.assert_array_equal(again[1], first[0])
    assert list((cache / "embeddings" / "counting-test").glob("*.npz"))


def test_mask_uses_cosine_threshold():
    evaluation = np.eye(3, dtype=np.float32)
    close = np.array([0.96, 0.28, 0.0], dtype=np.float32)
    far = np.array([0.9, 0.436, 0.0], dtype=np.float32)
    train = np.stack([close / np.linalg.norm(close), far / np.linalg.norm(far)])
    assert contaminated_mask(train, evaluation, 0.95).tolist() == [True, False]


def test_near_copies_of_evaluation_prompts_are_dropped(data_dir):
    eval_prompts = evaluation_prompts(data_dir)
    assert len(eval_prompts) == 80 * 2 + 1319 + 14042
    mt_bench, gsm8k = eval_prompts[0], eval_prompts[160]
    questions = [
        Question("arena_bench_v1", "1", mt_bench + " ", {"m": 1.0}),  # trailing space: a copy
        Question("arena_bench_v1", "2", "Write a haiku about autumn leaves.", {"m": 1.0}),
        Question("zeroeval_math_l5", "3", "  " + gsm8k + "\n", {"m": 0.0}),
        Question("zeroeval_math_l5", "4", "Find all real x with x^2 - 5x + 6 = 0.", {"m": 0.0}),
    ]
    subset = [mt_bench, gsm8k, *eval_prompts[2000:2020]]  # real MiniLM on a small subset
    bad = contaminated_prompts([q.prompt for q in questions], eval_prompts=subset)
    assert bad == {questions[0].prompt, questions[2].prompt}


def test_decontaminate_questions_reports_per_source(monkeypatch):
    import routellm_lc.training.decontaminate as module

    questions = [
        Question("a", "1", "copy", {}),
        Question("a", "2", "fresh", {}),
        Question("b", "3", "copy", {}),
    ]
    monkeypatch.setattr(module, "contaminated_prompts", lambda prompts, *a, **k: {"copy"})
    kept, dropped = decontaminate_questions(questions)
    assert [q.qid for q in kept] == ["2"]
    assert dropped == {"a": 1, "b": 1}
    assert format_report(questions, dropped).splitlines() == [
        "a: kept 1 of 2 (dropped 1 near-copies of evaluation prompts)",
        "b: kept 0 of 1 (dropped 1 near-copies of evaluation prompts)",
    ]


def test_embedders_with_similar_names_keep_separate_stores(tmp_path):
    """`local:/models/a/b` and `local:/models/a_b` both became the folder `local__models_a_b`,
    so one embedder read the other's vectors."""
    from routellm_lc.training.decontaminate import EmbeddingStore

    a = EmbeddingStore("local:/models/a/b", root=tmp_path).folder
    b = EmbeddingStore("local:/models/a_b", root=tmp_path).folder
    assert a != b and a.parent == b.parent == tmp_path
    assert EmbeddingStore("local", root=tmp_path).folder == tmp_path / "local"  # kept as it was
