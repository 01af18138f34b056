"""Checkpoint resolution: local folders, bundled names, and Hub ids through huggingface_hub.

The Hub is unreachable here, so Hub ids are tested against a local Hub cache laid out exactly
as `huggingface_hub` writes it (models--owner--name/snapshots/<rev>/, refs/main): the same
`snapshot_download` call that fetches from the Hub serves them offline.
"""

from __future__ import annotations

import numpy as np
import pytest

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import load_router
from routellm_lc.routers.checkpoints import resolve_checkpoint, save_checkpoint


def _hub_cache_repo(cache, repo_id: str, revision: str = "a" * 40):
    owner, name = repo_id.split("/")
    repo = cache / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


class _Table:
    name = "table"
    dim = 3

    def embed(self, texts):
        return np.array([[1.0, 0.0, 0.0] if "hard" in t else [0.0, 1.0, 0.0] for t in texts])


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_routellm_mf_loads_by_hub_id_from_the_hub_cache(offline_hub):
    snapshot = _hub_cache_repo(offline_hub, "routellm/mf_gpt4_augmented")
    rng = np.random.default_rng(1)
    config = {"dim": 4, "num_models": 64, "text_dim": 3, "num_classes": 1, "use_proj": True}
    tensors = {
        "P.weight": rng.normal(size=(64, 4)),
        "text_proj.0.weight": rng.normal(size=(4, 3)),
        "classifier.0.weight": rng.normal(size=(1, 4)),
    }
    save_checkpoint(snapshot, config, tensors, "# mf\n")
    router = load_router("mf", checkpoint="routellm/mf_gpt4_augmented", embedder=_Table())
    scores = router.strong_win_rate(["a hard one", "easy"])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    assert scores[0] != scores[1]
    assert router.cache_key.startswith("mf:")


def test_a_hub_that_never_answers_falls_back_to_the_cached_copy(offline_hub, monkeypatch, caplog):
    """A proxy that accepts the connection and never answers: huggingface_hub would wait for
    ever; with the checkpoint in the local Hub cache, the cached copy is used after
    `ROUTELLM_LC_HUB_TIMEOUT` seconds."""
    import socket

    import huggingface_hub.constants as constants

    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)  # accepted by the kernel, never answered
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{stalled.getsockname()[1]}")
    monkeypatch.setenv("HF_ENDPOINT", constants.ENDPOINT)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("ROUTELLM_LC_HUB_TIMEOUT", "1")
    snapshot = _hub_cache_repo(offline_hub, "owner/cached")
    (snapshot / "config.json").write_text("{}")
    try:
        with caplog.at_level("WARNING", logger="routellm_lc"):
            folder = resolve_checkpoint("owner/cached", required=["config.json"])
    finally:
        stalled.close()
    assert folder == snapshot
    assert "did not confirm owner/cached" in caplog.text and "HF_HUB_OFFLINE=1" in caplog.text


def test_a_hub_that_never_answers_about_an_uncached_checkpoint_is_an_error(
    offline_hub, monkeypatch
):
    """Not in the cache: huggingface_hub's first request waited for ever on a mirror that
    accepts the connection and never answers, and `serve` never started."""
    import socket
    import threading

    import huggingface_hub.constants as constants

    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{stalled.getsockname()[1]}")
    monkeypatch.setenv("HF_ENDPOINT", constants.ENDPOINT)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("ROUTELLM_LC_HUB_TIMEOUT", "1")
    outcome = []

    def load():
        try:
            resolve_checkpoint("owner/absent", required=["config.json"])
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(30)  # liveness, not speed: without the deadline it never returns
    stalled.close()
    assert not worker.is_alive(), "loading hung on a Hub that never answers"
    assert isinstance(outcome[0], CheckpointError)
    assert "did not answer about 'owner/absent' within 1 s" in str(outcome[0])


