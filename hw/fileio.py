"""Atomic file output: a file appears complete or not at all (no partial output file is ever left
behind, and an existing file survives any failure).

Every file is written to a temporary file in its destination folder, given the permissions a plain
``open()`` would give (``0o666 & ~umask``; ``mkstemp`` creates ``0o600``), and renamed into place with
``os.replace``. On any error (including KeyboardInterrupt) every temporary file is removed and no
destination is touched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_many"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def atomic_write_many(targets: dict) -> None:
    """``targets``: ``{path: write}``, where ``write(tmp_path)`` fills the temporary file. All files
    are written first; only when every write succeeded are they renamed into place."""
    temps = []
    mode = 0o666 & ~_umask()
    try:
        for path, write in targets.items():
            path = Path(path)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append((tmp, path))
            write(Path(tmp))
            os.chmod(tmp, mode)
        for tmp, path in temps:
            os.replace(tmp, path)
        temps = []
    finally:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def atomic_write(path, write: Callable[[Path], None]) -> None:
    """Create ``path`` atomically; ``write(tmp_path)`` fills the temporary file."""
    atomic_write_many({path: write})
