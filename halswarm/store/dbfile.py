"""An existing supervisor database file, opened by an operator's command (``hal-supervisor db``).

Blocking: call from a worker thread. Unlike :func:`~halswarm.store.open_store`, nothing
here creates a database: a wrong path must be an error, not a new empty file.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import attrs
from sqlite_utils import Database

from halswarm.store.retention_sql import auto_vacuum_mode
from halswarm.store.schema import schema_status
from halswarm.store.store import SchemaTooNewError, StoreError, connect, migrate

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DatabaseFileError", "MigrationResult", "migrate_database", "open_existing"]


class DatabaseFileError(StoreError):
    """The database file is missing, unreadable, not SQLite, or not a supervisor database."""


def open_existing(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open the supervisor database at *path*, which must exist.

    Raises:
        DatabaseFileError: the message says what is wrong with the file.
    """
    try:
        exists, is_file = path.exists(), path.is_file()
    except PermissionError as exc:  # Path.exists() raises it on Python 3.11
        raise DatabaseFileError(
            f"cannot read database {path}: {exc.strerror or exc} (run as the supervisor's user)"
        ) from exc
    if not exists:
        raise DatabaseFileError(
            f"database file {path} does not exist (check database.path; the supervisor creates it when it first starts)"
        )
    if not is_file:
        raise DatabaseFileError(f"database path {path} is not a file")
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path, readonly=readonly)
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        if "not a database" in str(exc):
            raise DatabaseFileError(f"{path} is not a SQLite database") from exc
        raise DatabaseFileError(f"cannot open database {path}: {exc}") from exc
    if found is None:
        conn.close()
        raise DatabaseFileError(f"{path} is not a halswarm supervisor database (it has no schema_migrations table)")
    return conn


@attrs.frozen
class MigrationResult:
    """What :func:`migrate_database` did."""

    before: int  # schema version before
    after: int  # schema version now
    applied: list[str]  # migrations applied now, in order
    auto_vacuum_before: str
    auto_vacuum: str
    vacuumed: bool  # a VACUUM rewrote the file to change auto_vacuum


def migrate_database(path: Path, *, vacuum: bool = False) -> MigrationResult:
    """Apply pending migrations to the existing database at *path*; never downgrade.

    With *vacuum*, a database without ``auto_vacuum = INCREMENTAL`` (created before
    halswarm set it) is switched to it by a ``VACUUM``: the file is rewritten, which
    needs as much free disk as the database and holds the write lock throughout (stop
    the supervisor first).

    Raises:
        SchemaTooNewError: a newer halswarm migrated it; nothing was changed.
        DatabaseFileError: missing, not SQLite, not a supervisor database.
        StoreError: SQLite failed (disk full, locked).
    """
    conn = open_existing(path, readonly=False)
    try:
        status = schema_status(Database(conn))
        if status.newer:
            raise SchemaTooNewError(path, status)
        applied = migrate(conn, path)
        after = schema_status(Database(conn)).version
        mode_before = auto_vacuum_mode(conn)
        vacuumed = False
        if vacuum and mode_before != "incremental":
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
            vacuumed = True
        return MigrationResult(
            before=status.version,
            after=after,
            applied=applied,
            auto_vacuum_before=mode_before,
            auto_vacuum=auto_vacuum_mode(conn),
            vacuumed=vacuumed,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate database {path}: {exc}") from exc
    finally:
        conn.close()
