"""Figures about the supervisor database (``hal-supervisor db stats``).

Blocking: call from a worker thread. Read-only, in one read transaction (consistent
counts while the supervisor writes). Row counts scan each table: seconds on a database
of tens of millions of events.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

import attrs
from sqlite_utils import Database

from halswarm.store.dbfile import open_existing
from halswarm.store.retention_sql import auto_vacuum_mode
from halswarm.store.schema import code_schema_version, schema_status
from halswarm.store.store import StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DatabaseStats", "database_stats"]


@attrs.frozen
class DatabaseStats:
    """One look at a supervisor database."""

    path: str
    file_bytes: int
    wal_bytes: int  # the -wal file beside it (0: none)
    page_size: int
    page_count: int
    freelist_count: int  # free pages inside the file (reused before it grows)
    auto_vacuum: str  # none, full or incremental
    journal_mode: str
    schema_version: int
    code_schema_version: int  # what this hal-supervisor brings it to
    pending_migrations: list[str]
    newer_migrations: list[str]  # applied by a newer halswarm
    tables: dict[str, int]  # rows per table
    oldest_event: str | None  # by ts
    newest_event: str | None
    events_per_node: dict[str, int]
    retention_days: int


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def database_stats(path: Path, *, retention_days: int) -> DatabaseStats:
    """Sizes, schema version, row counts and event figures of the database at *path*.

    Raises:
        DatabaseFileError: missing, not SQLite, not a supervisor database.
        StoreError: SQLite failed while reading.
    """
    conn = open_existing(path, readonly=True)
    try:
        conn.isolation_level = None
        conn.execute("BEGIN")
        try:
            return _read(conn, path, retention_days)
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read database {path}: {exc}") from exc
    finally:
        conn.close()


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def _read(conn: sqlite3.Connection, path: Path, retention_days: int) -> DatabaseStats:
    status = schema_status(Database(conn))
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    # Names come from sqlite_master itself; quoted all the same.
    # events is counted per node below: one scan of the largest table, not two.
    tables = {
        name: _scalar(conn, f'SELECT COUNT(*) FROM "{name.replace(chr(34), chr(34) * 2)}"')
        for name in names
        if name != "events"
    }
    oldest = newest = None
    per_node: dict[str, int] = {}
    if "events" in names:
        oldest, newest = conn.execute("SELECT MIN(ts), MAX(ts) FROM events").fetchone()
        per_node = {
            str(node): int(n)
            for node, n in conn.execute("SELECT node_id, COUNT(*) FROM events GROUP BY node_id ORDER BY node_id")
        }
        tables["events"] = sum(per_node.values())
        tables = dict(sorted(tables.items()))
    return DatabaseStats(
        path=str(path),
        file_bytes=_file_size(str(path)),
        wal_bytes=_file_size(f"{path}-wal"),
        page_size=_scalar(conn, "PRAGMA page_size"),
        page_count=_scalar(conn, "PRAGMA page_count"),
        freelist_count=_scalar(conn, "PRAGMA freelist_count"),
        auto_vacuum=auto_vacuum_mode(conn),
        journal_mode=str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
        schema_version=status.version,
        code_schema_version=code_schema_version(),
        pending_migrations=list(status.pending),
        newer_migrations=list(status.unknown),
        tables=tables,
        oldest_event=oldest,
        newest_event=newest,
        events_per_node=per_node,
        retention_days=retention_days,
    )
