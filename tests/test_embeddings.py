"""Embedders: the ONNX, torch and sentence-transformers paths agree; the cache; LiteLLM; specs."""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence

import numpy as np
import pytest

from routellm_lc import embeddings
from routellm_lc.embeddings import (
    CHARS_PER_TOKEN,
    CachedEmbedder,
    LiteLLMEmbedder,
    LocalEmbedder,
    SentenceTransformerEmbedder,
    _bundled_model_path,
    get_embedder,
)
from routellm_lc.errors import CheckpointError

PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that merges two sorted lists in linear time.",
    "hi",
    "Prove that the square root of 2 is irrational, step by step, and explain each step "
    "so that a high-school student can follow the argument.",
]


@pytest.fixture(scope="module")
def onnx_vectors() -> np.ndarray:
    return LocalEmbedder(backend="onnx").embed(PROMPTS)


def test_local_embedder_shape_dtype_and_unit_rows(onnx_vectors):
    assert onnx_vectors.shape == (len(PROMPTS), 384)
    assert onnx_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    # Different prompts are different points (not a constant or a broken pooling).
    similarity = onnx_vectors @ onnx_vectors.T
    assert similarity[0, 1] < 0.9


def test_onnx_matches_torch(onnx_vectors):
    torch_vectors = LocalEmbedder(backend="torch").embed(PROMPTS)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-5)


def test_local_embedder_matches_sentence_transformers(onnx_vectors):
    st = SentenceTransformerEmbedder(str(_bundled_model_path()))
    assert st.dim == 384
    np.testing.assert_allclose(onnx_vectors, st.embed(PROMPTS), atol=1e-5)


def test_batching_does_not_change_vectors(onnx_vectors):
    embedder = LocalEmbedder(backend="onnx")
    one_by_one = np.vstack([embedder.embed([p]) for p in PROMPTS])
    np.testing.assert_allclose(one_by_one, onnx_vectors, atol=1e-5)


def test_empty_batch():
    assert LocalEmbedder().embed([]).shape == (0, 384)


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        LocalEmbedder(tmp_path / "nowhere")


# -- cache ---------------------------------------------------------------------------------------
class CountingEmbedder:
    """2-d vectors from the text length; records which texts it was asked for."""

    name = "counting"
    dim = 2

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_cache_hits_and_misses():
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, maxsize=10)
    first = cache.embed(["a", "bb", "a"])
    assert inner.seen == [["a", "bb"]]  # the duplicate is embedded once
    assert (cache.hits, cache.misses) == (0, 3)
    second = cache.embed(["bb", "ccc"])
    assert inner.seen[-1] == ["ccc"]
    assert (cache.hits, cache.misses) == (1, 4)
    np.testing.assert_array_equal(first[1], second[0])
    assert cache.embed([]).shape == (0, 2)


def test_cache_evicts_least_recently_used():
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, maxsize=2)
    cache.embed(["a", "b"])
    cache.embed(["a"])  # "a" is now the most recent; "b" the least
    cache.embed(["c"])  # evicts "b"
    cache.embed(["a"])
    assert inner.seen[-1] == ["c"]
    cache.embed(["b"])
    assert inner.seen[-1] == ["b"]


def test_cache_holds_a_digest_per_prompt_not_the_prompt():
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, maxsize=10)
    big = "lorem ipsum " * 100_000  # 1.2 MB
    lone_surrogate = "caf\udce9"  # what a surrogateescape-decoded byte gives
    cache.embed([big, big + "!", lone_surrogate])
    assert all(isinstance(k, bytes) and len(k) == 16 for k in cache._cache)
    cache.embed([big, lone_surrogate])
    assert len(inner.seen) == 1 and (cache.hits, cache.misses) == (2, 3)


