"""Atomic cache and state writes: fresh temporary names, nothing half-written in sight."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from routellm_lc.evals.harness import ScoreCache
from routellm_lc.files import atomic_path, atomic_write, umask
from routellm_lc.training.decontaminate import EmbeddingStore


def test_atomic_write_replaces_the_target_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write(target, lambda f: f.write(b"one"))
    atomic_write(target, lambda f: f.write(b"two"), fsync=True)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask()  # as any new file
    atomic_write(target, lambda f: f.write(b"secret"), private=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_cache_files_are_readable_as_the_umask_makes_them(tmp_path):
    """mkstemp's 0600 was kept: in a cache shared between users (`$ROUTELLM_LC_CACHE`) the
    other users could read no embedding, score or ONNX export, and redid the work."""
    old = os.umask(0o022)
    try:
        store = EmbeddingStore("test-embedder", root=tmp_path / "emb")
        store.put(["a text"], np.ones((1, 4), dtype=np.float32))
        ScoreCache(tmp_path / "scores").save("k", np.array([0.5]))
        atomic_path(tmp_path / "model.onnx", lambda path: path.write_bytes(b"onnx"))
    finally:
        os.umask(old)
    files = [*store.folder.iterdir(), *(tmp_path / "scores").iterdir(), tmp_path / "model.onnx"]
    assert len(files) == 3
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o644}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "cache.npz"
    target.write_bytes(b"old")

    def broken(file) -> None:
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    with pytest.raises(ZeroDivisionError):
        atomic_path(target, lambda path: (path.write_bytes(b"half"), 1 / 0))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "shared.bin"
    errors: list[BaseException] = []

    def writer(byte: int) -> None:
        try:
            for _ in range(50):
                atomic_write(target, lambda f: f.write(bytes([byte]) * 100_000))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    content = target.read_bytes()
    assert len(content) == 100_000 and len(set(content)) == 1  # one writer's whole file


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_cache_writes_do_not_follow_a_symlink_at_a_predictable_name(tmp_path: Path) -> None:
    """The embedding store and the score cache wrote through `.<name>.<pid>.tmp.npz`: a
    symlink planted there (a shared cache folder) had its target overwritten."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    store = EmbeddingStore("test-embedder", root=tmp_path / "emb")
    store.folder.mkdir(parents=True)
    import hashlib

    from routellm_lc.training.decontaminate import _text_key

    key = _text_key("a text")
    digest = hashlib.sha256(b"".join(sorted([key]))).hexdigest()[:16]
    (store.folder / f".{digest}.{os.getpid()}.tmp.npz").symlink_to(victim)
    store.put(["a text"], np.ones((1, 4), dtype=np.float32))

    scores = ScoreCache(tmp_path / "scores")
    scores.root.mkdir()
    path = scores._path("k")
    (path.parent / (path.name + f".{os.getpid()}.tmp.npz")).symlink_to(victim)
    scores.save("k", np.array([0.5]))

    assert victim.read_text() == "precious"
    assert np.array_equal(scores.load("k"), [0.5])
    fresh = EmbeddingStore("test-embedder", root=tmp_path / "emb")
    vectors, missing = fresh.get(["a text"])
    assert missing == [] and np.array_equal(vectors, np.ones((1, 4)))


def test_a_damaged_embedding_cache_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    """A half-written chunk (a full disk, an older version's leftover temporary) made every
    later decontamination run fail to load the store."""
    store = EmbeddingStore("test-embedder", root=tmp_path)
    store.put(["kept"], np.full((1, 4), 2.0, dtype=np.float32))
    (store.folder / "0000damaged.npz").write_bytes(b"PK\x03\x04 not a zip")
    (store.folder / ".old.123.tmp.npz").write_bytes(b"half")
    fresh = EmbeddingStore("test-embedder", root=tmp_path)
    with pytest.warns(UserWarning, match="0000damaged.npz"):
        vectors, missing = fresh.get(["kept", "new"])
    assert missing == [1] and np.array_equal(vectors[0], np.full(4, 2.0))