@pytest.fixture
def fake_hub(offline_hub, monkeypatch):
    """A local HTTP server answering as the Hub does for `owner/cached`: its `main` is commit
    `new_sha` (`hub.sha`), with one file; `hub.requests` lists the paths asked for."""
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    import huggingface_hub.constants as constants

    hub = SimpleNamespace(
        sha="b" * 40, requests=[], file_delay=0.0, drop_files=False, token=None, auth=[]
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, body: bytes, headers=()):
            self.send_response(200)
            for key, value in (("Content-Type", "application/json"), *headers):
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = self.path.split("?")[0]
            hub.requests.append(path)
            hub.auth.append(self.headers.get("Authorization"))
            if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
                # a private repo: the Hub answers 401 without the right token
                body = b'{"error": "Invalid credentials in Authorization header"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            if path.startswith("/api/models/owner/cached/tree/"):
                listing = [{"type": "file", "path": "config.json", "size": 13, "oid": "c" * 40}]
                return self._send(json.dumps(listing).encode())
            if path.startswith("/api/models/owner/cached"):
                info = {
                    "id": "owner/cached",
                    "sha": hub.sha,
                    "siblings": [{"rfilename": "config.json"}],
                }
                return self._send(json.dumps(info).encode())
            if "/resolve/" in path:
                if self.command == "GET":
                    time.sleep(hub.file_delay)
                    if hub.drop_files:  # a body cut short: the connection drops mid-file
                        self.send_response(200)
                        self.send_header("Content-Length", "100")
                        self.end_headers()
                        self.wfile.write(b'{"new"')
                        return
                return self._send(b'{"new": true}', [("X-Repo-Commit", hub.sha), ("ETag", '"e1"')])
            self.send_response(404)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("ROUTELLM_LC_HUB_TIMEOUT", "5")
    yield hub
    server.shutdown()


def test_a_cached_checkpoint_the_hub_confirms_is_used_without_a_download(offline_hub, fake_hub):
    snapshot = _hub_cache_repo(offline_hub, "owner/cached", revision=fake_hub.sha)
    (snapshot / "config.json").write_text('{"old": true}')
    assert resolve_checkpoint("owner/cached", required=["config.json"]) == snapshot
    assert not any("/resolve/" in path for path in fake_hub.requests)


def test_a_newer_revision_on_the_hub_is_downloaded(offline_hub, fake_hub, monkeypatch):
    """Only the Hub's answer is timed: a newer revision is downloaded, however long it takes."""
    snapshot = _hub_cache_repo(offline_hub, "owner/cached")  # commit "aaa…", older
    (snapshot / "config.json").write_text('{"old": true}')
    monkeypatch.setenv("ROUTELLM_LC_HUB_TIMEOUT", "1")
    fake_hub.file_delay = 1.5  # a download longer than the Hub's answer may take
    folder = resolve_checkpoint("owner/cached", required=["config.json"])
    assert folder.name == fake_hub.sha
    assert (folder / "config.json").read_text() == '{"new": true}'


def test_a_failed_download_of_a_newer_revision_keeps_the_cached_copy(offline_hub, fake_hub):
    """The download drops mid-file (an httpx error huggingface_hub lets out): the cached copy
    answers, now and on the next load offline (huggingface_hub had moved the branch's ref)."""
    import huggingface_hub.constants as constants

    snapshot = _hub_cache_repo(offline_hub, "owner/cached")
    (snapshot / "config.json").write_text('{"old": true}')
    fake_hub.drop_files = True
    assert resolve_checkpoint("owner/cached", required=["config.json"]) == snapshot
    assert (snapshot.parent.parent / "refs" / "main").read_text() == snapshot.name
    constants.HF_HUB_OFFLINE = True  # restored by the fixture's monkeypatch
    assert resolve_checkpoint("owner/cached", required=["config.json"]) == snapshot


