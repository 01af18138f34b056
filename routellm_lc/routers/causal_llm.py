"""`causal_llm`: RouteLLM's LLM-classifier router.

A causal LM fine-tuned to answer a rating prompt with one of five label tokens [[1]] … [[5]]
(the predicted quality of the *weak* model's answer). RouteLLM's `CausalLLMClassifier` takes
the logits of those five tokens at the answer position, softmaxes them, and calls
P(label ≥ score_threshold) (threshold 4) the probability that the weak model is good enough;
the strong win rate is 1 − P(label ≥ 4) = p[[1]] + p[[2]] + p[[3]].

RouteLLM greedily generates the assistant header and reads the label logits at the first label
token. Here the header is appended to the prompt instead, so the label logits come from one
forward pass (batched, right-padded), and only the five label rows of the output layer are
computed. For `routellm/causal_llm_gpt4_augmented` (Llama-3-8B) the prompt is RouteLLM's
Llama-3 format: system and user turns `<|start_header_id|>{role}<|end_header_id|>\\n\\n{text}
<|eot_id|>` after the tokenizer's <|begin_of_text|>, then the assistant header. The system and
classifier messages are read from the checkpoint folder (`system_ft_v5.txt`,
`classifier_ft_v5.txt`, as published); the tokenizer comes from the folder or, as in RouteLLM,
from the base model (`meta-llama/Meta-Llama-3-8B`), with the label tokens added.

Any instruct model can also be used zero-shot: label tokens "1" … "5" after an answer prefix
"[[" read the model's own rating (e.g. the SmolLM2-135M GGUF that runs offline).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.errors import CheckpointError, RouteLLMError
from routellm_lc.routers import checkpoints as ckpt
from routellm_lc.routers.base import Router, register_router, resolve_device
from routellm_lc.routers.bert import (
    ROUTER_CONFIG,
    read_router_config,
    softmax,
    transformer_identity,
)

ROUTELLM_CAUSAL_CHECKPOINT = "routellm/causal_llm_gpt4_augmented"
ROUTELLM_BASE_TOKENIZER = "meta-llama/Meta-Llama-3-8B"
LABEL_TOKENS = ("[[1]]", "[[2]]", "[[3]]", "[[4]]", "[[5]]")
SYSTEM_FILE = "system_ft_v5.txt"
CLASSIFIER_FILE = "classifier_ft_v5.txt"
LLAMA3_TURN = "<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"
LLAMA3_ANSWER_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
#: For tokenizers with neither Llama-3 headers nor a chat template (base models).
PLAIN_TURN = "{role}: {text}\n\n"
PLAIN_ANSWER_HEADER = "Assistant: "

#: Used when a checkpoint folder ships no system / classifier message files.
DEFAULT_SYSTEM_MESSAGE = (
    "[Instruction]\n"
    "You will see a question that a user asked an AI assistant. Predict the score an expert "
    "grader would give the assistant's answer, judging helpfulness, relevance, accuracy, depth "
    "and detail, i.e. how hard the question is for the assistant to answer well. Rate from 1 "
    '(poor answer expected) to 5 (excellent answer expected) and reply only as "[[rating]]".\n'
    "- 4 or 5: the assistant can answer very well.\n"
    "- 3: the assistant can give an acceptable answer.\n"
    "- 1 or 2: the assistant will struggle (hard, vague, or beyond its abilities).\n"
)
DEFAULT_CLASSIFIER_MESSAGE = "[Question]\n{question}\n\nPrediction:\n"


#: What loading a GGUF file needs besides the base install (transformers reads it with gguf).
GGUF_MIN_VERSION = "0.10.0"
GGUF_EXTRA = "routellm-lc[gguf]"


class MissingDependencyError(RouteLLMError, ImportError):
    """An optional package this checkpoint needs is not installed (its extra names it)."""


def _gguf_missing(detail: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"Loading a GGUF checkpoint needs the gguf package ({detail}): "
        f"pip install '{GGUF_EXTRA}' (or 'gguf>={GGUF_MIN_VERSION}')."
    )


def _require_gguf() -> None:
    """Fail before anything loads, with the extra to install, when gguf is missing or older
    than transformers accepts (transformers itself raises a bare ImportError deep inside)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    if importlib.util.find_spec("gguf") is None:
        raise _gguf_missing("it is not installed")
    try:
        installed = version("gguf")
    except PackageNotFoundError:  # importable without metadata (a source tree): let it try
        return
    release = tuple(int(part) for part in re.findall(r"\d+", installed)[:3])
    if release < tuple(int(part) for part in GGUF_MIN_VERSION.split(".")):
        raise _gguf_missing(f"{installed} is installed, {GGUF_MIN_VERSION} or later is needed")


