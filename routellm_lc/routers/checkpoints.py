"""Router checkpoints in Hugging Face Hub layout: a folder with config.json, model.safetensors
and a README.md model card, loaded from a local path or a Hub id through the same code.

Also holds what is needed to read RouteLLM's published checkpoints
(`routellm/mf_gpt4_augmented`, `routellm/bert_gpt4_augmented`,
`routellm/causal_llm_gpt4_augmented`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from routellm_lc.errors import CheckpointError

#: Checkpoints shipped inside the package, addressable by short name.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"

#: RouteLLM's model id table for its published `mf` checkpoints (index = row of `P.weight`).
ROUTELLM_MF_MODEL_NAMES: tuple[str, ...] = (
    "RWKV-4-Raven-14B", "alpaca-13b", "chatglm-6b", "chatglm2-6b", "chatglm3-6b", "claude-1",
    "claude-2.0", "claude-2.1", "claude-instant-1", "codellama-34b-instruct",
    "deepseek-llm-67b-chat", "dolly-v2-12b", "dolphin-2.2.1-mistral-7b", "falcon-180b-chat",
    "fastchat-t5-3b", "gemini-pro", "gemini-pro-dev-api", "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-0314", "gpt-3.5-turbo-0613", "gpt-3.5-turbo-1106", "gpt-4-0125-preview",
    "gpt-4-0314", "gpt-4-0613", "gpt-4-1106-preview", "gpt4all-13b-snoozy", "guanaco-33b",
    "koala-13b", "llama-13b", "llama-2-13b-chat", "llama-2-70b-chat", "llama-2-7b-chat",
    "llama2-70b-steerlm-chat", "mistral-7b-instruct", "mistral-7b-instruct-v0.2",
    "mistral-medium", "mixtral-8x7b-instruct-v0.1", "mpt-30b-chat", "mpt-7b-chat",
    "nous-hermes-2-mixtral-8x7b-dpo", "oasst-pythia-12b", "openchat-3.5", "openchat-3.5-0106",
    "openhermes-2.5-mistral-7b", "palm-2", "pplx-70b-online", "pplx-7b-online",
    "qwen-14b-chat", "qwen1.5-4b-chat", "qwen1.5-72b-chat", "qwen1.5-7b-chat",
    "solar-10.7b-instruct-v1.0", "stablelm-tuned-alpha-7b", "starling-lm-7b-alpha",
    "stripedhyena-nous-7b", "tulu-2-dpo-70b", "vicuna-13b", "vicuna-33b", "vicuna-7b",
    "wizardlm-13b", "wizardlm-70b", "yi-34b-chat", "zephyr-7b-alpha", "zephyr-7b-beta",
)  # fmt: skip
ROUTELLM_STRONG_MODEL = "gpt-4-1106-preview"
ROUTELLM_WEAK_MODEL = "mixtral-8x7b-instruct-v0.1"
ROUTELLM_EMBEDDER = "litellm:text-embedding-3-small"


def resolve_checkpoint(
    checkpoint: str | os.PathLike[str],
    required: Iterable[str] = ("config.json",),
    *,
    revision: str | None = None,
) -> Path:
    """Return a local folder holding `checkpoint`'s files.

    `checkpoint` is, in order: an existing local folder; the name of a checkpoint bundled with
    this package (e.g. `mf_default`); or a Hugging Face Hub repo id (`owner/name`), fetched with
    `huggingface_hub.snapshot_download` (served from the local Hub cache when offline).
    Raises `CheckpointError` naming where it looked and which files were missing.
    """
    text = os.fspath(checkpoint)
    candidates = [Path(text).expanduser()]
    if "/" not in text and "\\" not in text:
        candidates.append(BUNDLED_DIR / text)
    for path in candidates:
        if path.is_dir():
            _require_files(path, required)
            return path
    if _looks_like_repo_id(text) and not Path(text).exists():
        return _download(text, required, revision)
    looked = ", ".join(str(p) for p in candidates)
    raise CheckpointError(
        f"Checkpoint {text!r} not found: no folder at {looked}, and it is not a Hub id "
        "of the form 'owner/name'."
    )


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _download(repo_id: str, required: Iterable[str], revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"Could not fetch checkpoint {repo_id!r} from the Hugging Face Hub and it is not in "
            f"the local Hub cache ({type(exc).__name__}: {exc}). Download it where the Hub is "
            "reachable, or pass a local folder."
        ) from exc
    _require_files(folder, required)
    return folder


def _require_files(folder: Path, required: Iterable[str]) -> None:
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"Checkpoint folder {folder} is incomplete: missing {', '.join(missing)}."
        )


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint folder {folder} has no config.json.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}.") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}.")
    return config


def require_keys(config: Mapping[str, Any], keys: Iterable[str], folder: Path) -> None:
    missing = [k for k in keys if k not in config]
    if missing:
        raise CheckpointError(
            f"{folder / 'config.json'} is missing required field(s): {', '.join(missing)}."
        )


def load_tensors(folder: Path, name: str = "model.safetensors") -> dict[str, Any]:
    """Tensors of a safetensors file as numpy arrays (no torch needed)."""
    from safetensors.numpy import load_file

    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"Checkpoint folder {folder} has no {name}.")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}.") from None


def write_safetensors(path: Path, arrays: Mapping[str, Any]) -> None:
    """Write numpy arrays as a safetensors file with the permissions of any new file (the
    umask's, e.g. 0644): `safetensors.numpy.save_file` creates its files 0600."""
    from safetensors.numpy import save

    path.write_bytes(save(dict(arrays)))


def save_checkpoint(
    folder: str | os.PathLike[str],
    config: Mapping[str, Any],
    tensors: Mapping[str, Any],
    model_card: str,
) -> Path:
    """Write a Hub-layout checkpoint folder (config.json, model.safetensors, README.md)."""
    import numpy as np

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
    write_safetensors(folder / "model.safetensors", arrays)
    (folder / "README.md").write_text(model_card)
    return folder


def embedder_label(embedder: Any) -> str:
    """How an embedder is named in a score-cache key: its spec string, else its `name`."""
    if isinstance(embedder, str):
        return embedder
    return str(getattr(embedder, "name", None) or type(embedder).__qualname__)


def scoring_key(router: str, checkpoint_id: str, **settings: Any) -> str:
    """A router's score-cache key: its checkpoint's content hash plus every load-time setting
    that changes its scores (`name=value`, sorted), so one folder loaded two ways (another
    strong/weak pair, another embedder) never shares cached scores."""
    parts = [f"{k}={settings[k]}" for k in sorted(settings)]
    return ":".join([router, checkpoint_id, *parts])


def checkpoint_identity(folder: Path) -> str:
    """A short content hash of config + weights: keys score caches to exact checkpoints."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        path = folder / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