def test_a_private_repo_is_fetched_with_the_token_given(offline_hub, fake_hub, monkeypatch):
    """`load_router(..., token=...)` (huggingface_hub's own keyword) raised TypeError: only
    `HF_TOKEN` reached a private or gated repo. The token goes with every request."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake_hub.token = "hf_secret"
    with pytest.raises(CheckpointError, match="owner/cached.*401 Unauthorized"):
        resolve_checkpoint("owner/cached", required=["config.json"])
    fake_hub.auth.clear()
    folder = resolve_checkpoint("owner/cached", required=["config.json"], token="hf_secret")
    assert (folder / "config.json").read_text() == '{"new": true}'
    assert fake_hub.auth and set(fake_hub.auth) == {"Bearer hf_secret"}
    # the cached copy is checked against the Hub with the token too
    fake_hub.auth.clear()
    assert resolve_checkpoint("owner/cached", ["config.json"], token="hf_secret") == folder
    assert fake_hub.auth == ["Bearer hf_secret"]


@pytest.mark.parametrize("name", ["mf", "sw_ranking", "bert", "causal_llm"])
def test_every_router_passes_its_token_to_the_hub(offline_hub, fake_hub, monkeypatch, name):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake_hub.token = "hf_secret"
    with pytest.raises(CheckpointError) as caught:  # the fake repo holds no router's files
        load_router(name, checkpoint="owner/cached", token="hf_secret")
    assert "Could not fetch" not in str(caught.value)
    assert fake_hub.auth and set(fake_hub.auth) == {"Bearer hf_secret"}


def test_causal_llm_fetches_a_fallback_tokenizer_with_the_token(offline_hub, fake_hub, monkeypatch):
    """RouteLLM's causal_llm tokenizer is Meta-Llama-3-8B's, a gated repo: the token given to
    `load_router` reaches that download too."""
    from routellm_lc.routers.causal_llm import _tokenizer_files

    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake_hub.token = "hf_secret"
    folder = _tokenizer_files("owner/cached", token="hf_secret")
    assert (folder / "config.json").is_file()
    assert fake_hub.auth and set(fake_hub.auth) == {"Bearer hf_secret"}


def test_a_partial_cached_snapshot_is_completed_from_the_hub(offline_hub, fake_hub):
    """A snapshot holding some of the files (`ModelCard.load(repo)` fetches README.md alone)
    at the Hub's own commit used to fail as "incomplete" for good, the Hub never asked."""
    snapshot = _hub_cache_repo(offline_hub, "owner/cached", revision=fake_hub.sha)
    (snapshot / "README.md").write_text("# card\n")
    folder = resolve_checkpoint("owner/cached", required=["config.json"])
    assert folder == snapshot and (folder / "config.json").read_text() == '{"new": true}'


def test_a_partial_cached_snapshot_offline_names_what_is_missing(offline_hub):
    snapshot = _hub_cache_repo(offline_hub, "owner/partial")
    (snapshot / "README.md").write_text("# card\n")
    with pytest.raises(CheckpointError, match="incomplete: missing config.json"):
        resolve_checkpoint("owner/partial", required=["config.json"])


def test_an_incomplete_newer_revision_keeps_the_complete_cached_copy(offline_hub, fake_hub):
    """The Hub's newer commit lacks a file the router needs: the complete cached copy answers,
    and stays the branch's copy for the next offline load."""
    import huggingface_hub.constants as constants

    snapshot = _hub_cache_repo(offline_hub, "owner/cached")
    (snapshot / "config.json").write_text('{"old": true}')
    (snapshot / "model.safetensors").write_bytes(b"weights")
    required = ["config.json", "model.safetensors"]
    assert resolve_checkpoint("owner/cached", required=required) == snapshot
    assert (snapshot.parent.parent / "refs" / "main").read_text() == snapshot.name
    constants.HF_HUB_OFFLINE = True  # restored by the fixture's monkeypatch
    assert resolve_checkpoint("owner/cached", required=required) == snapshot


