"""Writing files atomically, under a fresh temporary name.

Caches and state files are written beside their target and moved in place, so a reader never
sees half a file and concurrent writers (processes or threads) never share a temporary name.
The temporary file is created exclusively by `tempfile.mkstemp` (mode 0600): a predictable
name (a pid) in a shared folder could be a planted symlink, and writing through it would
overwrite the link's target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(target: Path, write: Callable[[BinaryIO], None], *, fsync: bool = False) -> Path:
    """Call `write` on a fresh temporary file beside `target`, then move it to `target`.

    On any error the temporary file is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    temporary = Path(name)
    try:
        with open(handle, "wb") as file:
            write(file)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def atomic_path(target: Path, write: Callable[[Path], None]) -> Path:
    """As `atomic_write`, for writers that take a path (`torch.onnx.export`): `write` gets the
    fresh temporary file's path, already created (empty) and owned by this process."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
