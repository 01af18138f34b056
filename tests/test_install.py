"""What a `pip install` (rather than a checkout with `scripts/bootstrap`) meets: no data
directory beside a checkout, GGUF checkpoints without the `[gguf]` extra, a first run that
exports the embedder to ONNX; and the packaging metadata those rely on."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import routellm_lc.data
from routellm_lc.cli import main
from routellm_lc.data import DataDirError, data_dir
from routellm_lc.routers import load_router
from routellm_lc.routers.causal_llm import MissingDependencyError

REPO = Path(__file__).resolve().parents[1]


def _installed_layout(tmp_path: Path) -> Path:
    """`site-packages/routellm_lc/data.py`: a package with no pyproject.toml above it."""
    module = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "routellm_lc"
    module.mkdir(parents=True)
    (module / "data.py").write_text("")
    return module / "data.py"


# -- the default data directory ---------------------------------------------------------------
def test_a_checkout_defaults_to_shared_data_beside_it(tmp_path):
    checkout = tmp_path / "project"
    (checkout / "routellm_lc").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    module = checkout / "routellm_lc" / "data.py"
    module.write_text("")
    assert routellm_lc.data._beside_repo(module) == tmp_path / "shared" / "data"
    # this checkout: the default the README describes
    assert routellm_lc.data._beside_repo() == REPO.parent / "shared" / "data"


def test_an_installed_package_has_no_default_data_dir(tmp_path, monkeypatch, capsys):
    module = _installed_layout(tmp_path)
    assert routellm_lc.data._beside_repo(module) is None
    monkeypatch.setattr(routellm_lc.data, "__file__", str(module))
    monkeypatch.delenv("ROUTELLM_LC_DATA", raising=False)
    with pytest.raises(DataDirError) as info:
        data_dir()
    message = str(info.value)
    assert "--data-dir" in message and "ROUTELLM_LC_DATA" in message
    assert "shared" not in message and "python3.11" not in message  # no made-up path
    argv = ["eval", "--benchmark", "mt-bench", "--routers", "random"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: No data directory given: pass --data-dir DIR or set ROUTELLM_LC_DATA" in err
    assert main(["data", "list"]) == 0
    assert "data directory: not found" in capsys.readouterr().out


# -- GGUF without the extra -------------------------------------------------------------------
@pytest.fixture
def gguf_file(tmp_path):
    path = tmp_path / "model.Q4_1.gguf"
    path.write_bytes(b"GGUF")  # never read: the check comes first
    return path


def test_gguf_without_the_gguf_package_names_the_extra(gguf_file, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'routellm-lc\[gguf\]'"):
        load_router("causal_llm", checkpoint=str(gguf_file))
    argv = ["route", "--router", "causal_llm", "--checkpoint", str(gguf_file), "hi"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: Loading a GGUF checkpoint needs the gguf package (it is not installed)" in err
    assert "routellm-lc[gguf]" in err and "Traceback" not in err


def test_gguf_older_than_transformers_accepts(gguf_file, monkeypatch):
    pytest.importorskip("gguf")
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "0.9.1" if name == "gguf" else real(name)
    )
    with pytest.raises(MissingDependencyError, match=r"0\.9\.1 is installed, 0\.10\.0 or later"):
        load_router("causal_llm", checkpoint=str(gguf_file))


def test_the_gguf_extra_is_declared():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(req.replace(" ", "").startswith("gguf>=0.10") for req in extras["gguf"])


# -- the first run's ONNX export ----------------------------------------------------------------
@pytest.mark.slow
def test_the_first_onnx_export_prints_nothing(tmp_path):
    """An empty cache: the embedder is exported to ONNX on first use, silently (no progress
    bar, no TracerWarning, no torch.onnx note), and it embeds."""
    env = {**os.environ, "ROUTELLM_LC_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONWARNINGS", None)
    code = (
        "import numpy as np\n"
        "from routellm_lc.embeddings import LocalEmbedder\n"
        "vectors = LocalEmbedder(backend='onnx').embed(['hello there', 'prove it'])\n"
        "assert vectors.shape == (2, 384)\n"
        "assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "cache" / "onnx").glob("*/model.onnx"))
    assert "Loading weights" not in done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert done.stderr.strip() == "", done.stderr
