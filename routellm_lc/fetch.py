"""Fetch data folders from their public origins, pinned and verified.

`routellm_evals/` (RouteLLM's own benchmark files) is a verbatim copy of files in
lm-sys/RouteLLM at one commit, so it can be fetched exactly: every file comes from
`<base>/<repository>/<commit>/<path>` (GitHub's raw-file host by default) and must match the
SHA-256 recorded in `origins.json` before it is moved into place. The training folders are
*derived* from their origins (outcome tables re-graded from model outputs, see each folder's
MANIFEST.txt), so they are listed with their origin but not fetched.

    routellm-lc data fetch routellm_evals --into ~/routellm-data
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from routellm_lc.errors import RouteLLMError

GITHUB_RAW = "https://raw.githubusercontent.com"
BASE_ENV = "ROUTELLM_LC_FETCH_BASE"
#: Folders built by re-grading model outputs at their origins: where they come from.
DERIVED = {
    "arena_bench_v1": "lmarena/arena-hard-auto, data/arena-bench-v1/ (Nov-Dec 2023 history)",
    "mmlu_pro_nonmmlu": "TIGER-AI-Lab/MMLU-Pro, eval_results/ (model outputs per run)",
    "zeroeval_math_l5": "WildEval/ZeroEval @ 8c1485e, result_dirs/math-l5/",
    "theoremqa": "wenhuchen/TheoremQA, outputs/*.jsonl.corrected @ a0daf69",
    "faithful_cot": "veronica320/Faithful-COT @ 3017843, output_dir/",
    "alpaca_eval": "tatsu-lab/alpaca_eval @ cd543a1, results/<model>/<annotator>/",
}


class FetchError(RouteLLMError):
    """A data folder cannot be fetched (unknown or derived source, network error, bad file)."""


@dataclass(frozen=True)
class Origin:
    """A data folder that is a verbatim copy of files at one commit of a repository."""

    name: str
    repository: str
    commit: str
    licence: str
    role: str
    files: dict[str, tuple[str, str]]  # local path -> (path in the repository, sha256)

    def url(self, remote_path: str, base: str) -> str:
        return f"{base.rstrip('/')}/{self.repository}/{self.commit}/{remote_path}"


@dataclass
class FetchReport:
    folder: Path
    downloaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already present with the right hash


def origins() -> dict[str, Origin]:
    """The fetchable folders, from the package's `origins.json`."""
    raw = json.loads(resources.files("routellm_lc").joinpath("origins.json").read_text())
    return {
        name: Origin(
            name,
            spec["repository"],
            spec["commit"],
            spec["licence"],
            spec["role"],
            {local: (f["path"], f["sha256"]) for local, f in spec["files"].items()},
        )
        for name, spec in raw.items()
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, expected: str, timeout: float) -> None:
    """Download to a temporary file beside `target`, check its hash, then move it in place:
    a failed or corrupt download never leaves a partial file under the real name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "routellm-lc"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    while block := response.read(1 << 20):
                        out.write(block)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise FetchError(f"Could not download {url}: {exc}") from exc
        got = _sha256(tmp)
        if got != expected:
            raise FetchError(
                f"{url} does not match its pinned SHA-256 (expected {expected}, got {got}); "
                "nothing was written."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    name: str,
    into: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> FetchReport:
    """Fetch the data folder `name` into `into/<name>/`, verifying every file.

    Files already there with the pinned hash are kept; anything else is downloaded.
    `base_url` (or `$ROUTELLM_LC_FETCH_BASE`) replaces GitHub's raw-file host, for a mirror.
    """
    known = origins()
    if name not in known:
        if name in DERIVED:
            raise FetchError(
                f"{name}/ is derived from its origin ({DERIVED[name]}) by re-grading model "
                "outputs, not copied verbatim, so it cannot be fetched as is; its MANIFEST.txt "
                "describes the derivation."
            )
        raise FetchError(f"Unknown data folder {name!r}; fetchable: {sorted(known)}.")
    origin = known[name]
    base = base_url or os.environ.get(BASE_ENV) or GITHUB_RAW
    folder = Path(into).expanduser() / name
    report = FetchReport(folder)
    from tqdm.auto import tqdm

    for local, (remote, sha) in tqdm(
        sorted(origin.files.items()), desc=f"fetch {name}", unit="file", disable=not progress
    ):
        target = folder / local
        if target.is_file() and _sha256(target) == sha:
            report.kept.append(local)
            continue
        _download(origin.url(remote, base), target, sha, timeout)
        report.downloaded.append(local)
    (folder / "MANIFEST.txt").write_text(
        f"SOURCE: github {origin.repository}\nCOMMIT: {origin.commit}\n"
        f"LICENSE: {origin.licence}\nROLE: {origin.role}\n"
        f"FETCHED BY: routellm-lc data fetch {name} (every file checked against its SHA-256)\n"
        + "".join(f"  {local} <- {remote}\n" for local, (remote, _) in sorted(origin.files.items()))
    )
    return report