# -- sentence-transformers from a Hub-layout folder, LiteLLM endpoint, specs ------------------
def test_sentence_transformer_spec_loads_local_hub_layout_folder(onnx_vectors):
    embedder = get_embedder(f"st:{_bundled_model_path()}", cache=False)
    assert embedder.name.startswith("st:")
    np.testing.assert_allclose(embedder.embed(PROMPTS[:1]), onnx_vectors[:1], atol=1e-5)


def test_litellm_embedder_against_backend(fresh_backend):
    embedder = LiteLLMEmbedder(
        "openai/embed-small", api_base=fresh_backend.base_url, api_key="k", max_retries=0
    )
    vectors = embedder.embed(["alpha", "beta", "alpha"])
    assert vectors.shape == (3, 64) and embedder.dim == 64
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])
    (request,) = fresh_backend.requests_for("embed-small")
    assert request.path == "/v1/embeddings"
    # named with its endpoint: another endpoint's stored embeddings are another embedder's
    assert embedder.name == f"litellm:openai/embed-small@{fresh_backend.base_url}"
    assert LiteLLMEmbedder("openai/embed-small").name == "litellm:openai/embed-small"
    assert request.body["input"] == ["alpha", "beta", "alpha"]


def test_get_embedder_shares_instances_and_accepts_objects():
    assert get_embedder("local") is get_embedder("local")
    inner = CountingEmbedder()
    assert get_embedder(inner) is inner


@pytest.mark.parametrize("spec", ["nonsense", "openai:text-embedding-3-small"])
def test_get_embedder_unknown_spec(spec):
    with pytest.raises(ValueError, match="Unknown embedder"):
        get_embedder(spec)


def test_get_embedder_rejects_non_embedders():
    with pytest.raises(TypeError, match="Not an embedder"):
        get_embedder(42)  # type: ignore[arg-type]


def test_local_embedder_names_are_specs_that_reload(tmp_path):
    from routellm_lc.embeddings import LocalEmbedder, _build_embedder

    for embedder in (LocalEmbedder(), LocalEmbedder(backend="torch")):
        again = _build_embedder(embedder.name)
        assert isinstance(again, LocalEmbedder) and again.backend == embedder.backend
        assert again.model_path.resolve() == embedder.model_path.resolve()


def test_long_prompts_embed_exactly_as_tokenising_them_whole():
    """A long prompt is tokenised from a prefix (a 4 MB prompt took seconds to tokenise, for
    a 256-token window): ended at whitespace, or for a run without whitespace cut anywhere
    where BERT's pipeline makes that exact. The ids, hence the vectors, are the full text's."""
    from tokenizers import Tokenizer

    embedder = LocalEmbedder(backend="onnx")
    words = " ".join(f"word{i % 97} and, more:\n{i}" for i in range(4_000))  # ~90k chars
    spaceless = "x" * 20_000 + " tail"  # one 20k-character word: [UNK], shortened
    cjk = "数学题" * 5_000  # no whitespace at all: cut anywhere, each CJK character a word
    late = "Translate: " + "数学" * 20_000  # whitespace only before the cut
    minified = ",".join(f'{{"k":{i},"v":"abc"}}' for i in range(5_000))  # punctuation splits
    blob = "QUJD" * 10_000 + "+/" + "QUJD" * 10_000  # base64: one word until "+", then "/"
    emoji = "😀" * 20_000  # one word too long for WordPiece: one [UNK], however long
    cut_word = "a" * 8_190 + "b" * 100 + ",x" * 1_000  # the cut lands inside a word
    # U+166D and U+111C9: punctuation to the tokenizer's Unicode tables, not to Python's
    newer = "".join(("a" * 150 + c + "b" * 150 + " ") * 30 for c in ("\u166d", "\U000111c9"))
    texts = [words, spaceless, cjk, late, minified, blob, emoji, cut_word, newer, PROMPTS[0]]
    embedder.embed(["warm"])
    heads = embedder._encode(texts)
    whole = Tokenizer.from_file(str(embedder.model_path / "tokenizer.json"))
    whole.no_padding()
    whole.enable_truncation(embedder.max_tokens)
    for text, encoding in zip(texts, heads, strict=True):
        assert encoding.ids == whole.encode(text).ids
    assert len(heads[0].ids) == embedder.max_tokens  # the window is full: the case that matters
    vectors = embedder.embed(texts)
    np.testing.assert_allclose(vectors[-1], embedder.embed([PROMPTS[0]])[0], atol=1e-6)


