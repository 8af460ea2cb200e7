"""Synchronous SQL for policies and the audit log (issue 6). Called only from worker
threads via :class:`~halswarm.store.Store`; each public function is one transaction.

Tables (migration ``0003_policy``):

- ``policy_state``: one JSON row per policy (its :class:`~halswarm.policy.PolicyStates`
  part), plus the engine's own rows (names starting with ``engine.``).
- ``policy_overrides``: runtime enable/disable per policy, with who set it and when.
- ``audit_log`` (from ``0001_initial``) gains an index on (actor, id) for the
  ``actor`` filter of ``GET /api/v1/audit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import orjson

from halswarm.audit import AuditEntry
from halswarm.jsontypes import is_json_object
from halswarm.policy.views import PolicyOverride
from halswarm.store.sql import AuditRecord, _insert_audit

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping, Sequence

__all__ = [
    "AuditQuery",
    "UnfinishedCommand",
    "load_policy_overrides",
    "load_policy_rows",
    "query_audit",
    "save_policy_rows",
    "set_policy_override",
    "unfinished_commands",
]


@attrs.frozen
class AuditQuery:
    """Filters of ``GET /api/v1/audit``; results are newest first.

    ``actor`` and ``action`` match exactly, or as a prefix with a trailing ``*``
    (``policy:*``). ``since`` is inclusive, ``until`` exclusive (RFC 3339, canonical
    form). ``before``/``after`` keep rows with a smaller/larger id: page back with
    ``before=<the last id of the previous page>``.
    """

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: str | None = None
    until: str | None = None
    before: int | None = None
    after: int | None = None
    limit: int = 100


@attrs.frozen
class UnfinishedCommand:
    """A command still ``pending`` or ``sent`` in the store."""

    id: str
    type: str
    target: str


_PUT_STATE = """
    INSERT INTO policy_state (name, state, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
"""


def load_policy_rows(conn: sqlite3.Connection) -> dict[str, str]:
    """Every ``policy_state`` row: name -> JSON text."""
    return {str(name): str(state) for name, state in conn.execute("SELECT name, state FROM policy_state")}


def save_policy_rows(
    conn: sqlite3.Connection, rows: Mapping[str, str], now: str, audits: Sequence[AuditRecord] = ()
) -> None:
    """Write policy state rows and audit rows in one transaction."""
    with conn:
        conn.executemany(_PUT_STATE, [(name, state, now) for name, state in rows.items()])
        for audit in audits:
            _insert_audit(conn, audit)


def load_policy_overrides(conn: sqlite3.Connection) -> dict[str, PolicyOverride]:
    """Runtime overrides: policy name -> override."""
    rows = conn.execute("SELECT name, enabled, actor, updated_at FROM policy_overrides").fetchall()
    return {str(name): PolicyOverride(bool(enabled), str(actor), str(at)) for name, enabled, actor, at in rows}


def set_policy_override(
    conn: sqlite3.Connection, name: str, override: PolicyOverride | None, audit: AuditRecord
) -> None:
    """Set (or with None, clear) a policy's override and append its audit row, together."""
    with conn:
        if override is None:
            conn.execute("DELETE FROM policy_overrides WHERE name = ?", (name,))
        else:
            conn.execute(
                """
                INSERT INTO policy_overrides (name, enabled, actor, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    enabled = excluded.enabled, actor = excluded.actor, updated_at = excluded.updated_at
                """,
                (name, int(override.enabled), override.actor, override.updated_at),
            )
        _insert_audit(conn, audit)


def record_config_reload(conn: sqlite3.Connection, cleared_overrides: Sequence[str], audit: AuditRecord) -> None:
    """Clear the policy overrides a config reload made redundant and append its audit row, together."""
    with conn:
        conn.executemany("DELETE FROM policy_overrides WHERE name = ?", [(name,) for name in cleared_overrides])
        _insert_audit(conn, audit)


def unfinished_commands(conn: sqlite3.Connection) -> list[UnfinishedCommand]:
    """Commands still ``pending`` or ``sent`` (a partial index keeps this cheap)."""
    rows = conn.execute(
        "SELECT id, type, target FROM commands WHERE status IN ('pending', 'sent') ORDER BY created_at"
    ).fetchall()
    return [UnfinishedCommand(str(i), str(t), str(target)) for i, t, target in rows]


def _match(column: str, value: str, clauses: list[str], params: list[str | int]) -> None:
    if value.endswith("*"):
        prefix = value[:-1]
        clauses.append(f"{column} >= ? AND {column} < ?")
        params += [prefix, prefix + "\U0010ffff"]
    else:
        clauses.append(f"{column} = ?")
        params.append(value)


def query_audit(conn: sqlite3.Connection, query: AuditQuery) -> list[AuditEntry]:
    """Audit rows matching *query*, newest first, at most ``query.limit``."""
    clauses: list[str] = []
    params: list[str | int] = []
    if query.actor is not None:
        _match("actor", query.actor, clauses, params)
    if query.action is not None:
        _match("action", query.action, clauses, params)
    for clause, value in (
        ("target = ?", query.target),
        ("ts >= ?", query.since),
        ("ts < ?", query.until),
        ("id < ?", query.before),
        ("id > ?", query.after),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT id, ts, actor, source, action, target, outcome, correlation_id, detail "
        f"FROM audit_log {where} ORDER BY id DESC LIMIT ?",
        [*params, query.limit],
    ).fetchall()
    entries = []
    for row_id, ts, actor, source, action, target, outcome, correlation_id, detail in rows:
        parsed = orjson.loads(detail) if detail else {}
        entries.append(
            AuditEntry(
                id=int(row_id),
                ts=str(ts),
                actor=str(actor),
                source=str(source),
                action=str(action),
                target=str(target),
                outcome=str(outcome),
                correlation_id=str(correlation_id),
                detail=parsed if is_json_object(parsed) else {},
            )
        )
    return entries
