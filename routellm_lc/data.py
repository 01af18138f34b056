"""Where the training and evaluation data lives.

Resolution order: an explicit path (CLI `--data-dir`), the `ROUTELLM_LC_DATA` environment
variable, then `../shared/data` beside the repository checkout. The folder is read-only input:
nothing in it is ever copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from routellm_lc.errors import RouteLLMError

DATA_ENV = "ROUTELLM_LC_DATA"


class DataDirError(RouteLLMError, FileNotFoundError):
    """The data directory could not be found."""


def _beside_repo() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The data directory, or a `DataDirError` saying where it looked and how to set it."""
    candidates: list[tuple[str, Path]] = []
    if path:
        candidates.append(("--data-dir", Path(path).expanduser()))
    elif os.environ.get(DATA_ENV):
        candidates.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    else:
        candidates.append(("default ../shared/data beside the checkout", _beside_repo()))
    for _, candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = "; ".join(f"{how}: {where}" for how, where in candidates)
    raise DataDirError(
        f"Data directory not found ({looked}). Pass --data-dir or set {DATA_ENV} to the folder "
        "holding routellm_evals/, arena_bench_v1/, mmlu_pro_nonmmlu/, ..."
    )


class MissingDataError(DataDirError):
    """The data directory lacks a folder or file a command needs (`folder`: which one)."""

    def __init__(self, message: str, folder: str = "") -> None:
        super().__init__(message)
        self.folder = folder


def require_data(root: Path, relative: str, needed_for: str) -> Path:
    """`root/relative` (a data folder, or a file in one), or a `MissingDataError` naming what
    is missing, what needs it and how to get it (fetch it, or do without it)."""
    from routellm_lc.fetch import DERIVED, origins

    path = root / relative
    if path.exists():
        return path
    folder = relative.split("/", 1)[0]
    if folder in origins():
        how = f"fetch it with `routellm-lc data fetch {folder} --into {root}`"
    elif folder in DERIVED:
        how = (
            f"{folder}/ is derived data that cannot be fetched (`routellm-lc data list` says "
            "where it comes from); copy it from a complete data directory"
        )
    else:
        how = "check the data directory"
    what = f"no {relative}" + ("" if "/" in relative else "/ folder")
    raise MissingDataError(
        f"The data directory {root} has {what} ({needed_for}): {how}.", folder=folder
    )


def present_folders(root: Path) -> list[str]:
    """The data folders `root` holds (sorted)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
