"""Fetch data folders from their public origins, pinned and verified.

Every file comes from `<base>/<repository>/<commit>/<path>` (GitHub's raw-file host by
default) and must match the hash recorded in `origins.json` — a SHA-256, or git's own blob
hash (SHA-1 of "blob <size>\\0" + content, what `git hash-object` prints), which the data's
provenance records — before it is moved into place.

- `routellm_evals/` (RouteLLM's own benchmark files) is a verbatim copy of lm-sys/RouteLLM
  at one commit.
- `arena_bench_v1/` is three verbatim files plus `scores_gpt4_single_ref.csv`, *derived* from
  17 judgment files of lmarena/arena-hard-auto's history (one row per judged answer:
  question id, the judged model, the GPT-4 score, the file). The judgment files are fetched
  into `arena_bench_v1/.origin/`, verified, and reduced; the derived table is compared with
  the SHA-256 of the table this project was trained on, and a difference is reported.
- The other training folders are derived by re-grading model outputs (see each folder's
  MANIFEST.txt); they are listed with their origin but not fetched.

    routellm-lc data fetch routellm_evals arena_bench_v1 --into ~/routellm-data
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from routellm_lc.errors import RouteLLMError
from routellm_lc.files import umask

GITHUB_RAW = "https://raw.githubusercontent.com"
BASE_ENV = "ROUTELLM_LC_FETCH_BASE"
#: Folders built by re-grading model outputs at their origins: where they come from.
DERIVED = {
    "mmlu_pro_nonmmlu": "TIGER-AI-Lab/MMLU-Pro, eval_results/ (model outputs per run)",
    "zeroeval_math_l5": "WildEval/ZeroEval @ 8c1485e, result_dirs/math-l5/",
    "theoremqa": "wenhuchen/TheoremQA, outputs/*.jsonl.corrected @ a0daf69",
    "faithful_cot": "veronica320/Faithful-COT @ 3017843, output_dir/",
    "alpaca_eval": "tatsu-lab/alpaca_eval @ cd543a1, results/<model>/<annotator>/",
}


class FetchError(RouteLLMError):
    """A data folder cannot be fetched (unknown or derived source, network error, bad file)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file at one commit of the origin, with the hash it must have."""

    path: str
    commit: str
    sha256: str | None = None
    git_blob: str | None = None

    def check(self, content_path: Path) -> str | None:
        """None if the file matches its pin, else what was expected and found."""
        if self.sha256 is not None:
            got = _sha256(content_path)
            return None if got == self.sha256 else f"SHA-256 {self.sha256}, got {got}"
        got = _git_blob(content_path)
        return None if got == self.git_blob else f"git blob {self.git_blob}, got {got}"


@dataclass(frozen=True)
class Origin:
    """A data folder built from files of one repository (at one or several commits)."""

    name: str
    repository: str
    licence: str
    role: str
    files: dict[str, RemoteFile]  # local path -> file at the origin
    derived: dict[str, tuple[str, str]] = field(default_factory=dict)  # local -> (how, sha256)

    def url(self, remote: RemoteFile, base: str) -> str:
        return f"{base.rstrip('/')}/{self.repository}/{remote.commit}/{remote.path}"


@dataclass
class FetchReport:
    folder: Path
    downloaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already present with the right hash
    derived: dict[str, bool] = field(default_factory=dict)  # file -> matches the pinned hash


def origins() -> dict[str, Origin]:
    """The fetchable folders, from the package's `origins.json`."""
    raw = json.loads(
        resources.files("routellm_lc").joinpath("origins.json").read_text(encoding="utf-8")
    )
    return {
        name: Origin(
            name,
            spec["repository"],
            spec["licence"],
            spec["role"],
            {
                local: RemoteFile(f["path"], f["commit"], f.get("sha256"), f.get("git_blob"))
                for local, f in spec["files"].items()
            },
            {local: (d["from"], d["sha256"]) for local, d in spec.get("derived", {}).items()},
        )
        for name, spec in raw.items()
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_blob(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, remote: RemoteFile, timeout: float) -> None:
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
        problem = remote.check(tmp)
        if problem:
            raise FetchError(
                f"{url} does not match its pin (expected {problem}); nothing was written."
            )
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a fetched file is ordinary
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def arena_judgment_scores(judgment_files: list[Path]) -> bytes:
    """arena_bench_v1's `scores_gpt4_single_ref.csv` from its judgment files (FastChat's
    single-answer grading JSONL: question_id, model, user_prompt, judgment, score): one row per
    line, in file order then line order; a judge parse failure (score null) stays empty."""
    out = io.StringIO()
    writer = csv.writer(out)  # "\r\n" line ends, as the staged table
    writer.writerow(["question_id", "model", "score", "source_file"])
    for path in judgment_files:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    writer.writerow([row["question_id"], row["model"], row.get("score"), path.name])
    return out.getvalue().encode("utf-8")


#: How each derived file is built from the fetched files of its folder.
DERIVATIONS: dict[str, Callable[[Path], bytes]] = {
    "arena_judgments": lambda folder: arena_judgment_scores(
        sorted((folder / ".origin" / "model_judgment").glob("*.jsonl"))
    ),
}


def fetch(
    name: str,
    into: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    origin: Origin | None = None,
) -> FetchReport:
    """Fetch the data folder `name` into `into/<name>/`, verifying every file.

    Files already there with the pinned hash are kept; anything else is downloaded. Derived
    files are rebuilt and compared with their pinned SHA-256 (`FetchReport.derived`).
    `base_url` (or `$ROUTELLM_LC_FETCH_BASE`) replaces GitHub's raw-file host, for a mirror.
    """
    if origin is None:
        known = origins()
        if name not in known:
            if name in DERIVED:
                raise FetchError(
                    f"{name}/ is derived from its origin ({DERIVED[name]}) by re-grading model "
                    "outputs, not copied, so it cannot be fetched as is; its MANIFEST.txt "
                    "describes the derivation."
                )
            raise FetchError(f"Unknown data folder {name!r}; fetchable: {sorted(known)}.")
        origin = known[name]
    base = base_url or os.environ.get(BASE_ENV) or GITHUB_RAW
    from routellm_lc.data import check_output_dir

    folder = check_output_dir(Path(into).expanduser() / name, "--into", "the data")
    report = FetchReport(folder)
    from tqdm.auto import tqdm

    for local, remote in tqdm(
        sorted(origin.files.items()), desc=f"fetch {name}", unit="file", disable=not progress
    ):
        target = folder / local
        if target.is_file() and remote.check(target) is None:
            report.kept.append(local)
            continue
        _download(origin.url(remote, base), target, remote, timeout)
        report.downloaded.append(local)
    for local, (how, sha256) in origin.derived.items():
        content = DERIVATIONS[how](folder)
        (folder / local).write_bytes(content)
        report.derived[local] = hashlib.sha256(content).hexdigest() == sha256
    lines = [
        f"SOURCE: github {origin.repository}",
        f"LICENSE: {origin.licence}",
        f"ROLE: {origin.role}",
        f"FETCHED BY: routellm-lc data fetch {name} (every file checked against its pinned hash)",
        *(f"  {loc} <- {r.path} @ {r.commit}" for loc, r in sorted(origin.files.items())),
        *(
            f"  {loc} <- derived ({how}); "
            + ("matches" if report.derived[loc] else "DIFFERS FROM")
            + " the table routellm-lc's checkpoints were trained on"
            for loc, (how, _) in sorted(origin.derived.items())
        ),
    ]
    (folder / "MANIFEST.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