def test_a_commit_asked_for_by_its_hash_is_not_checked_online(offline_hub, fake_hub):
    snapshot = _hub_cache_repo(offline_hub, "owner/cached")
    (snapshot / "config.json").write_text("{}")
    folder = resolve_checkpoint("owner/cached", required=["config.json"], revision="a" * 40)
    assert folder == snapshot and fake_hub.requests == []


def test_a_bad_hub_timeout_is_named(offline_hub, fake_hub, monkeypatch):
    _hub_cache_repo(offline_hub, "owner/cached").joinpath("config.json").write_text("{}")
    monkeypatch.setenv("ROUTELLM_LC_HUB_TIMEOUT", "20s")
    with pytest.raises(CheckpointError, match="ROUTELLM_LC_HUB_TIMEOUT"):
        resolve_checkpoint("owner/cached", required=["config.json"])


def test_unknown_hub_id_offline_names_the_repo(offline_hub):
    with pytest.raises(CheckpointError, match="routellm/nope"):
        resolve_checkpoint("routellm/nope")


def test_bundled_name_and_local_folder_resolve(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_checkpoint(str(folder)) == folder
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        resolve_checkpoint(str(folder), ("config.json", "model.safetensors"))


def test_written_weights_follow_the_umask(tmp_path):
    """safetensors' own writer makes 0600 files; a checkpoint is shared like any file."""
    import os
    import stat

    import numpy as np

    from routellm_lc.routers.checkpoints import save_checkpoint

    old = os.umask(0o022)
    try:
        folder = save_checkpoint(tmp_path / "ck", {"dim": 1}, {"w": np.ones((1, 1))}, "# c\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "config.json").stat().st_mode) == 0o644


def test_the_shipped_checkpoint_is_world_readable():
    import stat
    from pathlib import Path

    import routellm_lc

    folder = Path(routellm_lc.__file__).parent / "checkpoints" / "mf_default"
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


def test_checkpoints_are_written_as_utf8_whatever_the_locale(tmp_path):
    """Every card holds "≥": in a non-UTF-8 locale (Windows' cp1252, POSIX's C) `train`
    crashed at its very end and left an empty README.md."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from routellm_lc.routers.checkpoints import save_checkpoint\n"
        "assert sys.flags.utf8_mode == 0\n"
        "save_checkpoint(sys.argv[1], {'strong_model': 'mod\\u00e8le-fort'}, "
        "{'w': np.zeros(2)}, 'quality \\u2265 0.8 \\u2014 caf\\u00e9\\n')\n"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    env["PYTHONCOERCECLOCALE"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ck")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ck" / "README.md").read_text(encoding="utf-8") == "quality ≥ 0.8 — café\n"
    config = json.loads((tmp_path / "ck" / "config.json").read_text(encoding="utf-8"))
    assert config["strong_model"] == "modèle-fort"


def test_a_tilde_output_folder_is_the_home_folder(tmp_path, monkeypatch):
    """`--output '~/ck'` (quoted, or `--output=~/ck`, which the shell leaves alone) wrote to a
    folder literally named "~" in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    save_checkpoint("~/ck", {"a": 1}, {"w": np.zeros(2)}, "# card\n")
    assert (tmp_path / "home" / "ck" / "config.json").is_file()
    assert not (tmp_path / "~").exists()


def test_a_revision_is_never_ignored_for_a_local_folder(tmp_path, monkeypatch):
    """With a folder ./org/name present, `revision="v2"` silently loaded the folder."""
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "org" / "name", {"a": 1}, {"w": np.zeros(2)}, "# card\n")
    assert resolve_checkpoint("org/name").resolve() == tmp_path / "org" / "name"
    with pytest.raises(CheckpointError, match="revision='v2' pins a Hugging Face Hub revision"):
        resolve_checkpoint("org/name", revision="v2")


def test_a_hub_id_names_its_revision_after_an_at(offline_hub):
    """`--checkpoint mf=owner/name@v2` (the command line has no revision flag) failed with
    huggingface_hub's HFValidationError."""
    old = _hub_cache_repo(offline_hub, "owner/pinned", revision="a" * 40)
    (old / "config.json").write_text('{"old": true}')
    new = old.parent / ("b" * 40)
    new.mkdir()
    (new / "config.json").write_text('{"new": true}')
    (old.parent.parent / "refs" / "v2").write_text("b" * 40)
    assert resolve_checkpoint("owner/pinned") == old  # main
    assert resolve_checkpoint("owner/pinned@v2") == new
    assert resolve_checkpoint("owner/pinned@" + "a" * 40) == old
    assert resolve_checkpoint("owner/pinned@v2", revision="v2") == new
    with pytest.raises(CheckpointError, match="'owner/pinned' at revision 'v3'"):
        resolve_checkpoint("owner/pinned@v3")  # a revision the cache does not hold: named
    with pytest.raises(CheckpointError, match="names revision 'v2' and revision='main'"):
        resolve_checkpoint("owner/pinned@v2", revision="main")


def test_a_checkpoint_in_a_newer_format_is_refused_not_misread(tmp_path):
    """A future checkpoint with a field that changes scores loaded, and scored without it."""
    import json

    from routellm_lc.routers.checkpoints import FORMAT_VERSION
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    battles = [
        {"prompt": p, "model_a": "big", "model_b": "small", "winner": w}
        for p, w in (("Prove the theorem in full.", "model_a"), ("hi", "model_b"))
    ]
    folder = tmp_path / "mf"
    MatrixFactorizationRouter("big", "small", embedder=_Table(), dim=2).fit(
        battles * 4
    ).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION == 1
    load_router("mf", checkpoint=str(folder), embedder=_Table())
    for version, message in ((2, "checkpoint format 2, newer than"), ("2", "whole number")):
        (folder / "config.json").write_text(json.dumps({**config, "format_version": version}))
        with pytest.raises(CheckpointError, match=message):
            load_router("mf", checkpoint=str(folder), embedder=_Table())
    del config["format_version"]  # written before the field: version 1
    (folder / "config.json").write_text(json.dumps(config))
    load_router("mf", checkpoint=str(folder), embedder=_Table())


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("strong_model", "strong_model/weak_model is missing"),
        ("weak_model", "strong_model/weak_model is missing"),
        ("model_names", "missing required field\\(s\\): model_names"),
    ],
)
def test_an_mf_config_missing_its_pair_or_names_is_a_checkpoint_error(tmp_path, key, message):
    """A ValueError not naming the folder, or RouteLLM's "64 model names for num_models=2"
    for a checkpoint of ours that lost its `model_names`."""
    import json
    import shutil

    from routellm_lc.routers.checkpoints import BUNDLED_DIR

    folder = tmp_path / "mf"
    shutil.copytree(BUNDLED_DIR / "mf_default", folder)
    config = json.loads((folder / "config.json").read_text())
    del config[key]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_router("mf", checkpoint=str(folder))
    if key != "model_names":  # the caller can name the pair itself
        router = load_router(
            "mf",
            checkpoint=str(folder),
            strong_model=config.get("strong_model", "strong-tier"),
            weak_model=config.get("weak_model", "weak-tier"),
        )
        assert router.strong_win_rate(["hi"]).shape == (1,)


def test_an_unknown_users_home_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="nosuchuser"):
        resolve_checkpoint("~nosuchuser-routellm/ck")


def test_only_a_network_timeout_reads_as_a_hub_that_did_not_answer():
    """A Hub's 504 whose JSON says "upstream request timed out" was reported as "did not
    answer within 1 s"; the class of the error decides, never its text."""
    import httpx

    from routellm_lc.routers.checkpoints import _timed_out

    assert _timed_out(httpx.ReadTimeout("slow")) and _timed_out(TimeoutError())
    try:
        try:
            raise httpx.ConnectTimeout("c")
        except httpx.ConnectTimeout as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert _timed_out(outer)
    assert not _timed_out(ValueError("upstream request timed out"))
    assert not _timed_out(httpx.ConnectError("refused"))
