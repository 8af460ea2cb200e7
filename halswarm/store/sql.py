"""Synchronous SQL operations. Called only from worker threads via :class:`~halswarm.store.Store`.

Each public function is one logical transaction on the connection it is given.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs
import orjson

from halswarm.convert import converter
from halswarm.jsontypes import JSONObject, is_json_object
from halswarm.models import SUPERVISOR_NODE_ID, Command, Event, Project, Resources, Session
from halswarm.proto.messages import WireEvent

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "AuditRecord",
    "EventQuery",
    "IngestBatch",
    "IngestSummary",
    "NodeRecord",
    "StoredState",
    "fail_unfinished_commands",
    "get_command",
    "get_command_by_key",
    "ingest",
    "insert_audit",
    "insert_command",
    "load_state",
    "mark_command_sent",
    "query_events",
    "update_command",
    "upsert_node",
    "upsert_sessions",
]


@attrs.frozen
class IngestBatch:
    """Events from one node to persist, with the states of the sessions they changed."""

    node_id: str
    events: Sequence[WireEvent]


@attrs.frozen
class IngestSummary:
    """What one :func:`ingest` transaction stored, for the in-memory views."""

    #: The newest state of each session, with the seq of the event that carried it.
    states: dict[str, tuple[int, Session]]
    #: The latest event time of each session.
    activity: dict[str, str]
    #: Events per type.
    types: collections.Counter[str]


@attrs.frozen
class NodeRecord:
    """A node's persisted identity and delivery position."""

    id: str
    instance_key: str = ""
    hostname: str = ""
    version: str = ""
    projects: list[Project] = attrs.field(factory=list)
    resources: Resources | None = None
    health: dict[str, str] = attrs.field(factory=dict)
    last_seq: int = 0
    first_seen: str | None = None
    connected_at: str | None = None
    last_heartbeat: str | None = None


@attrs.frozen
class StoredState:
    """Everything the supervisor rebuilds its memory from at start."""

    nodes: list[NodeRecord]
    sessions: list[tuple[int, Session]]
    supervisor_seq: int = 0


@attrs.frozen
class EventQuery:
    """Filters for listing events. ``after`` pages forward by event id."""

    session_id: str | None = None
    node_id: str | None = None
    project: str | None = None
    type: str | None = None
    since: str | None = None
    after: int | None = None
    limit: int = 100


@attrs.frozen
class AuditRecord:
    """One audit row."""

    ts: str
    actor: str
    source: str
    action: str
    target: str
    outcome: str
    correlation_id: str = ""
    detail: JSONObject = attrs.field(factory=dict)


