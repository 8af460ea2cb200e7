"""Writing a file so that readers see the old content or the new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ["atomic_replace", "write_atomically"]


def _fsync(path: Path) -> None:
    """Flush *path* (a file, or a directory: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_replace(target: Path, *, mode: int | None = None) -> Generator[Path, None, None]:
    """Yield a temp path beside *target*; on success it replaces *target* (blocking).

    Write the new content to the yielded path (an empty file made for the caller). When
    the block ends without an error the file is flushed to disk, given *mode* (None keeps
    the temp file's 0600), renamed over *target*, and the directory is flushed so the
    rename survives a crash. If the block or any of these steps fails, the temp file is
    removed and *target* is untouched.

    Raises:
        OSError: the temp file cannot be created, flushed or renamed, or the directory
            cannot be flushed (after the rename: *target* is the new file then).
    """
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        _fsync(temp)
        if mode is not None:
            os.chmod(temp, mode)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync(target.parent)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace *path* with *data* (blocking: call it from a worker thread).

    Through :func:`atomic_replace`: on any failure *path* is untouched. Missing parent
    directories are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_replace(path, mode=mode) as temp:
        temp.write_bytes(data)
