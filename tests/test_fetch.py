"""`routellm-lc data fetch`: pinned, verified download of routellm_evals from its origin.

GitHub is out of reach here, so a local HTTP server plays its raw-file host: it serves the real
files of the data directory under `/<repository>/<commit>/<path in the repository>`, the layout
raw.githubusercontent.com uses. Everything else (URLs, hashes, placement, the loaders reading
the result) is the real code path.
"""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from routellm_lc.cli import main
from routellm_lc.evals.benchmarks import load_benchmark
from routellm_lc.fetch import FetchError, fetch, origins


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def mirror(data_dir: Path, tmp_path: Path):
    """A raw-file host holding routellm_evals at its pinned commit, laid out as on GitHub."""
    origin = origins()["routellm_evals"]
    root = tmp_path / "mirror"
    for local, (remote, _) in origin.files.items():
        target = root / origin.repository / origin.commit / remote
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / "routellm_evals" / local, target)
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root / origin.repository / origin.commit
    server.shutdown()
    server.server_close()


def test_origins_pin_every_file_the_benchmarks_read():
    origin = origins()["routellm_evals"]
    assert origin.repository == "lm-sys/RouteLLM" and len(origin.commit) == 40
    files = origin.files
    assert sum(k.startswith("mmlu_responses/mmlu_") for k in files) == 57
    assert files["gsm8k_responses.csv"][0] == "routellm/evals/gsm8k/gsm8k_responses.csv"
    assert files["mt_bench_question.jsonl"][0] == "routellm/evals/mt_bench/question.jsonl"
    assert all(len(sha) == 64 for _, sha in files.values())


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
    assert "lm-sys/RouteLLM" in manifest and origins()["routellm_evals"].commit in manifest
    # A second run finds every file verified in place and downloads nothing.
    again = fetch("routellm_evals", tmp_path / "data", base_url=base, progress=False)
    assert again.downloaded == [] and len(again.kept) == 63


def test_a_tampered_file_is_refused_and_never_written(mirror, tmp_path):
    base, served = mirror
    (served / "routellm/evals/gsm8k/gsm8k_responses.csv").write_text("prompt,a,b\nx,True,False\n")
    with pytest.raises(FetchError, match="does not match its pinned SHA-256"):
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
    assert "arena_bench_v1     missing  derived" in out
    assert main(["data", "fetch", "theoremqa", "--into", str(into)]) == 2
    assert "derived from its origin" in capsys.readouterr().err
