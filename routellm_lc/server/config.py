"""What a server serves: routers, the two models, where they live, limits and keys.

One `ServerConfig` comes from CLI flags, a YAML/JSON file with the same field names, and the
`ROUTELLM_LC_SERVER_KEYS` environment variable (comma-separated bearer keys).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from routellm_lc.costs import Price
from routellm_lc.decision import validate_threshold
from routellm_lc.errors import RouteLLMError

SERVER_KEYS_ENV = "ROUTELLM_LC_SERVER_KEYS"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class ServerConfigError(RouteLLMError, ValueError):
    """The server configuration (flags or file) is invalid."""


@dataclass
class ServerConfig:
    """Everything `create_app` needs. Field names are also the config-file keys."""

    routers: list[str] = field(default_factory=lambda: ["mf"])
    """Routers served, each as `router-<name>-<threshold>` model names."""
    checkpoints: dict[str, str] = field(default_factory=dict)
    """Checkpoint folder or Hub id per router name (absent: the router's bundled default)."""
    threshold: float = 0.5
    """Threshold of the ids listed by `/v1/models` and of the short name `router-<name>` (with
    `strong_share`: the controllers' initial threshold)."""
    strong_share: float | None = None
    """Target share of strong-model calls, strictly between 0 and 1: `router-<name>` (no
    threshold) then routes through one `StrongShareController` per router, which adapts its
    threshold to the scores of the requests it routes. None: a fixed threshold."""
    controller_state: str | None = None
    """JSON file of the controllers' state: loaded at start-up if it exists, written (atomically)
    every 10 s when it changed and on shutdown. Needs `strong_share`."""
    prices: dict[str, Any] = field(default_factory=dict)
    """Price overrides for `/metrics`' cost accounting, by model name (as `costs.model_price`
    finds them: `my-llama` also prices `openai/my-llama`): `{"input_per_million": x,
    "output_per_million": y}` in USD per million tokens (optionally `cache_read_per_million`),
    or a `costs.Price`. Other models are priced from LiteLLM's bundled price map."""
    device: str | None = None
    """Torch device of routers that run a model (`bert`, `causal_llm`); None: theirs ("auto":
    a GPU when torch sees one). `cpu` keeps a GPU free for a local LLM."""
    strong: str | None = None
    """Strong model as a LiteLLM string (default: `$ROUTELLM_LC_STRONG_MODEL` or openai/gpt-4o)."""
    weak: str | None = None
    """Weak model as a LiteLLM string (default: `$ROUTELLM_LC_WEAK_MODEL` or gpt-4o-mini)."""
    api_base: str | None = None
    """OpenAI-compatible base URL for both models (per-model overrides below)."""
    api_key: str | None = None
    """Upstream API key for both models (default: the provider's usual environment variable)."""
    strong_api_base: str | None = None
    weak_api_base: str | None = None
    strong_api_key: str | None = None
    weak_api_key: str | None = None
    server_keys: list[str] = field(default_factory=list)
    """Bearer keys clients must present; empty = no auth (also `ROUTELLM_LC_SERVER_KEYS`)."""
    host: str = "127.0.0.1"
    port: int = 6060
    route_on: Literal["last_user", "conversation"] = "last_user"
    """What the router scores, as in `RouteLLMChat.route_on`."""
    timeout: float = 60.0
    """Seconds an upstream call may take (per attempt; per read while streaming)."""
    connect_timeout: float = 5.0
    """Seconds to open a connection upstream."""
    graceful_timeout: float | None = None
    """Seconds a shutdown waits for requests and streams in flight before closing them (None:
    as long as they take, uvicorn's default; set it below a container's grace period)."""
    max_retries: int = 0
    """Retries inside LiteLLM for non-OpenAI providers (the fallback model is the retry)."""
    passthrough_fields: list[str] = field(default_factory=lambda: ["top_k"])
    """Request fields beyond OpenAI's that providers LiteLLM translates (Anthropic, Gemini,
    Bedrock, Ollama, ...) get as they are; any other unknown field is refused with 400 for
    them. OpenAI-compatible endpoints get every field."""
    fallback: bool = True
    """Answer with the other model when the chosen one fails before any byte was sent."""
    forwarding: Literal["auto", "litellm"] = "auto"
    """`auto`: OpenAI-compatible upstreams get a direct HTTP relay, other providers LiteLLM;
    `litellm`: everything through `litellm.acompletion` (slower; for comparison)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies get 413."""
    max_connections: int = 512
    """Upstream connection-pool size."""
    access_log: bool = False
    log_level: str = "warning"

    def price_overrides(self) -> dict[str, Price]:
        """`prices` as `costs.Price` objects (ServerConfigError if one is malformed)."""
        return {model: _price(model, value) for model, value in self.prices.items()}

    def __post_init__(self) -> None:
        from routellm_lc.model_names import litellm_model_string
        from routellm_lc.models import default_strong_model, default_weak_model

        if isinstance(self.controller_state, os.PathLike):
            self.controller_state = os.fspath(self.controller_state)
        _check_types(self)

        # LangChain's `openai:gpt-4o` spelling is LiteLLM's `openai/gpt-4o`, as in RouteLLMChat
        self.strong = litellm_model_string(self.strong or default_strong_model())
        self.weak = litellm_model_string(self.weak or default_weak_model())
        if isinstance(self.routers, str):
            self.routers = [r for r in self.routers.replace(",", " ").split() if r]
        if not self.routers:
            raise ServerConfigError("Serve at least one router (e.g. --routers mf).")
        if isinstance(self.server_keys, str):
            self.server_keys = _split_keys(self.server_keys)
        if any(not isinstance(k, str) or not k.strip() for k in self.server_keys):
            # `--server-key "$KEY"` with KEY unset: an empty key would match a request that
            # sends no key at all, while the start-up line says auth is on
            raise ServerConfigError(
                "A server key is empty (is the variable you passed to --server-key set?): give "
                "non-empty keys, or none to serve without auth."
            )
        self.threshold = validate_threshold(self.threshold)
        if self.strong_share is not None and not 0.0 < self.strong_share < 1.0:  # NaN too
            raise ServerConfigError(
                f"strong_share must be strictly between 0 and 1, got {self.strong_share!r}: "
                "it is the share of requests the strong model answers. A share of 0 or 1 needs "
                "no router: call the weak (or the strong) model directly."
            )
        if self.controller_state is not None and self.strong_share is None:
            raise ServerConfigError(
                "controller_state saves the strong-share controllers' state: set strong_share "
                "(--strong-share) too."
            )
        self.price_overrides()  # a malformed price fails at start-up
        if isinstance(self.passthrough_fields, str):
            self.passthrough_fields = self.passthrough_fields.replace(",", " ").split()
        bad = [f for f in self.passthrough_fields if not isinstance(f, str) or not f]
        if bad:
            raise ServerConfigError(f"passthrough_fields must be field names, got {bad!r}.")
        if self.route_on not in ("last_user", "conversation"):
            raise ServerConfigError(
                f"route_on must be 'last_user' or 'conversation', got {self.route_on!r}."
            )
        if self.forwarding not in ("auto", "litellm"):
            raise ServerConfigError(
                f"forwarding must be 'auto' or 'litellm', got {self.forwarding!r}."
            )
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ServerConfigError("timeout and connect_timeout must be positive seconds.")
        if self.max_body_bytes <= 0:
            raise ServerConfigError("max_body_bytes must be a positive number of bytes.")
        if not 0 <= self.port <= 65535:
            raise ServerConfigError(f"port must be 0 to 65535, got {self.port}.")
        if self.max_retries < 0 or self.max_connections < 1:
            raise ServerConfigError("max_retries must be ≥ 0 and max_connections ≥ 1.")
        self.log_level = self.log_level.lower()
        if self.log_level not in LOG_LEVELS:
            raise ServerConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}."
            )

    @classmethod
    def from_sources(
        cls, file: str | Path | None = None, env: dict[str, str] | None = None, **overrides: Any
    ) -> ServerConfig:
        """File values, then the non-None `overrides` (CLI flags), then env keys appended."""
        from_file: dict[str, Any] = load_config_file(file) if file else {}
        values = {**from_file, **{k: v for k, v in overrides.items() if v is not None}}
        env = os.environ if env is None else env
        keys = list(values.get("server_keys") or [])
        if isinstance(values.get("server_keys"), str):
            keys = _split_keys(values["server_keys"])
        keys += [k for k in _split_keys(env.get(SERVER_KEYS_ENV, "")) if k not in keys]
        if not keys:
            # `ROUTELLM_LC_SERVER_KEYS="$KEYS"`, or a config's `server_keys: ${KEYS}` (YAML
            # null, "" or []), with KEYS unset: auth was meant, and none would be on
            if SERVER_KEYS_ENV in env:
                raise ServerConfigError(
                    f"{SERVER_KEYS_ENV} is set but holds no key: give the keys "
                    "(comma-separated), or unset it to serve without auth."
                )
            if "server_keys" in from_file:
                raise ServerConfigError(
                    "server_keys in the config file is set but holds no key: give the keys "
                    "(comma-separated), or leave the field out to serve without auth."
                )
        values["server_keys"] = keys
        if overrides.get("passthrough_fields"):
            # `--passthrough-field` adds to the file's (or the default) passthrough fields
            default = cls.__dataclass_fields__["passthrough_fields"].default_factory  # type: ignore[misc]
            base = from_file.get("passthrough_fields", default())
            base = [base] if isinstance(base, str) else list(base or [])
            flags = overrides["passthrough_fields"]
            values["passthrough_fields"] = base + [f for f in flags if f not in base]
        if overrides.get("prices") and isinstance(from_file.get("prices"), dict):
            # `--price` flags add to (and, model by model, override) the file's prices
            values["prices"] = {**from_file["prices"], **overrides["prices"]}
        if overrides.get("checkpoints") and isinstance(from_file.get("checkpoints"), dict):
            # `--checkpoint` flags add to (and, router by router, override) the file's
            values["checkpoints"] = {**from_file["checkpoints"], **overrides["checkpoints"]}
        return cls(**values)


