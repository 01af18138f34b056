"""`routellm-lc data fetch`: pinned, verified download of routellm_evals from its origin.

GitHub is out of reach here, so a local HTTP server plays its raw-file host: it serves the real
files of the data directory under `/<repository>/<commit>/<path in the repository>`, the layout
raw.githubusercontent.com uses. Everything else (URLs, hashes, placement, the loaders reading
the result) is the real code path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from routellm_lc.cli import main
from routellm_lc.evals.benchmarks import load_benchmark
from routellm_lc.fetch import FetchError, Origin, RemoteFile, fetch, origins


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def mirror(data_dir: Path, tmp_path: Path):
    """A raw-file host holding routellm_evals at its pinned commit, laid out as on GitHub."""
    origin = origins()["routellm_evals"]
    root = tmp_path / "mirror"
    for local, remote in origin.files.items():
        target = root / origin.repository / remote.commit / remote.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / "routellm_evals" / local, target)
    (commit,) = {r.commit for r in origin.files.values()}
    with _serving(root) as base:
        yield base, root / origin.repository / commit / "routellm"


@contextlib.contextmanager
def _serving(root: Path):
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_origins_pin_every_file_the_benchmarks_read():
    origin = origins()["routellm_evals"]
    assert origin.repository == "lm-sys/RouteLLM"
    files = origin.files
    assert {len(f.commit) for f in files.values()} == {40}
    assert sum(k.startswith("mmlu_responses/mmlu_") for k in files) == 57
    assert files["gsm8k_responses.csv"].path == "routellm/evals/gsm8k/gsm8k_responses.csv"
    assert files["mt_bench_question.jsonl"].path == "routellm/evals/mt_bench/question.jsonl"
    assert all(len(f.sha256) == 64 for f in files.values())


def test_fetch_reproduces_the_benchmarks(mirror, data_dir, tmp_path):
    base, _ = mirror
    report = fetch("routellm_evals", tmp_path / "data", base_url=base, progress=False)
    assert len(report.downloaded) == 63 and report.kept == []
    for name in ("mt-bench", "gsm8k", "mmlu"):
        fetched = load_benchmark(name, tmp_path / "data")
        original = load_benchmark(name, data_dir)
        assert fetched.prompts == original.prompts
        np.testing.assert_array_equal(fetched.strong, original.strong)
        np.testing.assert_array_equal(fetched.weak, original.weak)
    manifest = (tmp_path / "data" / "routellm_evals" / "MANIFEST.txt").read_text()
    commit = origins()["routellm_evals"].files["gsm8k_responses.csv"].commit
    assert "lm-sys/RouteLLM" in manifest and commit in manifest
    # A second run finds every file verified in place and downloads nothing.
    again = fetch("routellm_evals", tmp_path / "data", base_url=base, progress=False)
    assert again.downloaded == [] and len(again.kept) == 63


def test_a_tampered_file_is_refused_and_never_written(mirror, tmp_path):
    base, served = mirror
    (served / "evals/gsm8k/gsm8k_responses.csv").write_text("prompt,a,b\nx,True,False\n")
    with pytest.raises(FetchError, match="does not match its pin"):
        fetch("routellm_evals", tmp_path / "data", base_url=base, progress=False)
    folder = tmp_path / "data" / "routellm_evals"
    assert not (folder / "gsm8k_responses.csv").exists()
    assert not list(folder.rglob("*.part"))  # no partial file left behind


def test_a_corrupt_local_copy_is_replaced(mirror, tmp_path):
    base, _ = mirror
    fetch("routellm_evals", tmp_path / "data", base_url=base, progress=False)
    broken = tmp_path / "data" / "routellm_evals" / "mt_bench_question.jsonl"
    broken.write_text("{}\n")
    report = fetch("routellm_evals", tmp_path / "data", base_url=base, progress=False)
    assert report.downloaded == ["mt_bench_question.jsonl"]
    assert len(load_benchmark("mt-bench", tmp_path / "data").prompts) == 72


def test_unreachable_host_and_derived_folders_are_clear_errors(tmp_path):
    with pytest.raises(FetchError, match="Could not download"):
        fetch("routellm_evals", tmp_path, base_url="http://127.0.0.1:9", timeout=2, progress=False)
    with pytest.raises(FetchError, match="derived from its origin"):
        fetch("mmlu_pro_nonmmlu", tmp_path, progress=False)
    with pytest.raises(FetchError, match="Unknown data folder"):
        fetch("nope", tmp_path, progress=False)


def test_cli_fetch_and_list(mirror, tmp_path, capsys):
    base, _ = mirror
    into = tmp_path / "data"
    assert main(["data", "fetch", "routellm_evals", "--into", str(into), "--base-url", base]) == 0
    assert "63 downloaded" in capsys.readouterr().out
    assert main(["data", "list", "--data-dir", str(into)]) == 0
    out = capsys.readouterr().out
    assert "routellm_evals     present  fetch" in out
    assert "arena_bench_v1     missing  fetch" in out
    assert "theoremqa          missing  derived" in out
    assert main(["data", "fetch", "theoremqa", "--into", str(into)]) == 2
    assert "derived from its origin" in capsys.readouterr().err


# -- arena_bench_v1: verbatim files pinned by git blob hash, plus a derived score table ---------
def test_arena_pins_are_the_provenance_blobs_of_the_staged_files(data_dir):
    """The pins are git blob hashes (what the data's provenance records); the verbatim files
    staged in the data directory match them, so the hashing scheme is the right one."""
    origin = origins()["arena_bench_v1"]
    provenance = json.loads((data_dir / "arena_bench_v1" / "provenance.json").read_text())
    assert {f.git_blob for f in origin.files.values()} == {e["blob"] for e in provenance}
    for local in ("question.jsonl", "reference_answer_gpt-4.jsonl", "judge_config.yaml"):
        assert origin.files[local].check(data_dir / "arena_bench_v1" / local) is None
    judgments = [k for k in origin.files if k.startswith(".origin/model_judgment/")]
    assert len(judgments) == 17
    assert (
        origin.derived["scores_gpt4_single_ref.csv"][1]
        == hashlib.sha256(
            (data_dir / "arena_bench_v1" / "scores_gpt4_single_ref.csv").read_bytes()
        ).hexdigest()
    )


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _judgments(model: str, scores: dict[str, int | None]) -> bytes:
    lines = [
        json.dumps(
            {"question_id": q, "model": model, "user_prompt": "…", "judgment": "…", "score": s}
        )
        for q, s in scores.items()
    ]
    return ("\n".join(lines) + "\n").encode()


def test_arena_fetch_derives_the_score_table_the_loader_reads(data_dir, tmp_path):
    """Real question file, two judgment files in the origin's format (one with a judge parse
    failure, one the known duplicate file): download, verify, derive, load."""
    from routellm_lc.fetch import Origin, RemoteFile
    from routellm_lc.training.sources import load_arena_bench

    real = origins()["arena_bench_v1"]
    qids = [
        json.loads(line)["question_id"]
        for line in (data_dir / "arena_bench_v1" / "question.jsonl").read_text().splitlines()
    ]
    contents = {
        "question.jsonl": (data_dir / "arena_bench_v1" / "question.jsonl").read_bytes(),
        ".origin/model_judgment/gpt-4-turbo.jsonl": _judgments(
            "gpt-4-1106-preview", {qids[0]: 10, qids[1]: 6}
        ),
        ".origin/model_judgment/gpt-4_single.jsonl": _judgments("gpt-3.5-turbo", {qids[0]: 1}),
        ".origin/model_judgment/llama.jsonl": _judgments("llama-13b", {qids[0]: 2, qids[1]: None}),
    }
    expected = (
        "question_id,model,score,source_file\r\n"
        f"{qids[0]},gpt-4-1106-preview,10,gpt-4-turbo.jsonl\r\n"  # files in byte order
        f"{qids[1]},gpt-4-1106-preview,6,gpt-4-turbo.jsonl\r\n"
        f"{qids[0]},gpt-3.5-turbo,1,gpt-4_single.jsonl\r\n"
        f"{qids[0]},llama-13b,2,llama.jsonl\r\n"
        f"{qids[1]},llama-13b,,llama.jsonl\r\n"
    ).encode()
    files = {
        local: RemoteFile(f"data/{local.rsplit('/', 1)[-1]}", "c0ffee" + str(i), None, _blob(data))
        for i, (local, data) in enumerate(contents.items())
    }
    root = tmp_path / "mirror"
    for local, remote in files.items():
        target = root / real.repository / remote.commit / remote.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(contents[local])
    pinned = hashlib.sha256(expected).hexdigest()
    origin = Origin(
        "arena_bench_v1",
        real.repository,
        "Apache-2.0",
        "training",
        files,
        {"scores_gpt4_single_ref.csv": ("arena_judgments", pinned)},
    )
    with _serving(root) as base:
        report = fetch(
            "arena_bench_v1", tmp_path / "data", base_url=base, progress=False, origin=origin
        )
        folder = tmp_path / "data" / "arena_bench_v1"
        assert (folder / "scores_gpt4_single_ref.csv").read_bytes() == expected
        assert report.derived == {"scores_gpt4_single_ref.csv": True}
        questions = {q.qid: q for q in load_arena_bench(tmp_path / "data")}
        # gpt-4_single.jsonl is skipped as a duplicate; the parse failure is skipped.
        assert questions[qids[0]].outcomes == {"gpt-4-1106-preview": 1.0, "llama-13b": 0.2}
        assert questions[qids[1]].outcomes == {"gpt-4-1106-preview": 0.6}
        # A table that differs from the pinned one is kept but reported, also in MANIFEST.
        other = Origin(
            origin.name,
            origin.repository,
            origin.licence,
            origin.role,
            files,
            {"scores_gpt4_single_ref.csv": ("arena_judgments", "0" * 64)},
        )
        again = fetch(
            "arena_bench_v1", tmp_path / "data", base_url=base, progress=False, origin=other
        )
    assert again.derived == {"scores_gpt4_single_ref.csv": False}
    assert len(again.kept) == len(files) and again.downloaded == []
    assert "DIFFERS FROM" in (folder / "MANIFEST.txt").read_text()


def test_fetched_files_follow_the_umask(tmp_path):
    """mkstemp creates 0600 files: a fetched data file must be as readable as any other."""
    import stat

    data = b"prompt,a,b\nx,True,False\n"
    remote = RemoteFile("data/t.csv", "c0ffee", hashlib.sha256(data).hexdigest())
    origin = Origin("toy", "o/r", "MIT", "test", {"t.csv": remote})
    served = tmp_path / "mirror" / "o/r" / "c0ffee" / "data"
    served.mkdir(parents=True)
    (served / "t.csv").write_bytes(data)
    old = os.umask(0o022)
    try:
        with _serving(tmp_path / "mirror") as base:
            fetch("toy", tmp_path / "data", base_url=base, progress=False, origin=origin)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data" / "toy" / "t.csv").stat().st_mode) == 0o644


def test_an_into_that_cannot_be_created_is_refused_before_any_download(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    # nothing listens on port 9: had it tried to download, the error would be another
    argv = ["data", "fetch", "routellm_evals", "--base-url", "http://127.0.0.1:9"]
    assert main([*argv, "--into", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err
    assert "error: --into" in err and "x.txt is a file, not a folder" in err
    assert "Traceback" not in err
    assert (tmp_path / "x.txt").read_text() == "x"
