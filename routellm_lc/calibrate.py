"""Threshold calibration: the threshold that sends a target share of calls to the strong model.

RouteLLM's rule: route to strong iff score ≥ threshold, and calibrate by taking the
(1 − pct) quantile of the router's scores on a sample of prompts (`calibrate_threshold.py`:
`scores.quantile(q=1 - strong_model_pct)`, linear interpolation). The share of a sample sent
strong at that threshold is then `pct` up to one prompt (exactly, for distinct scores on a
sample where pct·n is a whole number).

The default sample is the training prompts of the bundled data sources (decontaminated
against the evaluation sets, never the evaluation sets themselves); for real traffic,
calibrate on a sample of your own prompts (`prompts=` / `--prompts FILE`).

    >>> from routellm_lc.calibrate import calibrate
    >>> result = calibrate("mf", 0.2)           # or prompts=[...your traffic...]
    >>> RouteLLMChat(router="mf", threshold=result.threshold)

Scoring is shared with the evaluation harness (`routellm_lc.evals.harness`): batched, with a
progress bar, and cached on disk by the router's identity and the exact prompt list, so
calibrating the same sample for another share is instant.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.data import DataDirError
from routellm_lc.errors import RouteLLMError
from routellm_lc.routers.base import Router

DEFAULT_SAMPLE = "training prompts"
#: Below this many prompts the calibration result carries a caution (`Calibration.note`).
SMALL_SAMPLE = 100


class CalibrationError(RouteLLMError, ValueError):
    """Bad calibration input: a share outside (0, 1), no prompts, a malformed prompt file."""


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and how it behaves on the sample it came from."""

    router: str
    strong_pct: float
    threshold: float
    n_prompts: int
    measured_share: float
    """Fraction of the sample scoring ≥ threshold: `strong_pct` up to a prompt, unless ties."""
    sample: str
    n_distinct: int | None = None
    """Distinct prompts in the sample (None: not counted, taken as `n_prompts`)."""
    share_above: float | None = None
    """Fraction of the sample scoring strictly above the threshold: with scores tied at the
    threshold (repeated prompts, a router with few distinct scores), the nearest share below
    `measured_share` that any threshold gives."""

    @property
    def reachable(self) -> bool:
        """Whether the measured share is the target up to one prompt (RouteLLM's rule gives
        that unless scores tie at the threshold)."""
        return abs(self.measured_share - self.strong_pct) <= 1.0 / self.n_prompts + 1e-9

    @property
    def note(self) -> str | None:
        """A caution when the target share cannot be reached on the sample (scores tied at
        the threshold), or the sample has too few distinct prompts to generalise."""
        notes = []
        if not self.reachable:
            if self.share_above is not None:
                tied = round((self.measured_share - self.share_above) * self.n_prompts)
                why = (
                    f"{tied} of the {self.n_prompts} prompts score exactly the threshold "
                    "(repeated prompts or tied scores), so a threshold can send "
                    f"{self.share_above:.1%} or {self.measured_share:.1%} strong here, "
                    "nothing between"
                )
            else:
                why = "scores tie at the threshold (repeated prompts or tied scores)"
            notes.append(
                f"the target share {self.strong_pct:.1%} cannot be reached on this sample: "
                f"{why}; this threshold sends {self.measured_share:.1%} strong. Calibrate on "
                "a sample of distinct prompts like your traffic."
            )
        distinct = self.n_prompts if self.n_distinct is None else self.n_distinct
        if distinct < SMALL_SAMPLE:
            counted = (
                f"only {distinct} prompt(s) in the sample"
                if distinct == self.n_prompts
                else f"only {distinct} distinct prompt(s) in the sample ({self.n_prompts:,} "
                "with repeats)"
            )
            notes.append(
                f"{counted}: the threshold is a rough guess; calibrate on at least "
                f"{SMALL_SAMPLE} (ideally thousands) of your prompts."
            )
        return " ".join(n if i == 0 else n[0].upper() + n[1:] for i, n in enumerate(notes)) or None

    def __str__(self) -> str:
        return (
            f"threshold for {self.strong_pct:.1%} strong calls with router {self.router}: "
            f"{self.threshold:.4f} (on {self.n_prompts:,} prompts; measured share "
            f"{self.measured_share:.1%})"
        )


