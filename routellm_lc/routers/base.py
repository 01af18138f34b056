"""The router interface, the name → class registry and `load_router`.

A router answers one question for a batch of prompts: the probability that the strong model
beats the weak one on each. Route to strong iff score ≥ threshold (RouteLLM's rule, so its
thresholds mean the same here).
"""

from __future__ import annotations

import importlib
import math
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from routellm_lc.errors import DeviceError, RouterOutputError, UnknownRouterError

R = TypeVar("R", bound="Router")

_REGISTRY: dict[str, type[Router]] = {}

# Built-in routers live in their own modules, imported on first use so that
# `import routellm_lc` stays light (torch, transformers load only when a router needs them).
_BUILTIN_MODULES: dict[str, str] = {
    "random": "routellm_lc.routers.random",
    "mf": "routellm_lc.routers.mf",
    "sw_ranking": "routellm_lc.routers.sw_ranking",
    "bert": "routellm_lc.routers.bert",
    "causal_llm": "routellm_lc.routers.causal_llm",
}


class Router(ABC):
    """Scores prompts with the strong model's predicted win rate over the weak model.

    Subclasses implement `strong_win_rate` over a batch; everything else (single prompts,
    thresholds, decisions) is built on top of it.
    """

    name: ClassVar[str] = ""
    #: True for routers that run a torch model and take a `device` argument (`bert`,
    #: `causal_llm`): the CLI's `--device` and `load_routers(device=...)` reach only these.
    uses_device: ClassVar[bool] = False
    #: True for routers whose `fit` learns only from battles between the two models they
    #: score (`bert`'s 3-way classifier); `mf` and `sw_ranking` learn from every battle.
    fits_scored_pair_only: ClassVar[bool] = False

    @abstractmethod
    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        """Return a float array of shape (len(prompts),) with values in [0, 1]."""

    def route(self, prompts: Sequence[str], threshold: float) -> np.ndarray:
        """Boolean array: True where the strong model should answer."""
        from routellm_lc.decision import validate_threshold

        threshold = validate_threshold(threshold)
        return as_probabilities(self.strong_win_rate(prompts), len(prompts), self.name) >= threshold

    @classmethod
    def from_pretrained(cls: type[R], checkpoint: str | None = None, **kwargs: Any) -> R:
        """Load from a checkpoint folder or Hub id. Routers without weights ignore it."""
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def resolve_device(device: str | None = "auto") -> str:
    """The torch device a router's model runs on.

    `"auto"` (or None) picks the first accelerator torch sees: `"cuda"`, then Apple's `"mps"`,
    else `"cpu"`. Any other value is a torch device string (`"cpu"`, `"cuda"`, `"cuda:1"`,
    `"mps"`) and must be present here: asking for a GPU that is not there raises `DeviceError`
    at load time rather than failing inside the first scoring call.
    """
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"Device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU "
                f"(built for CUDA {torch.version.cuda or 'none: a CPU-only build'}). Use "
                "device='cpu', or 'auto' to take a GPU only when there is one."
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(f"Device {device!r} asked for, but torch sees {count} CUDA GPU(s).")
    elif parsed.type == "mps" and not mps_ok:
        raise DeviceError(f"Device {device!r} asked for, but torch sees no Apple MPS device.")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(
            f"Device type {parsed.type!r} is not supported: use 'auto', 'cpu', 'cuda' or 'mps'."
        )
    return str(parsed)


def device_option(router: str | type[Router], device: str | None) -> dict[str, str]:
    """`{"device": device}` for a router that runs a torch model (`Router.uses_device`), else
    `{}`: how `--device` and `device=` reach `bert` and `causal_llm` and pass by the rest."""
    if not device:
        return {}
    cls = get_router_class(router) if isinstance(router, str) else router
    return {"device": device} if cls.uses_device else {}


def register_router(name: str) -> Callable[[type[R]], type[R]]:
    """Class decorator: make a router available to `load_router(name)`."""

    def decorate(cls: type[R]) -> type[R]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


#: Installed packages add routers under this entry-point group (`name = "module:Class"`, or
#: `"module"` when importing it registers the router), so every CLI command finds them.
ENTRY_POINT_GROUP = "routellm_lc.routers"


