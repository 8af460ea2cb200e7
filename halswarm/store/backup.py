"""Online backup of the supervisor database (``hal-supervisor db backup``).

Blocking: call from a worker thread. Safe while the supervisor runs and writes:

- The source is read through one read transaction held for the whole copy, so the backup
  is the database exactly as committed when it began (a WAL snapshot). Without it,
  SQLite's backup restarts from the first page whenever another connection writes
  between two steps, and might never finish under a steady stream of events.
- In WAL mode that reader blocks no writer; the supervisor's checkpoints cannot pass the
  snapshot until the copy ends, so its ``-wal`` file grows meanwhile.
- Events are acknowledged only after their transaction commits, so every event acked
  before the backup began is in it.

The copy goes to a hidden temporary file beside the target, is switched to a rollback
journal (one self-contained file), checked with ``PRAGMA integrity_check``, flushed to
disk, and only then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeAlias

import attrs

from halswarm.fileutil import atomic_replace
from halswarm.store.dbfile import open_existing
from halswarm.store.store import StoreError

__all__ = ["STEP_PAGES", "BackupError", "BackupResult", "Progress", "backup_database"]

Progress: TypeAlias = Callable[[int, int], None]
"""``progress(pages_copied, pages_total)``."""

#: Pages copied per backup step (16 MiB with 4 KiB pages): the progress granularity.
STEP_PAGES: Final = 4096
_SIDE_FILES: Final = ("-journal", "-wal", "-shm")


class BackupError(StoreError):
    """The backup could not be written or failed its check; the target is untouched."""


@attrs.frozen
class BackupResult:
    """A finished, verified backup."""

    path: Path
    bytes: int
    pages: int
    events: int
    #: The first line of ``PRAGMA integrity_check`` (always ``ok``: anything else raises).
    integrity: str


def _check_target(source: Path, target: Path, *, force: bool) -> None:
    try:
        _check_target_paths(source, target, force=force)
    except PermissionError as exc:  # Path.exists()/is_dir() raise it on Python 3.11
        raise BackupError(f"cannot write backup to {target}: {exc.strerror or exc} ({exc.filename or target})") from exc


def _check_target_paths(source: Path, target: Path, *, force: bool) -> None:
    if target.is_dir():
        raise BackupError(f"cannot write backup to {target}: it is a directory")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"cannot write backup to {target}: it is the database itself")
    if not force:
        for path in (target, *(Path(f"{target}{suffix}") for suffix in _SIDE_FILES)):
            if path.exists():
                raise BackupError(f"backup target {path} already exists (--force replaces it)")
    parent = target.parent
    if not parent.is_dir():
        raise BackupError(f"cannot write backup to {target}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BackupError(f"cannot write backup to {target}: directory {parent} is not writable")


def _remove_side_files(path: Path) -> None:
    for suffix in _SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _copy(source: sqlite3.Connection, dest: sqlite3.Connection, step_pages: int, progress: Progress | None) -> None:
    source.isolation_level = None  # explicit transactions only
    source.execute("BEGIN")
    try:
        # The first read starts the read transaction: the snapshot every step copies from.
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()

        def report(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        source.backup(dest, pages=step_pages, progress=report)
    finally:
        source.execute("COMMIT")


def backup_database(
    source: Path,
    target: Path,
    *,
    force: bool = False,
    step_pages: int = STEP_PAGES,
    progress: Progress | None = None,
) -> BackupResult:
    """Copy the database at *source* to *target* while it may be in use; verify the copy.

    Args:
        source: the supervisor's database (``database.path``).
        target: the backup file to write.
        force: replace *target* if it exists (and remove stale ``-wal``/``-shm`` files
            beside it, which SQLite would otherwise apply to the new file).
        step_pages: pages per step; *progress* is called after each step.
        progress: ``progress(pages_copied, pages_total)``, called from this thread.

    Returns:
        The backup's size, page and event counts.

    Raises:
        DatabaseFileError: *source* is missing, not SQLite or not a supervisor database.
        BackupError: *target* exists (without *force*), cannot be written, or the copy
            failed its integrity check. The target is never left half-written.
    """
    src = open_existing(source, readonly=True)
    try:
        _check_target(source, target, force=force)
        return _write(src, target, step_pages, progress)
    finally:
        src.close()


def _copy_to(src: sqlite3.Connection, temp: Path, step_pages: int, progress: Progress | None) -> tuple[int, int]:
    """Copy *src* into the new file *temp* and check it; return its event and page counts."""
    dest = sqlite3.connect(temp)
    try:
        _copy(src, dest, step_pages, progress)
        # A self-contained file: no -wal beside it to lose when it is copied elsewhere.
        dest.execute("PRAGMA journal_mode = DELETE").fetchone()
        _verify(dest)
        events = int(dest.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        pages = int(dest.execute("PRAGMA page_count").fetchone()[0])
    finally:
        dest.close()
    return events, pages


def _verify(dest: sqlite3.Connection) -> None:
    try:
        problems = [str(row[0]) for row in dest.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:  # too damaged to even list the problems
        problems = [str(exc)]
    if problems != ["ok"]:
        raise BackupError(
            f"the backup failed its integrity check ({'; '.join(problems[:5])}); "
            'the database itself is likely damaged: see docs/DATA.md, "Restore"'
        )


def _write(src: sqlite3.Connection, target: Path, step_pages: int, progress: Progress | None) -> BackupResult:
    try:
        with atomic_replace(target) as temp:
            try:
                events, pages = _copy_to(src, temp, step_pages, progress)
            finally:
                # SQLite's own files beside the copy (left by a failed step); atomic_replace
                # removes the copy itself when anything fails.
                _remove_side_files(temp)
            # Stale files of a previous database at the target (only with --force): a
            # leftover -journal would be rolled back into the new file when it is opened.
            _remove_side_files(target)
    except sqlite3.Error as exc:
        raise BackupError(f"backup to {target} failed: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"cannot write backup to {target}: {exc.strerror or exc}") from exc
    return BackupResult(path=target, bytes=target.stat().st_size, pages=pages, events=events, integrity="ok")
