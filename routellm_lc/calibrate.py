"""Threshold calibration: the threshold that sends a target share of calls to the strong model.

RouteLLM's rule: route to strong iff score ≥ threshold, and calibrate by taking the
(1 − pct) quantile of the router's scores on a sample of prompts (`calibrate_threshold.py`:
`scores.quantile(q=1 - strong_model_pct)`, linear interpolation). The share of a sample sent
strong at that threshold is then `pct` up to one prompt (exactly, for distinct scores on a
sample where pct·n is a whole number).

The default sample is the training prompts of the bundled data sources (decontaminated);
for real traffic, calibrate on a sample of your own prompts (`prompts=` / `--prompts FILE`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.data import DataDirError
from routellm_lc.errors import RouteLLMError
from routellm_lc.routers.base import Router


class CalibrationError(RouteLLMError, ValueError):
    """Bad calibration input: a share outside (0, 1], no prompts, a malformed prompt file."""


def validate_strong_pct(strong_pct: float | str) -> float:
    """A share of strong calls as a fraction in [0, 1]; accepts 0.2 or "20%"."""
    text = str(strong_pct).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CalibrationError(
            f"strong share must be a number in [0, 1] (e.g. 0.2) or a percentage (e.g. 20%), "
            f"got {strong_pct!r}."
        ) from None
    if not 0.0 <= value <= 1.0 or np.isnan(value):
        raise CalibrationError(f"strong share must be in [0, 1] (or 0%-100%), got {strong_pct!r}.")
    return value


def threshold_for_share(scores: np.ndarray, strong_pct: float) -> float:
    """The (1 − strong_pct) quantile of `scores` (linear interpolation, as pandas)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not len(scores):
        raise CalibrationError("Calibration needs at least one score.")
    return float(np.quantile(scores, 1.0 - validate_strong_pct(strong_pct)))


def strong_share(scores: np.ndarray, threshold: float) -> float:
    """Share of `scores` that would go to the strong model (score ≥ threshold)."""
    return float(np.mean(np.asarray(scores, dtype=np.float64) >= threshold))


def router_identity(router: Router, checkpoint: str | None = None) -> str:
    """What makes a router's scores reproducible: its `cache_key` (set by routers loaded from
    a checkpoint, e.g. a hash of config + weights), else its class, name and checkpoint."""
    key = getattr(router, "cache_key", None)
    if key:
        return str(key)
    if checkpoint and Path(checkpoint).is_dir():
        from routellm_lc.routers.checkpoints import checkpoint_identity

        return f"{router.name}:{checkpoint_identity(Path(checkpoint))}"
    cls = type(router)
    return f"{router.name}:{cls.__module__}.{cls.__qualname__}:{checkpoint or 'default'}"


def score_prompts(
    router: Router, prompts: Sequence[str], *, batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """Router scores for `prompts`, in batches (with a progress bar when asked)."""
    from tqdm.auto import tqdm

    prompts = list(prompts)
    out = np.empty(len(prompts), dtype=np.float64)
    bar = tqdm(
        total=len(prompts), desc=f"scoring ({router.name})", unit="prompt", disable=not progress
    )
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        out[start : start + len(batch)] = np.asarray(
            router.strong_win_rate(batch), dtype=np.float64
        )
        bar.update(len(batch))
    bar.close()
    return out


def cached_scores(
    router: Router,
    prompts: Sequence[str],
    *,
    checkpoint: str | None = None,
    progress: bool = False,
    use_cache: bool = True,
) -> np.ndarray:
    """`score_prompts`, cached on disk by (router identity, exact prompt list).

    Routers without a stable identity (e.g. `random`) are never cached.
    """
    from routellm_lc.embeddings import cache_dir

    if not use_cache or router.name == "random":
        return score_prompts(router, prompts, progress=progress)
    digest = hashlib.sha256(router_identity(router, checkpoint).encode())
    for prompt in prompts:
        digest.update(prompt.encode("utf-8", "replace") + b"\x00")
    path = cache_dir() / "calibration_scores" / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        scores = np.load(path)
        if len(scores) == len(prompts):
            return scores
    scores = score_prompts(router, prompts, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, scores)
    os.replace(tmp, path)
    return scores


def default_prompts(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The default calibration sample: the unique training prompts of the data sources
    (outcome sources and AlpacaEval's instructions), minus near-copies of evaluation prompts.
    Never the evaluation sets themselves."""
    from routellm_lc.training.decontaminate import contaminated_prompts
    from routellm_lc.training.sources import load_questions

    prompts = [q.prompt for q in load_questions(data_dir=data_dir)]
    alpaca = Path(_data_root(data_dir)) / "alpaca_eval" / "instructions.jsonl"
    if alpaca.is_file():
        with open(alpaca, encoding="utf-8") as handle:
            prompts += [json.loads(line)["instruction"] for line in handle if line.strip()]
    prompts = list(dict.fromkeys(prompts))
    bad = contaminated_prompts(prompts, data_dir)
    return [p for p in prompts if p not in bad]


def _data_root(data_dir: str | os.PathLike[str] | None) -> Path:
    from routellm_lc.data import data_dir as resolve

    return resolve(data_dir)


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """Prompts from a text file (one per line) or JSONL (objects with a `prompt` field)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"Prompt file {path} not found.")
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if not (path.suffix == ".jsonl" or first.startswith("{")):
        prompts = [line for line in lines if line.strip()]
    else:
        prompts = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CalibrationError(f"{path}:{number}: not valid JSON ({exc.msg}).") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise CalibrationError(
                    f"{path}:{number}: expected an object with a string 'prompt'."
                )
            prompts.append(row["prompt"])
    if not prompts:
        raise CalibrationError(f"{path} holds no prompts.")
    return prompts


def calibrate_threshold(
    router: Router | str,
    prompts: Sequence[str] | None = None,
    strong_pct: float | str = 0.2,
    *,
    checkpoint: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    use_cache: bool = True,
    **router_kwargs: Any,
) -> float:
    """The threshold at which `strong_pct` of `prompts` score ≥ threshold (go strong).

    `router`: a `Router` or a registered name (loaded with `checkpoint`). `prompts`: your
    traffic sample; None = the bundled training prompts (`default_prompts`), scored once and
    cached on disk.
    """
    pct = validate_strong_pct(strong_pct)
    if isinstance(router, str):
        from routellm_lc.routers.base import load_router

        router = load_router(router, checkpoint, **router_kwargs)
    if prompts is None:
        try:
            prompts = default_prompts(data_dir)
        except DataDirError as exc:
            raise CalibrationError(
                f"No prompt sample given and the bundled training prompts are unavailable: {exc}"
            ) from None
    prompts = list(prompts)
    if not prompts:
        raise CalibrationError("Calibration needs at least one prompt.")
    scores = cached_scores(
        router, prompts, checkpoint=checkpoint, progress=progress, use_cache=use_cache
    )
    return threshold_for_share(scores, pct)