def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_routers() -> list[str]:
    """Names `load_router` accepts: built-in, registered and installed as plugins."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES) | set(_plugins()))


class RouterPluginError(UnknownRouterError):
    """A router installed under the `routellm_lc.routers` entry-point group cannot be used: its
    module fails to import, or the entry point names something that is not a `Router`."""


def _load_plugin(name: str, entry_point: Any) -> None:
    """Import a plugin router's entry point and register its class; a failure says which
    entry point and package, and what went wrong, instead of an import traceback."""
    package = getattr(getattr(entry_point, "dist", None), "name", None)
    where = f"entry point '{name} = {entry_point.value}'" + (
        f" of the installed package {package}" if package else ""
    )
    try:
        loaded = entry_point.load()  # a module that registers it, or the class itself
    except Exception as exc:  # the plugin's own import error, whatever its type
        raise RouterPluginError(
            f"Router {name!r} ({where}) could not be loaded: {type(exc).__name__}: {exc}. "
            "Fix or reinstall that package."
        ) from exc
    if isinstance(loaded, type) and issubclass(loaded, Router):
        register_router(name)(loaded)
    elif name not in _REGISTRY:
        what = (
            f"module {loaded.__name__}, which does not register a router named {name!r} "
            f"(@register_router({name!r}))"
            if isinstance(loaded, types.ModuleType)
            else f"{loaded!r}, not a Router subclass"
        )
        raise RouterPluginError(f"Router {name!r} ({where}) is {what}.")


def get_router_class(name: str) -> type[Router]:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY and name in (plugins := _plugins()):
        _load_plugin(name, plugins[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownRouterError(
            f"Unknown router {name!r}. Available routers: {', '.join(available_routers())}."
        ) from None


def load_router(name: str, checkpoint: str | None = None, **kwargs: Any) -> Router:
    """Build the router registered as `name`.

    `checkpoint` is a local folder or a Hugging Face Hub id; `None` means the router's bundled
    default (for `mf`: the checkpoint shipped inside this package, loaded offline).
    """
    if not isinstance(name, str):
        raise UnknownRouterError(f"Router name must be a string, got {type(name).__name__}.")
    return get_router_class(name).from_pretrained(checkpoint, **kwargs)


#: How far past [0, 1] a score may stray from float rounding before it counts as a bug.
SCORE_TOLERANCE = 1e-6


def router_label(router: Any) -> str:
    """How errors and decisions name a router: its `name`, else its class."""
    return getattr(router, "name", None) or type(router).__name__


def as_probabilities(scores: Any, count: int, router: str) -> np.ndarray:
    """`scores` from `router`'s `strong_win_rate` over `count` prompts as float64 win rates,
    clipped to [0, 1] within `SCORE_TOLERANCE`. Anything else raises `RouterOutputError`
    naming the router: a NaN would silently route every call weak (`nan >= t` is false), and
    1.7 would be recorded as a probability."""
    try:
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise RouterOutputError(
            f"Router {router!r}: strong_win_rate returned {type(scores).__name__}, not an array "
            "of numbers."
        ) from None
    if len(values) != count:
        raise RouterOutputError(
            f"Router {router!r}: strong_win_rate returned {len(values)} score(s) for "
            f"{count} prompt(s)."
        )
    bad = ~(np.abs(values - 0.5) <= 0.5 + SCORE_TOLERANCE)  # NaN compares false: bad too
    if bad.any():
        shown = ", ".join(repr(float(v)) for v in values[bad][:3])
        raise RouterOutputError(
            f"Router {router!r}: strong_win_rate returned {int(bad.sum())} score(s) that are "
            f"not win rates in [0, 1] ({shown}{', …' if bad.sum() > 3 else ''})."
        )
    return np.clip(values, 0.0, 1.0)


def battle_weights(weights: Iterable[Any]) -> np.ndarray:
    """Battles' training weights as floats: None (none given) counts 1 and 0 counts nothing
    (`w or 1.0` would turn 0 into 1). Negative or non-finite weights, or no weight above 0,
    raise ValueError."""
    values = []
    for i, weight in enumerate(weights):
        if weight is None:
            values.append(1.0)
            continue
        try:
            if isinstance(weight, bool):
                raise TypeError
            value = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"Battle {i}: weight must be a number, got {weight!r}.") from None
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"Battle {i}: weight must be finite and ≥ 0, got {weight!r}.")
        values.append(value)
    array = np.array(values, dtype=np.float64)
    if len(array) and not array.sum() > 0:
        raise ValueError("Every battle has weight 0: there is nothing to learn from.")
    if not np.isfinite(array.sum()):  # huge weights (1e308) overflow the total: rescale
        array = array / array.max()
    return array
