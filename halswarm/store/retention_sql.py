"""Synchronous SQL of the retention job (issue 10). Called only from worker threads via
:class:`~halswarm.store.Store`; each public function is one short transaction.

What ages out (docs/DATA.md, "Retention"):

- ``events`` older than the cutoff, by their ``ts`` (the only time an event row has),
  except the newest event of each node: SQLite hands out ``max(id) + 1`` as the next id,
  so deleting the newest rows would let ids be reused under API clients paging with
  ``after=<id>``; and the supervisor resumes its own event seqs from the stored maximum.
- ``sessions`` that are ``completed`` and untouched since the cutoff (state and activity),
  with their cost-estimate bookkeeping (the caller's cutoff keeps them until they are
  settled for cost estimates, so they can never be booked again).
- ``commands`` with an outcome, created before the cutoff (their audit rows stay).

Everything else stays: nodes (identity and delivery position), the audit log, cost
buckets, policy state and overrides, environment reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from halswarm.models import SUPERVISOR_NODE_ID

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

__all__ = [
    "auto_vacuum_mode",
    "delete_commands_before",
    "delete_events_before",
    "delete_sessions_before",
    "incremental_vacuum",
    "newest_event_ids",
]

# Through the index on ts, oldest first, so each batch finds its rows at once.
_DELETE_EVENTS = """
DELETE FROM events WHERE id IN (
    SELECT id FROM events
    WHERE ts < ? AND id NOT IN (SELECT value FROM json_each(?))
    ORDER BY ts LIMIT ?
)
"""
_DELETE_SESSIONS = """
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions
    WHERE status = 'completed' AND updated_at < ?1 AND COALESCE(last_activity, '') < ?1
    LIMIT ?2
)
RETURNING id, state_seq
"""
_DELETE_COMMANDS = """
DELETE FROM commands WHERE id IN (
    SELECT id FROM commands
    WHERE created_at < ? AND status NOT IN ('pending', 'sent')
    ORDER BY created_at LIMIT ?
)
"""
_AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}


def newest_event_ids(conn: sqlite3.Connection) -> list[int]:
    """The id of each node's newest event (by seq), which retention never deletes.

    One indexed look-up per node (``UNIQUE(node_id, seq)``) instead of a scan of the table.
    """
    node_ids = [row[0] for row in conn.execute("SELECT id FROM nodes")]
    node_ids.append(SUPERVISOR_NODE_ID)
    ids: list[int] = []
    for node_id in node_ids:
        row = conn.execute("SELECT id FROM events WHERE node_id = ? ORDER BY seq DESC LIMIT 1", (node_id,)).fetchone()
        if row is not None:
            ids.append(int(row[0]))
    return ids


def delete_events_before(conn: sqlite3.Connection, cutoff: str, keep: Sequence[int], limit: int) -> int:
    """Delete up to *limit* events with ``ts < cutoff``, oldest first, never those in *keep*.

    Returns:
        How many rows went; fewer than *limit* means none is left to delete.
    """
    with conn:
        cursor = conn.execute(_DELETE_EVENTS, (cutoff, orjson.dumps(list(keep)).decode(), limit))
    return max(0, cursor.rowcount)


def delete_sessions_before(conn: sqlite3.Connection, cutoff: str, limit: int) -> dict[str, int]:
    """Delete up to *limit* completed sessions untouched since *cutoff*, with their cost bookkeeping.

    Returns:
        The deleted sessions' ids with the seq of the state that was deleted (so the
        caller forgets a session in memory only if no newer state arrived meanwhile).
    """
    with conn:
        deleted = {str(sid): int(seq) for sid, seq in conn.execute(_DELETE_SESSIONS, (cutoff, limit)).fetchall()}
        conn.executemany("DELETE FROM cost_estimate_sessions WHERE session_id = ?", [(sid,) for sid in deleted])
    return deleted


def delete_commands_before(conn: sqlite3.Connection, cutoff: str, limit: int) -> int:
    """Delete up to *limit* commands with an outcome created before *cutoff*; returns how many."""
    with conn:
        cursor = conn.execute(_DELETE_COMMANDS, (cutoff, limit))
    return max(0, cursor.rowcount)


def incremental_vacuum(conn: sqlite3.Connection, pages: int) -> int:
    """Give up to *pages* free pages back to the file system; returns how many went.

    A no-op unless the database has ``auto_vacuum = INCREMENTAL`` (see docs/DATA.md).
    """
    before = int(conn.execute("PRAGMA page_count").fetchone()[0])
    # Not execute(): the pragma frees one page per step, and sqlite3's execute() steps a
    # statement without result columns only once. executescript() runs it to the end
    # (it would commit an open transaction first; the writer has none between calls).
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
    after = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return max(0, before - after)


def auto_vacuum_mode(conn: sqlite3.Connection) -> str:
    """``none``, ``full`` or ``incremental``."""
    value = int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    return _AUTO_VACUUM_MODES.get(value, str(value))