class _RecordingTokenizer:
    """The embedder's tokenizer, recording the length of every text it is given."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def encode(self, text):
        self.lengths.append(len(text))
        return self.inner.encode(text)

    def encode_batch(self, texts):
        self.lengths += [len(t) for t in texts]
        return self.inner.encode_batch(texts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    "text",
    [
        "数学题" * 100_000,  # CJK: no whitespace at all
        "Translate: " + "数学" * 100_000,  # whitespace only at the start
        ",".join(f'{{"k":{i},"v":"abc"}}' for i in range(30_000)),  # minified JSON
        base64.b64encode(bytes(range(256)) * 2_000).decode(),  # base64: "+" and "/" split it
        "😀" * 1_000_000,  # one word: WordPiece makes it one [UNK], so a stub of it does
        "Summarise this: " + "0123456789abcdef" * 100_000 + " thanks",  # a hex dump
        " ".join("a" * 9_000 for _ in range(300)),  # 300 words of 9k characters
    ],
    ids=["cjk", "late-whitespace", "minified-json", "base64", "emoji", "hex", "long-words"],
)
def test_long_runs_without_whitespace_are_not_tokenised_whole(text):
    embedder = LocalEmbedder(backend="onnx")
    embedder.embed(["warm"])
    recording = _RecordingTokenizer(embedder._tokenizer)
    embedder._tokenizer = recording
    embedder._encode([text])
    limit = embedder.max_tokens * CHARS_PER_TOKEN
    # never the whole text: a prefix of `limit` characters, or a few times longer once long
    # words are shortened (300 words of 9k characters become 300 stubs of 200)
    assert recording.lengths and max(recording.lengths) <= 16 * limit < len(text)


def test_shortened_long_words_tokenise_as_the_whole_text(monkeypatch):
    """Words too long for WordPiece (one [UNK] each) are shortened before the cut: seeded
    random texts of long runs of letters, accents, combining marks, emoji, CJK, punctuation,
    control and format characters give the whole text's ids."""
    from tokenizers import Tokenizer

    embedder = LocalEmbedder(backend="onnx")
    embedder.embed(["warm"])
    whole = Tokenizer.from_file(str(embedder.model_path / "tokenizer.json"))
    whole.no_padding()
    whole.enable_truncation(embedder.max_tokens)
    shortened = []
    original = embeddings._shorten_long_words

    def shorten(text, tokenizer, breaks):
        shorter = original(text, tokenizer, breaks)
        shortened.append(len(shorter) < len(text))
        return shorter

    monkeypatch.setattr(embeddings, "_shorten_long_words", shorten)
    alphabet = ["a", "é", "e\u0301", "😀", "数", "\u0301", "\x00", "\u200b", "_", "-", ".", " "]
    alphabet += ["\n", "İ", "ß", "\u1fef", "٣", "\ufffd", "\U00020001", "\u00ad"]
    rng = random.Random(0)

    def run() -> str:
        char, size = rng.choice(alphabet), rng.choice([1, 99, 100, 101, 300, 5_000, 9_000, 20_000])
        if rng.random() < 0.5:
            return char * size
        return "".join(rng.choice(alphabet[:6] + ["b", "c"]) for _ in range(size))

    limit = embedder.max_tokens * CHARS_PER_TOKEN
    for _ in range(150):
        text = "".join(run() for _ in range(rng.randint(1, 12)))
        text *= limit // max(len(text), 1) + 2
        assert embedder._encode([text])[0].ids == whole.encode(text).ids
    assert sum(shortened) >= 20  # the path under test was taken
