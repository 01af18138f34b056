"""Where the training and evaluation data lives.

Resolution order: an explicit path (CLI `--data-dir`), the `ROUTELLM_LC_DATA` environment
variable, then `../shared/data` beside the repository checkout (only when the package runs from
a source checkout: an installed package has no checkout to sit beside). The folder is read-only
input: nothing in it is ever copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from routellm_lc.errors import RouteLLMError

DATA_ENV = "ROUTELLM_LC_DATA"


class DataDirError(RouteLLMError, FileNotFoundError):
    """The data directory could not be found."""


def _checkout(module_file: Path | None = None) -> Path | None:
    """The source checkout this package runs from (the folder with its pyproject.toml), or
    None for an installed package (`site-packages/routellm_lc` has no checkout around it)."""
    root = (module_file or Path(__file__)).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def _beside_repo(module_file: Path | None = None) -> Path | None:
    """`../shared/data` beside the checkout, or None when there is no checkout."""
    root = _checkout(module_file)
    return root.parent / "shared" / "data" if root else None


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The data directory, or a `DataDirError` saying where it looked and how to set it."""
    candidates: list[tuple[str, Path]] = []
    if path:
        candidates.append(("--data-dir", Path(path).expanduser()))
    elif os.environ.get(DATA_ENV):
        candidates.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    elif (beside := _beside_repo()) is not None:
        candidates.append(("default ../shared/data beside the checkout", beside))
    else:
        raise DataDirError(
            f"No data directory given: pass --data-dir DIR or set {DATA_ENV} to the folder "
            "holding routellm_evals/, arena_bench_v1/, mmlu_pro_nonmmlu/, ... (an installed "
            "package has no default; `routellm-lc data fetch routellm_evals arena_bench_v1 "
            "--into DIR` fetches the public ones)."
        )
    for _, candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = "; ".join(f"{how}: {where}" for how, where in candidates)
    raise DataDirError(
        f"Data directory not found ({looked}). Pass --data-dir or set {DATA_ENV} to the folder "
        "holding routellm_evals/, arena_bench_v1/, mmlu_pro_nonmmlu/, ..."
    )


class OutputDirError(RouteLLMError, OSError):
    """A folder a command is to write (`--output`, `--into`) cannot be created or written."""


def check_output_dir(path: str | os.PathLike[str], flag: str, what: str) -> Path:
    """`path` as a folder this process can create or write into, checked before any work is
    done (a training run must not find out at the end that its checkpoint has nowhere to
    go); else an `OutputDirError` saying why. Nothing is created: `flag` (e.g. "--output")
    and `what` (e.g. "the checkpoint") word the error."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == path:
            raise OutputDirError(f"{flag} {path} is a file; name a folder for {what}.")
        raise OutputDirError(
            f"{flag} {path} cannot be created: {existing} is a file, not a folder; name a "
            f"folder for {what}."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (in {existing}, where it would be created)"
        raise OutputDirError(
            f"{flag} {path} is not writable{where}: permission denied; name a folder you can "
            f"write for {what}."
        )
    return path


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
