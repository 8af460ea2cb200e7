"""Synchronous SQL for environment reports (issue 9). Called only from worker threads via
:class:`~halswarm.store.Store`; each public function is one transaction.

Table ``env_reports`` (migration ``0004_env_reports``): the latest report per (node,
project) as JSON (an :class:`~halswarm.envcheck.report.EnvReport`). Latest means the last
one saved: the supervisor saves them in arrival (seq) order, and ``checked_at`` (the
agent's clock) is stored for reading only, never compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

__all__ = ["load_env_reports", "save_env_reports"]

_UPSERT = """
INSERT INTO env_reports (node_id, project, state, checked_at, report) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(node_id, project) DO UPDATE SET
    state = excluded.state, checked_at = excluded.checked_at, report = excluded.report
"""


def save_env_reports(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Upsert ``(node_id, project, state, checked_at, report_json)`` rows: each replaces
    the stored one for its (node, project)."""
    with conn:
        conn.executemany(_UPSERT, rows)


def load_env_reports(conn: sqlite3.Connection) -> list[str]:
    """Every stored report's JSON."""
    return [str(row[0]) for row in conn.execute("SELECT report FROM env_reports ORDER BY node_id, project")]
