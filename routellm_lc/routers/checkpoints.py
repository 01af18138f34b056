"""Router checkpoints in Hugging Face Hub layout: a folder with config.json, model.safetensors
and a README.md model card, loaded from a local path or a Hub id through the same code.

Also holds what is needed to read RouteLLM's published checkpoints
(`routellm/mf_gpt4_augmented`, `routellm/bert_gpt4_augmented`,
`routellm/causal_llm_gpt4_augmented`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from routellm_lc.errors import CheckpointError, error_chain

log = logging.getLogger("routellm_lc")

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

#: The checkpoint format this version writes (`format_version` in config.json, or in
#: router_config.json for `bert` and `causal_llm`) and the newest it reads: a change that an
#: older reader would silently misread (a new field that changes scores) raises it.
FORMAT_VERSION = 1


def resolve_checkpoint(
    checkpoint: str | os.PathLike[str],
    required: Iterable[str] = ("config.json",),
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder holding `checkpoint`'s files.

    `checkpoint` is, in order: an existing local folder; the name of a checkpoint bundled with
    this package (e.g. `mf_default`); or a Hugging Face Hub repo id (`owner/name`), fetched with
    `huggingface_hub.snapshot_download` (served from the local Hub cache when offline).
    A Hub id may name its revision (a branch, a tag, a commit hash) after an `@`:
    `owner/name@v2`, as `revision=` does (so a command line's `--checkpoint` can pin one).
    `token` is the Hub token for a private or gated repo (`huggingface_hub`'s meaning: None
    reads `HF_TOKEN` or the saved login, False sends none); it is never logged or stored.
    Raises `CheckpointError` naming where it looked and which files were missing.
    """
    text = os.fspath(checkpoint)
    try:
        candidates = [Path(text).expanduser()]
    except RuntimeError as exc:  # `~nosuchuser/...`
        raise CheckpointError(f"Checkpoint {text!r}: {exc}") from None
    if "/" not in text and "\\" not in text:
        candidates.append(BUNDLED_DIR / text)
    for path in candidates:
        if path.is_dir():
            if revision is not None:  # a pin the local folder cannot honour: never ignored
                raise CheckpointError(
                    f"revision={revision!r} pins a Hugging Face Hub revision, but {text!r} is "
                    f"the local folder {path}: drop the revision to load the folder, or "
                    "run from another folder to load the Hub id."
                )
            _require_files(path, required)
            return path
    repo_id, at, pinned = text.rpartition("@")
    if at and _looks_like_repo_id(repo_id) and pinned and not Path(text).exists():
        if revision is not None and revision != pinned:
            raise CheckpointError(
                f"{text!r} names revision {pinned!r} and revision={revision!r} another."
            )
        return _download(repo_id, required, pinned, token)
    if _looks_like_repo_id(text) and not Path(text).exists():
        return _download(text, required, revision, token)
    looked = ", ".join(str(p) for p in candidates)
    raise CheckpointError(
        f"Checkpoint {text!r} not found: no folder at {looked}, and it is not a Hub id "
        "of the form 'owner/name'."
    )


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


#: Seconds the Hub may take to answer whether a checkpoint in the local Hub cache is current
#: (`$ROUTELLM_LC_HUB_TIMEOUT`): past them the cached copy is used. huggingface_hub falls back
#: to its cache when the Hub is unreachable, but waits without end on a connection that opens
#: and never answers (a stalled proxy). Downloading a newer revision is not timed.
HUB_CHECK_SECONDS = 20.0


