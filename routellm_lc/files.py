"""Writing files atomically, under a fresh temporary name.

Caches and state files are written beside their target and moved in place, so a reader never
sees half a file and concurrent writers (processes or threads) never share a temporary name.
The temporary file is created exclusively by `tempfile.mkstemp`: a predictable name (a pid) in
a shared folder could be a planted symlink, and writing through it would overwrite the link's
target. mkstemp creates it 0600; unless `private`, the file gets the mode any file would (0666
less the umask, e.g. 0644) before it is moved in place, so a cache shared between users stays
readable to them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(
    target: Path,
    write: Callable[[BinaryIO], None],
    *,
    fsync: bool = False,
    private: bool = False,
) -> Path:
    """Call `write` on a fresh temporary file beside `target`, then move it to `target`
    (mode 0600 if `private`, else as the umask makes new files).

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
        if not private:
            os.chmod(temporary, 0o666 & ~umask())
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
        os.chmod(temporary, 0o666 & ~umask())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