def validate_strong_pct(strong_pct: float | str) -> float:
    """A share of strong calls strictly between 0 and 1; accepts 0.2 or "20%".

    0 and 1 have no threshold: the highest threshold, 1.0, still sends scores of exactly 1.0
    strong, and sending everything strong needs no router.
    """
    text = str(strong_pct).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CalibrationError(
            f"strong share must be a number between 0 and 1 (e.g. 0.2) or a percentage "
            f"(e.g. 20%), got {strong_pct!r}."
        ) from None
    if not 0.0 < value < 1.0:  # also rejects NaN
        if text.endswith("%"):
            hint = " (as a percentage: strictly between 0% and 100%)"
        elif 1.0 < value < 100.0:
            hint = f" (a share: 0.2 means 20%; for {value:g}% write {value:g}%)"
        else:
            hint = ""
        raise CalibrationError(
            f"strong share must be strictly between 0 and 1, got {strong_pct!r}{hint}."
        )
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


def cached_scores(
    router: Router,
    prompts: Sequence[str],
    *,
    identity: str | None = None,
    progress: bool = False,
    use_cache: bool = True,
    sample: str = "prompts",
) -> np.ndarray:
    """Router scores for `prompts`, cached on disk like evaluation scores, keyed by `identity`
    (`evals.harness.router_identity`) and the exact prompt list. None: not cached (a router
    whose scores nothing identifies, and `random`)."""
    from routellm_lc.evals import harness

    if router.name == harness.RANDOM_ROUTER:
        identity = None
    loaded = harness.LoadedRouter(router.name, router, None, identity)
    cache = harness.ScoreCache() if use_cache else None
    scores, _ = harness.cached_scores(
        loaded, f"calibration:{sample}", list(prompts), cache, progress=progress
    )
    return scores