def _download(
    repo_id: str, required: Iterable[str], revision: str | None, token: str | bool | None = None
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    required = list(required)
    failures = (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError)
    cached = None
    with contextlib.suppress(*failures):
        cached = Path(
            snapshot_download(repo_id, revision=revision, local_files_only=True, token=token)
        )
    # A snapshot with some of the files (a model card fetched alone) is no copy to keep: the
    # download below fetches the rest of the same commit.
    usable = cached if cached is not None and not _missing(cached, required) else None
    if usable is not None and not _newer_on_hub(repo_id, revision, usable, token):
        return usable
    try:
        if usable is None:
            _hub_answers(repo_id, revision, token)
        folder = Path(snapshot_download(repo_id, revision=revision, token=token))
        _require_files(folder, required)
    except Exception as exc:  # also httpx's errors, which huggingface_hub lets out
        if usable is None:
            if isinstance(exc, CheckpointError):
                raise
            partial = (
                f" The local Hub cache holds {cached} without {', '.join(_missing(cached, required))}."
                if cached is not None
                else " It is not in the local Hub cache."
            )
            at = f" at revision {revision!r}" if revision is not None else ""
            raise CheckpointError(
                f"Could not fetch checkpoint {repo_id!r}{at} from the Hugging Face Hub "
                f"({type(exc).__name__}: {exc}).{partial} Download it where the Hub is "
                "reachable, or pass a local folder."
            ) from exc
        log.warning(
            "Could not download the newer revision of %s (%s: %s): using the copy in the "
            "local Hub cache, %s",
            repo_id,
            type(exc).__name__,
            exc,
            usable,
        )
        _point_ref_at(usable, revision)
        folder = usable
    return folder


def _newer_on_hub(
    repo_id: str, revision: str | None, cached: Path, token: str | bool | None = None
) -> bool:
    """Whether the Hub names another commit for `revision` than the cached snapshot's (its
    folder's name). Asked with a deadline (`ROUTELLM_LC_HUB_TIMEOUT`): no answer in time, or
    an error, keeps the cached copy, with a warning, as huggingface_hub keeps it when the Hub
    is unreachable. `HF_HUB_OFFLINE=1` skips the question."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE or (revision is not None and revision == cached.name):
        return False  # offline, or a commit asked for by its hash: it cannot change
    seconds = _hub_timeout()
    try:
        sha = HfApi(token=token).repo_info(repo_id, revision=revision, timeout=seconds).sha
    except Exception as exc:
        log.warning(
            "The Hugging Face Hub did not confirm %s (%s: %s): using the copy in the local Hub "
            "cache, %s (HF_HUB_OFFLINE=1 skips the check)",
            repo_id,
            type(exc).__name__,
            exc,
            cached,
        )
        return False
    return bool(sha) and sha != cached.name


def _hub_timeout() -> float:
    raw = os.environ.get("ROUTELLM_LC_HUB_TIMEOUT", str(HUB_CHECK_SECONDS))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise CheckpointError(
            f"ROUTELLM_LC_HUB_TIMEOUT must be a number of seconds above 0, got {raw!r}."
        )
    return seconds


def _hub_answers(repo_id: str, revision: str | None, token: str | bool | None = None) -> None:
    """Before a first download: does the Hub answer about `repo_id` within
    `ROUTELLM_LC_HUB_TIMEOUT`? huggingface_hub's own first request has no deadline, so a mirror
    that accepts the connection and never answers hung loading (and `serve`'s start-up) for
    good; the download itself, once the Hub answers, is not timed."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return  # snapshot_download says it is offline
    seconds = _hub_timeout()
    try:
        HfApi(token=token).repo_info(repo_id, revision=revision, timeout=seconds)
    except Exception as exc:
        if _timed_out(exc):
            raise CheckpointError(
                f"The Hugging Face Hub did not answer about {repo_id!r} within {seconds:g} s "
                f"({type(exc).__name__}), and it is not in the local Hub cache. Raise "
                "ROUTELLM_LC_HUB_TIMEOUT, or download it where the Hub answers."
            ) from exc
        # any other error (not found, no access): snapshot_download reports it as usual


def _timed_out(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is a network timeout (httpx's,
    requests', the standard library's): by type, never by the text of a Hub's answer."""
    return any(
        isinstance(link, TimeoutError)
        or any(
            cls.__name__ in ("TimeoutException", "Timeout", "ReadTimeout", "ConnectTimeout")
            and cls.__module__.split(".")[0] in ("httpx", "httpcore", "requests", "urllib3")
            for cls in type(link).__mro__
        )
        for link in error_chain(error)
    )


def _point_ref_at(cached: Path, revision: str | None) -> None:
    """After a failed download of a newer revision, point the branch's ref in the Hub cache
    back at the snapshot still there: huggingface_hub moves it first, and the next offline load
    would find no copy at all."""
    name = revision or "main"
    if Path(name).is_absolute() or ".." in Path(name).parts:  # a ref name, never a path out
        return
    ref = cached.parent.parent / "refs" / name
    with contextlib.suppress(OSError):
        if ref.is_file() and ref.read_text(encoding="utf-8").strip() != cached.name:
            ref.write_text(cached.name, encoding="utf-8")


def _missing(folder: Path, required: Iterable[str]) -> list[str]:
    return [name for name in required if not (folder / name).is_file()]


def _require_files(folder: Path, required: Iterable[str]) -> None:
    missing = _missing(folder, required)
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


#: Where our checkpoints say which router wrote them: config.json (mf, sw_ranking), or
#: router_config.json beside a transformers config.json (bert, causal_llm).
_ROUTER_FIELD_FILES = ("config.json", "router_config.json")


def _declaring_config(folder: Path) -> tuple[dict[str, Any], str] | None:
    """(config, file) of the first of the folder's config files with a "router" field."""
    for name in _ROUTER_FIELD_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent or unreadable: the loader reports it
            continue
        if isinstance(data, dict) and isinstance(data.get("router"), str):
            return data, name
    return None


def declared_router(folder: Path) -> tuple[str, str] | None:
    """(router name, file) from the first of the folder's config files with a "router" field;
    None for a folder without one (RouteLLM's published checkpoints)."""
    found = _declaring_config(folder)
    return None if found is None else (found[0]["router"], found[1])


def check_router_type(folder: Path, expected: str) -> None:
    """Refuse a folder written by another router type, naming it: loading a `sw_ranking`
    folder as `mf` would otherwise fail on "missing required field(s)"; and one written in a
    newer checkpoint format (`format_version`), whose new fields this version would ignore
    and score without."""
    found = _declaring_config(folder)
    if found is None:
        return
    config, name = found
    version = config.get("format_version", 1)  # checkpoints before the field are version 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{folder / name}: format_version must be a whole number ≥ 1.")
    if version > FORMAT_VERSION:
        from routellm_lc import __version__

        raise CheckpointError(
            f"{folder} was written in checkpoint format {version}, newer than this "
            f"routellm-lc ({__version__}) reads (up to {FORMAT_VERSION}): upgrade routellm-lc "
            "to load it."
        )
    if config["router"] == expected:
        return
    router = config["router"]
    raise CheckpointError(
        f'{folder} holds a `{router}` checkpoint ({name} says "router": "{router}"), not '
        f"one for `{expected}`: load it as {router} (load_router({router!r}, checkpoint=...); "
        f"on the command line --router {router} or --checkpoint {router}=PATH)."
    )


def require_keys(config: Mapping[str, Any], keys: Iterable[str], folder: Path) -> None:
    missing = [k for k in keys if k not in config]
    if missing:
        raise CheckpointError(
            f"{folder / 'config.json'} is missing required field(s): {', '.join(missing)}."
        )


def config_error(folder: Path, key: str, problem: str) -> CheckpointError:
    """The error for a config.json field that is present but unusable."""
    return CheckpointError(f"{folder / 'config.json'}: {key} {problem}.")


def config_number(value: Any, key: str, folder: Path, *, minimum: float | None = None) -> float:
    """`value` (config field `key`) as a finite float, at least `minimum`: a string or NaN
    there would otherwise load and fail (or score NaN) on the first request."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise config_error(folder, key, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise config_error(folder, key, f"must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise config_error(folder, key, f"must be at least {minimum:g}, got {value!r}")
    return number


def config_whole(value: Any, key: str, folder: Path, *, minimum: int = 1) -> int:
    """`value` (config field `key`) as a whole number, at least `minimum`."""
    number = config_number(value, key, folder, minimum=minimum)
    if not number.is_integer():
        raise config_error(folder, key, f"must be a whole number, got {value!r}")
    return int(number)


def config_vector(
    value: Any, key: str, folder: Path, *, length: int | None = None, min_length: int = 0
) -> Any:
    """`value` (config field `key`) as a 1-d float64 array of finite numbers: of `length`
    when given (a shorter one would broadcast silently), and of at least `min_length`."""
    import numpy as np

    try:
        if isinstance(value, str | bytes | Mapping):
            raise TypeError
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise config_error(folder, key, "must be a list of numbers") from None
    if array.ndim != 1:
        raise config_error(folder, key, "must be a flat list of numbers")
    if length is not None and len(array) != length:
        raise config_error(folder, key, f"has {len(array)} values, expected {length}")
    if len(array) < min_length:
        raise config_error(folder, key, f"has {len(array)} values, needs at least {min_length}")
    if not np.isfinite(array).all():
        raise config_error(folder, key, "holds NaN or infinite values")
    return array


def config_names(value: Any, key: str, folder: Path) -> list[str]:
    """`value` (config field `key`) as a list of distinct strings."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise config_error(folder, key, f"must be a list of names, got {value!r}")
    repeated = sorted({v for v in value if value.count(v) > 1})
    if repeated:
        raise config_error(folder, key, f"repeats {', '.join(repeated)}")
    return list(value)


#: Set to 1 to load checkpoints whose config.json names a remote (`litellm:`) embedder.
ALLOW_REMOTE_EMBEDDER_ENV = "ROUTELLM_LC_ALLOW_REMOTE_EMBEDDER"


def checkpoint_embedder(config: Mapping[str, Any], folder: Path) -> str:
    """The embedder a checkpoint's config.json names (default `local`), as data, not an order.

    A `litellm:` embedder would send every prompt the router scores to a remote API, with the
    user's provider key: a checkpoint from someone else must not choose that. It is loaded
    only when the user opts in (`ROUTELLM_LC_ALLOW_REMOTE_EMBEDDER=1`, or passing the embedder
    explicitly, which does not come here), and a checkpoint never picks an endpoint (a model
    string holding `://` is refused even then: pass it yourself)."""
    spec = config.get("embedder", "local")
    if not isinstance(spec, str) or not spec:
        raise config_error(folder, "embedder", f"must be an embedder name, got {spec!r}")
    if not spec.startswith("litellm:"):
        return spec
    if "://" in spec:
        raise config_error(
            folder,
            "embedder",
            f"names an endpoint ({spec!r}): a checkpoint cannot choose where prompts are sent; "
            "pass the embedder yourself (embedder=...) if you mean it",
        )
    if os.environ.get(ALLOW_REMOTE_EMBEDDER_ENV, "").strip().lower() not in ("1", "true", "yes"):
        raise CheckpointError(
            f"Checkpoint {folder} embeds with a remote API ({spec}): every prompt it scores "
            f"would be sent there with your provider key. To accept that, pass "
            f"embedder={spec!r} (load_router / RouteLLMChat), or set "
            f"{ALLOW_REMOTE_EMBEDDER_ENV}=1 (the command line)."
        )
    return spec


def check_embedder(embedder: Any, width: int, folder: Path) -> None:
    """Refuse at load an embedder a checkpoint cannot use: an unknown spec, or one whose
    output width is known without embedding anything and is not `width`.

    The width is known for an embedder instance with a `dim` and for `local…` specs (building
    one reads its model's config.json only). An `st:` spec would load its model here and a
    `litellm:` one knows its width after a call: both are checked on first use instead
    (`embedding_width_error`), as is an instance whose `dim` is unset.
    """
    if isinstance(embedder, str):
        if embedder.startswith(("st:", "litellm:")):
            return
        from routellm_lc.embeddings import get_embedder

        try:
            embedder = get_embedder(embedder)
        except (ValueError, CheckpointError) as exc:
            raise config_error(folder, "embedder", f"cannot be used: {exc}") from None
    got = getattr(embedder, "dim", None)
    if isinstance(got, int) and got > 0 and got != width:
        raise embedding_width_error(embedder, got, width, f"Checkpoint {folder}")


def embedding_width_error(embedder: Any, got: int, width: int, where: str) -> CheckpointError:
    """The error for an embedder whose vectors do not fit the checkpoint's weights."""
    return CheckpointError(
        f"{where}: embedder {embedder_label(embedder)!r} gives {got}-d embeddings, but the "
        f"checkpoint was trained on {width}-d ones. Load it with the embedder it was trained "
        "with (config.json 'embedder')."
    )


def load_tensors(folder: Path, name: str = "model.safetensors") -> dict[str, Any]:
    """Tensors of a safetensors file as numpy arrays (no torch needed). Refuses NaN or
    infinite weights: they would load fine and turn every score into NaN."""
    import numpy as np
    from safetensors.numpy import load_file

    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"Checkpoint folder {folder} has no {name}.")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}.") from None
    bad = [k for k, v in tensors.items() if v.dtype.kind in "fc" and not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite values in: {', '.join(sorted(bad))}.")
    return tensors


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

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n", encoding="utf-8")
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
    write_safetensors(folder / "model.safetensors", arrays)
    (folder / "README.md").write_text(model_card, encoding="utf-8")
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