def _gguf_file_of(checkpoint: str | Path) -> tuple[str | Path, str | None]:
    """A path to a .gguf file means (its folder, its name)."""
    path = Path(checkpoint).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path.parent, path.name
    return checkpoint, None


@register_router("causal_llm")
class CausalLLMRouter(Router):
    """RouteLLM's `causal_llm` router (an LLM that rates prompts 1–5).

    Constructor arguments only store settings; `from_pretrained` loads `model_` and
    `tokenizer_`. There is no `fit`: fine-tuning an LLM classifier is out of scope here
    (RouteLLM trained its checkpoint with full fine-tuning on 8 GPUs).

    Args:
        label_tokens: the five rating tokens, lowest first.
        score_threshold: ratings ≥ this mean "the weak model is good enough" (RouteLLM: 4).
        prompt_format: "llama3" (RouteLLM's format), "chat_template" (the tokenizer's own),
            "plain" ("System: …", "User: …", "Assistant: " lines) or "auto" (llama3 when the
            tokenizer has Llama-3's header tokens, else its chat template, else plain).
        answer_prefix: text appended after the assistant header, before the label token
            (e.g. "[[" with digit labels for zero-shot use).
        system_message / classifier_message: override the folder's message files (also
            settable as fields of its router_config.json); the classifier message is a
            template with a `{question}` field.
        max_length: keep at most this many tokens (the start is cut: the answer position
            stays); None: the model's context size.
        device: torch device: "auto" (default) takes a CUDA (or Apple MPS) GPU when torch
            sees one, else the CPU; or "cpu", "cuda", "cuda:1", ...
        dtype: torch dtype ("auto": the checkpoint's, e.g. bfloat16).
        batch_size: prompts per forward pass; None: 4 on CPU, 16 on an accelerator. On CPU a
            causal LM is already compute-bound on one ~200-token prompt, so larger batches
            only add padding and slow down (BENCHMARKS.md, `causal_llm` batch).
        strong_model / weak_model: the pair the classifier was trained for (informational).
        embedder: unused; accepted so every router takes the same arguments.
    """

    uses_device = True

    def __init__(
        self,
        *,
        label_tokens: Sequence[str] = LABEL_TOKENS,
        score_threshold: int = 4,
        prompt_format: str = "auto",
        answer_prefix: str = "",
        system_message: str | None = None,
        classifier_message: str | None = None,
        max_length: int | None = None,
        device: str = "auto",
        dtype: str | None = "auto",
        batch_size: int | None = None,
        add_label_tokens: bool = True,
        strong_model: str | None = None,
        weak_model: str | None = None,
        embedder: Any = None,
    ) -> None:
        if not 1 <= int(score_threshold) <= len(label_tokens):
            raise ValueError(
                f"score_threshold must be a rating between 1 and {len(label_tokens)}, "
                f"got {score_threshold!r}."
            )
        if prompt_format not in _FORMATS:
            raise ValueError(
                f"prompt_format must be one of {', '.join(map(repr, _FORMATS))}, "
                f"got {prompt_format!r}."
            )
        self.label_tokens = tuple(label_tokens)
        self.score_threshold = int(score_threshold)
        self.prompt_format = prompt_format
        self.answer_prefix = answer_prefix
        self.system_message = system_message
        self.classifier_message = classifier_message
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.add_label_tokens = add_label_tokens
        self.strong_model = strong_model
        self.weak_model = weak_model
        self.embedder = embedder
        self.cache_key: str | None = None

    # -- prompts ---------------------------------------------------------------------------
    def _check_loaded(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("This causal_llm router has no model: call from_pretrained().")

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """RouteLLM's `to_openai_api_messages` for one user turn."""
        system = self.system_message if self.system_message is not None else ""
        template = self.classifier_message or DEFAULT_CLASSIFIER_MESSAGE
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": template.format(question=prompt)},
        ]

    def _format(self) -> str:
        if self.prompt_format != "auto":
            return self.prompt_format
        vocab = self.tokenizer_.get_vocab()
        if "<|start_header_id|>" in vocab and "<|eot_id|>" in vocab:
            return "llama3"
        if getattr(self.tokenizer_, "chat_template", None):
            return "chat_template"
        return "plain"

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids up to the answer position (the next token is the rating)."""
        messages = [
            {"role": m["role"], "content": m["content"].strip()} for m in self.messages(prompt)
        ]
        messages = [m for m in messages if m["role"] != "system" or m["content"]]
        tokenizer = self.tokenizer_
        prompt_format = self._format()
        if prompt_format == "llama3":
            text = "".join(LLAMA3_TURN.format(role=m["role"], text=m["content"]) for m in messages)
            ids = tokenizer.encode(text)  # adds <|begin_of_text|>, as RouteLLM's encode()
            ids += tokenizer.encode(LLAMA3_ANSWER_HEADER, add_special_tokens=False)
        elif prompt_format == "plain":
            text = "".join(
                PLAIN_TURN.format(role=m["role"].capitalize(), text=m["content"]) for m in messages
            )
            ids = tokenizer.encode(text + PLAIN_ANSWER_HEADER)  # the tokenizer's BOS, if any
        else:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer.encode(text, add_special_tokens=False)
        if self.answer_prefix:
            ids += tokenizer.encode(self.answer_prefix, add_special_tokens=False)
        limit = self._token_limit()
        return ids[-limit:] if len(ids) > limit else ids

    def _token_limit(self) -> int:
        positions = getattr(self.model_.config, "max_position_embeddings", None) or 1 << 30
        return min(self.max_length or positions, positions)

    # -- scoring ---------------------------------------------------------------------------
    def label_logits(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 5) logits of the label tokens at the answer position."""
        import torch

        self._check_loaded()
        if len(prompts) == 0:
            return np.empty((0, len(self.label_tokens)))
        ids = [self.prompt_ids(p) for p in prompts]
        # Batches of similar token counts: right padding costs compute on every pad position,
        # so a mixed batch runs at the speed of its longest prompt.
        order = np.argsort([len(i) for i in ids], kind="stable")
        out = np.empty((len(prompts), len(self.label_tokens)))
        with torch.inference_mode():
            size = self.batch_size or (4 if self.model_.device.type == "cpu" else 16)
            for start in range(0, len(prompts), size):
                chunk = order[start : start + size]
                out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Right-padded batch → last real position's hidden state → label rows of the output
        layer (causal attention: padding after a sequence never changes its states)."""
        import torch

        lengths = torch.tensor([len(ids) for ids in batch])
        width = int(lengths.max())
        pad = self._pad_id()
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        device = self.model_.device
        hidden = self.model_.base_model(
            input_ids=input_ids.to(device), attention_mask=mask.to(device)
        ).last_hidden_state
        last = hidden[torch.arange(len(batch), device=device), lengths.to(device) - 1]
        head = self.model_.get_output_embeddings()
        logits = last @ head.weight[self._label_ids].T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[self._label_ids]
        softcap = getattr(self.model_.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits.float().cpu().numpy().astype(np.float64)

    def _pad_id(self) -> int:
        for candidate in (self.tokenizer_.pad_token_id, self.tokenizer_.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def label_probabilities(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 5) softmax over the label tokens: the predicted rating distribution."""
        return softmax(self.label_logits(prompts))

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        probs = self.label_probabilities(prompts)
        weak_good_enough = probs[:, self.score_threshold - 1 :].sum(axis=1)
        return 1.0 - weak_good_enough  # RouteLLM: 1 − binary_prob

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path | None = None,
        *,
        tokenizer: str | Path | None = None,
        gguf_file: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> CausalLLMRouter:
        """Load an LLM classifier: RouteLLM's `routellm/causal_llm_gpt4_augmented` (the
        default), a folder saved by `save_pretrained`, any transformers causal-LM folder or Hub
        id, or a GGUF file (a path to the .gguf, or the folder plus `gguf_file=`).

        `tokenizer` is used when the folder has no tokenizer files (default, as in RouteLLM:
        `meta-llama/Meta-Llama-3-8B`, a gated Hub repo).
        """
        checkpoint, gguf_from_path = _gguf_file_of(checkpoint or ROUTELLM_CAUSAL_CHECKPOINT)
        gguf_file = gguf_file or gguf_from_path
        required = (gguf_file,) if gguf_file else ("config.json",)
        folder = ckpt.resolve_checkpoint(checkpoint, required, revision=revision, token=token)
        ckpt.check_router_type(folder, "causal_llm")
        settings = read_router_config(folder)
        if not gguf_file and settings.get("gguf_file"):
            named = str(settings["gguf_file"])
            if Path(named).name != named:  # a file of the folder, not a path out of it
                raise CheckpointError(
                    f"Checkpoint {folder}: router_config.json 'gguf_file' must be a file name "
                    f"in the folder, got {named!r}."
                )
            gguf_file = named
        if gguf_file:
            _require_gguf()
        else:
            _require_weights(folder)
        options = {k: settings[k] for k in _SETTINGS if k in settings} | kwargs
        options.setdefault("system_message", _read_text(folder / SYSTEM_FILE))
        options.setdefault("classifier_message", _read_text(folder / CLASSIFIER_FILE))
        if options["system_message"] is None:
            options["system_message"] = DEFAULT_SYSTEM_MESSAGE
        if not settings and not gguf_file:  # RouteLLM's published folder: its model pair
            options.setdefault("strong_model", ckpt.ROUTELLM_STRONG_MODEL)
            options.setdefault("weak_model", ckpt.ROUTELLM_WEAK_MODEL)
        router = cls(**options)
        router.tokenizer_ = _load_tokenizer(
            folder,
            gguf_file,
            tokenizer or settings.get("tokenizer") or ROUTELLM_BASE_TOKENIZER,
            token,
        )
        router.model_ = _load_model(folder, gguf_file, router.dtype, resolve_device(router.device))
        router._label_ids = router._resolve_label_ids(folder)
        router.gguf_file_ = gguf_file
        router.cache_key = f"causal_llm:{transformer_identity(folder)}:{router._settings_key()}"
        return router

    def _resolve_label_ids(self, folder: Path) -> list[int]:
        tokenizer = self.tokenizer_
        missing = [t for t in self.label_tokens if len(_single_id(tokenizer, t)) != 1]
        if missing and self.add_label_tokens:
            tokenizer.add_tokens(list(self.label_tokens), special_tokens=True)  # as RouteLLM
        ids = []
        for token in self.label_tokens:
            encoded = _single_id(tokenizer, token)
            if len(encoded) != 1:
                raise CheckpointError(
                    f"Label token {token!r} is not a single token of the tokenizer for {folder}."
                )
            ids.append(encoded[0])
        rows = self.model_.get_output_embeddings().weight.shape[0]
        if max(ids) >= rows:
            raise CheckpointError(
                f"The model at {folder} has {rows} output rows but label token "
                f"{self.label_tokens[int(np.argmax(ids))]!r} has id {max(ids)}: it was not "
                "fine-tuned with these label tokens. For an instruct model used zero-shot, pass "
                "label_tokens=('1', '2', '3', '4', '5') and answer_prefix='[['."
            )
        return ids

    def _settings_key(self) -> str:
        """Everything besides the folder's files that changes a score: the saved settings,
        the messages (a keyword argument overrides the folder's files), the GGUF file picked
        and the dtype the weights run in."""
        import hashlib

        settings = self.config() | {
            "system_message": self.system_message,
            "classifier_message": self.classifier_message,
            "gguf_file": getattr(self, "gguf_file_", None),
            "dtype": str(getattr(getattr(self, "model_", None), "dtype", self.dtype)),
        }
        fields = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(fields.encode()).hexdigest()[:8]

    # -- saving ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "router": "causal_llm",
            "format_version": ckpt.FORMAT_VERSION,
            "label_tokens": list(self.label_tokens),
            "score_threshold": self.score_threshold,
            "score": f"1 - P(label >= {self.score_threshold})",
            "prompt_format": self.prompt_format,
            "answer_prefix": self.answer_prefix,
            "max_length": self.max_length,
            "strong_model": self.strong_model,
            "weak_model": self.weak_model,
        }

    def save_pretrained(self, folder: str | Path, model_card: str | None = None) -> Path:
        """Transformers format plus the message files (RouteLLM's names), router_config.json
        and README.md. The tokenizer (with the label tokens) is saved beside the model."""
        self._check_loaded()
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(folder)
        self.tokenizer_.save_pretrained(folder)
        (folder / SYSTEM_FILE).write_text(self.system_message or "", encoding="utf-8")
        (folder / CLASSIFIER_FILE).write_text(
            self.classifier_message or DEFAULT_CLASSIFIER_MESSAGE, encoding="utf-8"
        )
        config = self.config()
        (folder / ROUTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (folder / "README.md").write_text(model_card or _default_card(config), encoding="utf-8")
        return folder


_FORMATS = ("auto", "llama3", "chat_template", "plain")
_SETTINGS = (
    "system_message",
    "classifier_message",
    "label_tokens",
    "score_threshold",
    "prompt_format",
    "answer_prefix",
    "max_length",
    "strong_model",
    "weak_model",
)


def _single_id(tokenizer: Any, token: str) -> list[int]:
    return list(tokenizer.encode(token, add_special_tokens=False))


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json"))


def _require_weights(folder: Path) -> None:
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        raise CheckpointError(
            f"causal_llm checkpoint folder {folder} is incomplete: missing model weights "
            "(model.safetensors, model-*-of-*.safetensors or pytorch_model.bin)."
        )


def _load_tokenizer(
    folder: Path, gguf_file: str | None, fallback: str | Path, token: str | bool | None = None
) -> Any:
    from transformers import AutoTokenizer

    if gguf_file:
        source, options = str(folder), {"gguf_file": gguf_file}
    elif _has_tokenizer(folder):
        source, options = str(folder), {}
    else:
        source, options = str(fallback), {}
    try:
        if source == str(fallback):
            source = str(_tokenizer_files(source, token))
        return AutoTokenizer.from_pretrained(source, **options)
    except ImportError as exc:
        if gguf_file:
            raise _gguf_missing(f"transformers: {exc}") from exc
        raise
    except (OSError, ValueError, CheckpointError) as exc:
        raise CheckpointError(
            f"causal_llm checkpoint folder {folder} has no tokenizer files, and the tokenizer "
            f"{source!r} could not be loaded ({type(exc).__name__}: {exc}). RouteLLM's checkpoint "
            f"uses {ROUTELLM_BASE_TOKENIZER} (gated on the Hub): pass tokenizer=<folder> "
            f'(load_router), or put "tokenizer": "<folder>" in {folder / "router_config.json"} '
            "(every command, the CLI included)."
        ) from exc


def _tokenizer_files(source: str, token: str | bool | None = None) -> Path:
    """A local folder with the tokenizer of `source` (a folder, or a Hub id whose tokenizer
    files alone are fetched through the same Hub cache as checkpoints, not its weights)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    patterns = ["tokenizer*", "special_tokens_map.json", "*.model", "vocab*", "merges.txt"]
    return Path(snapshot_download(source, allow_patterns=patterns + ["config.json"], token=token))


def _load_model(folder: Path, gguf_file: str | None, dtype: str | None, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {}
    if gguf_file:
        options["gguf_file"] = gguf_file
    if dtype is not None:
        options["dtype"] = dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **options)
    except ImportError as exc:
        if gguf_file:
            raise _gguf_missing(f"transformers: {exc}") from exc
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"Could not load the causal_llm model at {folder}: {type(exc).__name__}: {exc}"
        ) from exc
    return model.to(device).eval()


def _default_card(config: Mapping[str, Any]) -> str:
    return (
        "---\nlibrary_name: transformers\npipeline_tag: text-generation\n"
        "tags: [routellm, router, causal_llm]\n---\n\n"
        "# causal_llm router checkpoint\n\n"
        f"An LLM that rates prompts with the label tokens {', '.join(config['label_tokens'])}; "
        f"strong win rate = {config['score']} (strong: {config.get('strong_model')}, weak: "
        f"{config.get('weak_model')}), as RouteLLM's `causal_llm` router.\n"
    )