_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (node_id, seq, ts, session_id, project, type, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_SESSION = """
INSERT INTO sessions (id, node_id, project, status, state_seq, data, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    node_id = excluded.node_id, project = excluded.project, status = excluded.status,
    state_seq = excluded.state_seq, data = excluded.data, updated_at = excluded.updated_at
WHERE excluded.state_seq >= sessions.state_seq
"""
_BUMP_NODE_SEQ = "UPDATE nodes SET last_seq = MAX(last_seq, ?) WHERE id = ?"
_TOUCH_SESSION = (
    "UPDATE sessions SET last_activity = ?1 WHERE id = ?2 AND (last_activity IS NULL OR last_activity < ?1)"
)


def _session_row(seq: int, session: Session, now: str) -> tuple[str, str, str, str, int, str, str]:
    data = orjson.dumps(converter.unstructure(session)).decode()
    return (session.id, session.node_id, session.project, session.status, seq, data, now)


def ingest(conn: sqlite3.Connection, batches: Iterable[IngestBatch], now: str) -> IngestSummary:
    """Persist event batches and the session states they carry, in one transaction.

    Duplicates (same node and seq) are ignored, so a resent batch is harmless. A session
    state is only written when it is at least as new as the stored one.

    Returns:
        What the caller's memory needs from the batches (one pass over the events,
        shared with the caller: this runs for every event ingested).
    """
    event_rows: list[tuple[str, int, str, str | None, str | None, str, str]] = []
    append = event_rows.append
    states: dict[str, tuple[int, Session]] = {}
    node_seqs: dict[str, int] = {}
    activity: dict[str, str] = {}
    dumps = orjson.dumps
    for batch in batches:
        node_id = batch.node_id
        # Only agents report what a session did; the supervisor's own events about a
        # session (policy actions, alerts) are not its activity, or every policy action
        # would start a new idle/quiet episode and act again.
        from_agent = node_id != SUPERVISOR_NODE_ID
        for ev in batch.events:
            data = ev.data_json if ev.data_json is not None else dumps(ev.data)
            sid = ev.session_id
            append((node_id, ev.seq, ev.ts, sid, ev.project, ev.type, data.decode()))
            state = ev.state
            if state is not None:
                states[state.id] = (ev.seq, state)
            if sid is not None and from_agent and ev.ts > activity.get(sid, ""):
                activity[sid] = ev.ts
        if batch.events:
            node_seqs[node_id] = max(node_seqs.get(node_id, 0), batch.events[-1].seq)
    with conn:
        conn.executemany(_INSERT_EVENT, event_rows)
        if states:
            conn.executemany(_UPSERT_SESSION, [_session_row(seq, s, now) for seq, s in states.values()])
        conn.executemany(_BUMP_NODE_SEQ, [(seq, node_id) for node_id, seq in node_seqs.items()])
        conn.executemany(_TOUCH_SESSION, [(ts, sid) for sid, ts in activity.items()])
    return IngestSummary(states, activity, collections.Counter(row[5] for row in event_rows))


def upsert_sessions(conn: sqlite3.Connection, snapshots: Iterable[tuple[int, Session]], now: str) -> None:
    """Write session states (e.g. a hello snapshot), keeping any newer stored state."""
    with conn:
        conn.executemany(_UPSERT_SESSION, [_session_row(seq, s, now) for seq, s in snapshots])


def upsert_node(conn: sqlite3.Connection, node: NodeRecord) -> None:
    """Insert or update a node's identity, keeping its delivery position (``last_seq``)."""
    with conn:
        conn.execute(
            """
            INSERT INTO nodes (id, instance_key, hostname, version, projects, resources, health,
                               first_seen, connected_at, last_heartbeat)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET
                instance_key = excluded.instance_key, hostname = excluded.hostname,
                version = excluded.version, projects = excluded.projects,
                resources = excluded.resources, health = excluded.health,
                connected_at = excluded.connected_at, last_heartbeat = excluded.last_heartbeat
            """,
            (
                node.id,
                node.instance_key,
                node.hostname,
                node.version,
                orjson.dumps(converter.unstructure(node.projects)).decode(),
                orjson.dumps(converter.unstructure(node.resources)).decode() if node.resources else None,
                orjson.dumps(node.health).decode(),
                node.first_seen,
                node.connected_at,
                node.last_heartbeat,
            ),
        )


def _loads_object(text: str | bytes | None) -> JSONObject:
    value = orjson.loads(text) if text else {}
    return value if is_json_object(value) else {}


def load_state(conn: sqlite3.Connection) -> StoredState:
    """Read nodes and sessions for the in-memory registry and tracker."""
    nodes = []
    for row in conn.execute(
        "SELECT id, instance_key, hostname, version, projects, resources, health, last_seq, "
        "first_seen, connected_at, last_heartbeat FROM nodes"
    ):
        resources = orjson.loads(row[5]) if row[5] else None
        health = _loads_object(row[6])
        nodes.append(
            NodeRecord(
                id=row[0],
                instance_key=row[1],
                hostname=row[2],
                version=row[3],
                projects=converter.structure(orjson.loads(row[4]), list[Project]),
                resources=converter.structure(resources, Resources) if resources else None,
                health={k: str(v) for k, v in health.items()},
                last_seq=row[7],
                first_seen=row[8],
                connected_at=row[9],
                last_heartbeat=row[10],
            )
        )
    sessions = []
    for seq, data, last_activity in conn.execute("SELECT state_seq, data, last_activity FROM sessions"):
        session = converter.structure(orjson.loads(data), Session)
        if last_activity and last_activity > (session.last_activity or ""):
            session = attrs.evolve(session, last_activity=last_activity)
        sessions.append((seq, session))
    row = conn.execute("SELECT MAX(seq) FROM events WHERE node_id = ?", (SUPERVISOR_NODE_ID,)).fetchone()
    return StoredState(nodes=nodes, sessions=sessions, supervisor_seq=row[0] or 0)


def query_events(conn: sqlite3.Connection, query: EventQuery) -> list[Event]:
    """Events matching *query*, oldest first.

    Without ``after`` these are the newest ``limit`` matches (a tail); with ``after``
    they are the first ``limit`` matches with a larger id (follow mode).
    """
    clauses: list[str] = []
    params: list[str | int] = []
    for column, value in (
        ("session_id", query.session_id),
        ("node_id", query.node_id),
        ("project", query.project),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.type is not None:
        if query.type.endswith("*"):
            clauses.append("type >= ? AND type < ?")
            prefix = query.type[:-1]
            params += [prefix, prefix + "\U0010ffff"]
        else:
            clauses.append("type = ?")
            params.append(query.type)
    if query.since is not None:
        clauses.append("ts >= ?")
        params.append(query.since)
    if query.after is not None:
        clauses.append("id > ?")
        params.append(query.after)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "ASC" if query.after is not None else "DESC"
    sql = (
        f"SELECT id, node_id, seq, ts, type, session_id, project, data FROM events {where} ORDER BY id {order} LIMIT ?"
    )
    rows = conn.execute(sql, [*params, query.limit]).fetchall()
    if order == "DESC":
        rows.reverse()
    return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _loads_object(r[7])) for r in rows]