_KINDS = {
    "threshold": "number",
    "strong_share": "optional number",
    "controller_state": "optional string",
    "timeout": "number",
    "connect_timeout": "number",
    "graceful_timeout": "optional number",
    "port": "integer",
    "max_retries": "integer",
    "max_body_bytes": "integer",
    "max_connections": "integer",
    "fallback": "boolean",
    "access_log": "boolean",
    "log_level": "string",
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind.startswith("optional "):
        return value is None or _is_kind(value, kind.removeprefix("optional "))
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    types = {"number": (int, float), "integer": (int,), "string": (str,)}[kind]
    return isinstance(value, types)


def _check_types(config: ServerConfig) -> None:
    """A config file's `timeout: "30"` or `fallback: "false"` is a mistake to name, not to
    coerce ("false" would be true) or to crash on later."""
    for name, kind in _KINDS.items():
        value = getattr(config, name)
        if not _is_kind(value, kind):
            kind = kind.removeprefix("optional ")
            wanted = {"integer": "an integer", "boolean": "true or false"}.get(kind, f"a {kind}")
            raise ServerConfigError(f"{name} must be {wanted}, got {value!r}.")
    for name in ("routers", "server_keys", "passthrough_fields"):
        value = getattr(config, name)
        if not isinstance(value, str | list) or not all(isinstance(v, str) for v in value):
            raise ServerConfigError(f"{name} must be a list of strings, got {value!r}.")
    if not isinstance(config.checkpoints, dict):
        raise ServerConfigError(
            f"checkpoints must map router names to folders, got {config.checkpoints!r}."
        )
    if not isinstance(config.prices, dict):
        raise ServerConfigError(
            "prices must map model names to {input_per_million: x, output_per_million: y}, "
            f"got {config.prices!r}."
        )


#: A `prices` entry's keys (USD per million tokens); `cache_read_per_million` is optional.
PRICE_KEYS = ("input_per_million", "output_per_million", "cache_read_per_million")


def _price(model: Any, value: Any) -> Price:
    """One `prices` entry as a `costs.Price`."""
    if isinstance(value, Price):
        return value
    usage = (
        f"prices.{model} must be {{input_per_million: x, output_per_million: y}} (USD per "
        "million tokens, optionally cache_read_per_million)"
    )
    if not isinstance(model, str) or not model or not isinstance(value, Mapping):
        raise ServerConfigError(f"{usage}, got {value!r}.")
    unknown = sorted(set(value) - set(PRICE_KEYS))
    missing = [k for k in PRICE_KEYS[:2] if k not in value]
    if unknown or missing:
        raise ServerConfigError(f"{usage}, got {dict(value)!r}.")
    rates = []
    for key in PRICE_KEYS:
        rate = value.get(key)
        if key == PRICE_KEYS[2] and rate is None:
            rates.append(None)
            continue
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate >= 0:
            raise ServerConfigError(f"{usage}: {key} must be a number ≥ 0, got {rate!r}.")
        if math.isinf(rate):
            raise ServerConfigError(f"{usage}: {key} must be finite, got {rate!r}.")
        rates.append(float(rate))
    return Price.per_million(rates[0], rates[1], rates[2])


def parse_prices(pairs: list[Any], name: str = "--price") -> dict[str, dict[str, float]]:
    """`MODEL=IN,OUT` pairs (USD per million input and output tokens; the `--price` flag's, or a
    config file's `price`) as a `prices` mapping."""
    prices: dict[str, dict[str, float]] = {}
    for pair in pairs:
        model, sep, rates = str(pair).rpartition("=")
        parts = rates.split(",")
        try:
            if not sep or not model or len(parts) != 2:
                raise ValueError
            values = [float(p) for p in parts]
            if not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError
        except ValueError:
            raise ServerConfigError(
                f"{name} takes MODEL=IN,OUT (USD per million input and output tokens, numbers "
                f"≥ 0, e.g. my-llama=0.2,0.6), got {pair!r}."
            ) from None
        prices[model] = {"input_per_million": values[0], "output_per_million": values[1]}
    return prices


def _split_keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping whose keys are `ServerConfig` fields, or RouteLLM's router config
    (`mf: {checkpoint_path: routellm/mf_gpt4_augmented}`, ...), read as checkpoints."""
    path = Path(path)
    data = _read_mapping(path)
    if _is_routellm_config(data):
        return {"checkpoints": _routellm_checkpoints(data, path)}
    data = _flag_names(data, path)
    known = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ServerConfigError(
            f"Unknown settings in {path}: {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )
    return data


#: The routers RouteLLM's own config files (`config.example.yaml`) name at their top level.
ROUTELLM_ROUTERS = ("mf", "sw_ranking", "bert", "causal_llm", "random")


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServerConfigError(f"Cannot read config file {path}: {exc.strerror}.") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise different types; both mean "bad file"
        raise ServerConfigError(f"Config file {path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ServerConfigError(f"Config file {path} must hold a mapping of settings.")
    return data


def routellm_config_checkpoints(path: str | Path) -> dict[str, str]:
    """Each router's `checkpoint_path` from RouteLLM's router config file (YAML or JSON, as
    `routellm.calibrate_threshold --config` reads it); `ServerConfigError` for any other file."""
    path = Path(path)
    data = _read_mapping(path)
    if not _is_routellm_config(data):
        raise ServerConfigError(
            f"{path} is not a RouteLLM router config (router names, each with its "
            "checkpoint_path, as in RouteLLM's config.example.yaml)."
        )
    return _routellm_checkpoints(data, path)


#: RouteLLM config keys of its `sw_ranking`, which embeds Arena battle datasets from the Hub
#: at start-up; this package's `sw_ranking` loads a checkpoint instead (`Controller` refuses
#: them for a loaded sw_ranking; `serve` skips them).
ROUTELLM_SW_RANKING_KEYS = ("arena_battle_datasets", "arena_embedding_datasets")


def _is_routellm_config(data: dict[str, Any]) -> bool:
    """A RouteLLM router config (`mf: {checkpoint_path: ...}`, as `routellm.openai_server
    --config` reads), not a file of settings: every key a router, every value a mapping."""
    return bool(data) and all(
        key in ROUTELLM_ROUTERS and isinstance(value, dict | None) for key, value in data.items()
    )


def _routellm_checkpoints(data: dict[str, Any], path: Path) -> dict[str, str]:
    """RouteLLM's router config as checkpoints: each router's `checkpoint_path`. Its
    `sw_ranking` entry names Arena datasets, which this package's sw_ranking does not load
    (a served sw_ranking then needs `--checkpoint sw_ranking=DIR`)."""
    checkpoints = {}
    for router, options in data.items():
        options = options or {}
        unknown = sorted(set(options) - {"checkpoint_path", *ROUTELLM_SW_RANKING_KEYS})
        if unknown:
            raise ServerConfigError(
                f"{path}: RouteLLM router config for {router!r} has settings this server does not "
                f"read: {', '.join(unknown)} (it reads checkpoint_path)."
            )
        if options.get("checkpoint_path"):
            checkpoints[router] = str(options["checkpoint_path"])
    return checkpoints


def parse_checkpoints(pairs: list[Any], name: str = "checkpoint") -> dict[str, str]:
    """`ROUTER=PATH` pairs (the `--checkpoint` flag's, or a config file's `checkpoint`) as a
    router → checkpoint mapping."""
    checkpoints = {}
    for pair in pairs:
        router, sep, folder = str(pair).partition("=")
        if not sep or not router or not folder:
            raise ServerConfigError(f"{name} takes ROUTER=PATH, got {pair!r}.")
        checkpoints[router] = folder
    return checkpoints


def _flag_names(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Accept the CLI flags' own names where they differ from the fields: `server_key`
    (`--server-key`), `checkpoint` (`--checkpoint ROUTER=PATH`, one or a list), `price`
    (`--price MODEL=IN,OUT`, one or a list), `passthrough_field` (one or a list) and
    `no_fallback` (`--no-fallback`)."""
    data = dict(data)
    if "price" in data:
        if "prices" in data:
            raise ServerConfigError(f"{path} sets both price and prices: keep one.")
        value = data.pop("price")
        data["prices"] = parse_prices(value if isinstance(value, list) else [value], "price")
    flags = (
        ("server_key", "server_keys"),
        ("checkpoint", "checkpoints"),
        ("passthrough_field", "passthrough_fields"),
    )
    for flag, name in flags:
        if flag not in data:
            continue
        if name in data:
            raise ServerConfigError(f"{path} sets both {flag} and {name}: keep one.")
        value = data.pop(flag)
        if name == "checkpoints" and not isinstance(value, dict):
            value = parse_checkpoints(value if isinstance(value, list) else [value])
        listed = name in ("server_keys", "passthrough_fields") and isinstance(value, str)
        data[name] = [value] if listed else value
    if "no_fallback" in data:
        if "fallback" in data:
            raise ServerConfigError(f"{path} sets both no_fallback and fallback: keep one.")
        value = data.pop("no_fallback")
        if not isinstance(value, bool):
            raise ServerConfigError(f"no_fallback must be true or false, got {value!r}.")
        data["fallback"] = not value
    return data