def default_prompts(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The default calibration sample: the training sources' unique prompts minus
    near-copies of evaluation prompts (`training_prompts`). Never the evaluation sets."""
    from routellm_lc.training.sources import training_prompts

    try:
        return training_prompts(data_dir)
    except DataDirError as exc:
        raise CalibrationError(
            f"No prompt sample given and the default sample (the training sources' prompts) "
            f"is unavailable: {exc} Or calibrate on your own prompts: --prompts FILE "
            "(prompts= in Python)."
        ) from None


def text_lines(text: str) -> list[str]:
    """`text`'s lines, split at line ends only (`\n`, `\r\n`, `\r`): `str.splitlines` also
    splits at form feeds and Unicode line separators (U+2028), which are characters *inside* a
    prompt (JSON writes U+2028 raw)."""
    return re.split(r"\r\n|\r|\n", text)


def _json_array_prompts(path: Path, text: str) -> list[str]:
    """A `.json` file holding one array: of `{"prompt": ...}` objects, or of strings."""
    rows = _loaded(
        text,
        path,
        None,
        'a .json file holds one array of {"prompt": "..."} objects (or strings), or one such '
        "object per line.",
    )
    if not isinstance(rows, list):
        raise CalibrationError(f"{path}: expected a JSON array of prompts.")
    return [_prompt_of(row, f"{path}: item {i}", strings=True) for i, row in enumerate(rows)]


def _loaded(text: str, path: Path, line: int | None, hint: str) -> Any:
    """`text` parsed as JSON, else a `CalibrationError` naming the file and line (`line`, or
    the parser's own in a whole-file text) with `hint` on the format."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno if line is None else line}"
        raise CalibrationError(f"{where}: not valid JSON ({exc.msg}); {hint}") from None


def _prompt_of(row: Any, where: str, *, strings: bool) -> str:
    """The prompt of one parsed row (an object with a string "prompt", or with `strings` a
    string), else a `CalibrationError` naming `where`; a blank prompt is refused too."""
    prompt = row.get("prompt") if isinstance(row, dict) else (row if strings else None)
    if not isinstance(prompt, str):
        kinds = "a string or an object" if strings else "an object"
        raise CalibrationError(f"{where}: expected {kinds} with a string 'prompt'.")
    if not prompt.strip():
        raise CalibrationError(f"{where}: the prompt is blank.")
    return prompt


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """Prompts from a file, by its extension: `.jsonl` / `.json` hold one JSON object with a
    `prompt` field per line, or (`.json`) one JSON array of such objects or of strings;
    anything else (`.txt`) one prompt per line, taken as written."""
    path = Path(path)
    if path.is_dir():
        raise CalibrationError(f"Prompt file {path} is a folder: give a file of prompts.")
    if not path.is_file():
        raise CalibrationError(f"Prompt file {path} not found.")
    try:
        lines = text_lines(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8."
        ) from None
    if path.suffix.lower() not in (".jsonl", ".json"):
        prompts = [line for line in lines if line.strip()]
    elif path.suffix.lower() == ".json" and "\n".join(lines).lstrip().startswith("["):
        prompts = _json_array_prompts(path, "\n".join(lines))
    else:
        prompts = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = _loaded(
                line,
                path,
                number,
                'a .jsonl file holds one object per line ({"prompt": "..."}); for plain text '
                "use a .txt file.",
            )
            prompts.append(_prompt_of(row, f"{path}:{number}", strings=False))
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
    from routellm_lc.evals.harness import router_identity

    pct = validate_strong_pct(strong_pct)
    if isinstance(router, str):
        from routellm_lc.routers.base import load_router

        router = load_router(router, checkpoint, **router_kwargs)
        identity = router_identity(router, checkpoint, router_kwargs)
    else:
        # How an object was built is unknown: only its own cache_key identifies its scores.
        identity = getattr(router, "cache_key", None) or None
    result = _calibrate(router, router.name, pct, prompts, identity, data_dir, progress, use_cache)
    return result.threshold


def calibrate(
    router_name: str,
    strong_pct: float | str,
    prompts: Sequence[str] | None = None,
    checkpoint: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
    use_cache: bool = True,
    device: str | None = None,
) -> Calibration:
    """Load `router_name` and calibrate it on `prompts` (None: the bundled training prompts),
    reporting the threshold with the sample size and the share it sends strong there.
    `device`: torch device of a router that runs a model (`bert`, `causal_llm`)."""
    from routellm_lc.evals.harness import load_routers
    from routellm_lc.routers.base import load_router

    pct = validate_strong_pct(strong_pct)  # before loading anything
    if router_name == "random":
        if checkpoint:
            raise CalibrationError("The random router has no checkpoint: drop --checkpoint.")
        # Seeded, so the same sample gives the same threshold (it is meaningless anyway:
        # random sends about the share asked for at threshold 1 - share).
        router, identity = load_router(router_name, seed=0), None
    else:
        checkpoints = {router_name: checkpoint} if checkpoint else None
        # load failures: one clear error
        (loaded,) = load_routers([router_name], checkpoints, device=device)
        router, identity = loaded.router, loaded.identity
    return _calibrate(router, router_name, pct, prompts, identity, data_dir, progress, use_cache)


def _calibrate(
    router: Router,
    router_name: str,
    pct: float,
    prompts: Sequence[str] | None,
    identity: str | None,
    data_dir: str | os.PathLike[str] | None,
    progress: bool,
    use_cache: bool,
) -> Calibration:
    sample = "prompts"
    if prompts is None:
        prompts, sample = default_prompts(data_dir), DEFAULT_SAMPLE
    prompts = list(prompts)
    if not prompts:
        raise CalibrationError("Calibration needs at least one prompt.")
    scores = cached_scores(
        router,
        prompts,
        identity=identity,
        progress=progress,
        use_cache=use_cache,
        sample=sample,
    )
    threshold = threshold_for_share(scores, pct)
    return Calibration(
        router=router_name,
        strong_pct=pct,
        threshold=threshold,
        n_prompts=len(prompts),
        measured_share=strong_share(scores, threshold),
        sample=sample,
        n_distinct=len(set(prompts)),
        share_above=float(np.mean(np.asarray(scores, dtype=np.float64) > threshold)),
    )
