"""Reading and writing project files without following a project's own traps.

A project directory is written by coding agents and by whoever commits to its
repository, so its files are not trusted: ``AGENT.md`` may be a symbolic link to the
agent's SSH key, a FIFO that blocks a reader forever, or ``/dev/zero``. Checks read
project files only through :func:`read_confined` (a regular file, not a link, inside
the root, bounded in size) and provisioning writes only to paths from
:func:`confined_target` (inside the root, not through a link).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MAX_FILE_BYTES", "UnsafeFileError", "confined_target", "read_confined"]

#: Largest file a check reads (AGENT.md, docs, hooks are small).
MAX_FILE_BYTES: Final = 1024 * 1024


class UnsafeFileError(Exception):
    """A project path that must not be read or written; the message says why (no contents)."""


def _inside(root: Path, path: Path) -> bool:
    return path == root or path.is_relative_to(root)


def read_confined(root: Path, relative: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes | None:
    """The bytes of ``root / relative``, or None when it does not exist (blocking: a worker thread).

    Raises:
        UnsafeFileError: it is a symbolic link, not a regular file, outside *root* once
            resolved, or larger than *max_bytes*.
    """
    path = root / relative
    try:
        parent = path.parent.resolve(strict=True)
    except FileNotFoundError:
        return None
    if not _inside(root.resolve(), parent):
        raise UnsafeFileError(f"{relative}: outside the project directory")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: no links.
        fd = os.open(parent / path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"{relative}: a symbolic link (not followed)") from None
        if exc.errno in (errno.EISDIR, errno.ENOTDIR):
            raise UnsafeFileError(f"{relative}: not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{relative}: not a regular file")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{relative}: larger than {max_bytes} bytes")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{relative}: larger than {max_bytes} bytes")
    return data


def confined_target(root: Path, relative: str | Path) -> Path:
    """Where ``root / relative`` may be written: inside *root* through no symbolic link.

    Raises:
        UnsafeFileError: the path (or an existing parent) leads outside *root*, or the
            file itself is a symbolic link.
    """
    path = root / relative
    real_root = root.resolve()
    target = path.parent.resolve() / path.name  # existing parents resolved, links included
    if not _inside(real_root, target.parent):
        raise UnsafeFileError(f"{relative}: outside the project directory")
    if target.is_symlink():
        raise UnsafeFileError(f"{relative}: a symbolic link (not written through)")
    return target