_COMMAND_COLUMNS = (
    "id, type, target, args, status, result, error, actor, source, correlation_id, "
    "idempotency_key, node_id, created_at, finished_at"
)


def _command_from_row(row: sqlite3.Row | tuple[object, ...]) -> Command:
    raw = dict(zip(_COMMAND_COLUMNS.split(", "), row, strict=True))
    raw["args"] = _loads_object(raw["args"])
    raw["result"] = _loads_object(raw["result"]) if raw["result"] is not None else None
    return converter.structure(raw, Command)


def insert_command(conn: sqlite3.Connection, command: Command, audit: AuditRecord) -> Command | None:
    """Persist a new command and its audit row.

    Returns:
        ``None`` when stored, or the existing command holding the same idempotency key.
    """
    with conn:
        existing = conn.execute(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE idempotency_key = ?", (command.idempotency_key,)
        ).fetchone()
        if existing is not None:
            return _command_from_row(existing)
        conn.execute(
            f"INSERT INTO commands ({_COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _command_values(command),
        )
        _insert_audit(conn, audit)
    return None


def _command_values(c: Command) -> tuple[object, ...]:
    return (
        c.id,
        c.type,
        c.target,
        orjson.dumps(c.args).decode(),
        c.status,
        orjson.dumps(c.result).decode() if c.result is not None else None,
        c.error,
        c.actor,
        c.source,
        c.correlation_id,
        c.idempotency_key,
        c.node_id,
        c.created_at,
        c.finished_at,
    )


def update_command(conn: sqlite3.Connection, command: Command, audit: AuditRecord | None = None) -> None:
    """Store a command's new status, result and error (and an audit row for outcomes)."""
    with conn:
        conn.execute(
            "UPDATE commands SET status = ?, result = ?, error = ?, node_id = ?, finished_at = ? WHERE id = ?",
            (
                command.status,
                orjson.dumps(command.result).decode() if command.result is not None else None,
                command.error,
                command.node_id,
                command.finished_at,
                command.id,
            ),
        )
        if audit is not None:
            _insert_audit(conn, audit)


def mark_command_sent(conn: sqlite3.Connection, command_id: str) -> None:
    """Move a command from ``pending`` to ``sent``; a no-op once it has an outcome.

    The guard lets the dispatcher record this off the command's critical path: it may
    land after the outcome and must not overwrite it.
    """
    with conn:
        conn.execute("UPDATE commands SET status = 'sent' WHERE id = ? AND status = 'pending'", (command_id,))


def fail_unfinished_commands(conn: sqlite3.Connection, now: str, reason: str) -> int:
    """Mark commands left ``pending``/``sent`` by a previous run as failed; returns how many."""
    with conn:
        cursor = conn.execute(
            "UPDATE commands SET status = 'failed', error = ?, finished_at = ? WHERE status IN ('pending', 'sent')",
            (reason, now),
        )
    return cursor.rowcount


def get_command(conn: sqlite3.Connection, command_id: str) -> Command | None:
    """One command by id."""
    row = conn.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
    return _command_from_row(row) if row is not None else None


def get_command_by_key(conn: sqlite3.Connection, key: str) -> Command | None:
    """One command by idempotency key."""
    row = conn.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE idempotency_key = ?", (key,)).fetchone()
    return _command_from_row(row) if row is not None else None


def _insert_audit(conn: sqlite3.Connection, a: AuditRecord) -> None:
    conn.execute(
        "INSERT INTO audit_log (ts, actor, source, action, target, outcome, correlation_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (a.ts, a.actor, a.source, a.action, a.target, a.outcome, a.correlation_id, orjson.dumps(a.detail).decode()),
    )


def insert_audit(conn: sqlite3.Connection, audit: AuditRecord) -> None:
    """Append one audit row."""
    with conn:
        _insert_audit(conn, audit)
