"""Read a database file directly, beside the code under test (its own connection)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["file_rows", "file_rows_in_thread"]


def file_rows(path: Path, query: str, *, read_only: bool = False) -> list[tuple[object, ...]]:
    """Every row *query* returns from the database at *path*, on a connection of its own
    (*read_only*: opened ``mode=ro``, so the file cannot be created or changed)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True) if read_only else sqlite3.connect(path)
    try:
        rows: list[tuple[object, ...]] = conn.execute(query).fetchall()
        return rows
    finally:
        conn.close()


async def file_rows_in_thread(path: Path, query: str) -> list[tuple[object, ...]]:
    """:func:`file_rows` in a worker thread (from trio code)."""
    return await trio.to_thread.run_sync(file_rows, path, query)
