"""The supervisor store on a real SQLite file: idempotent ingest, newest-state-wins,
activity times, state reload, event queries (filters, type prefix, tail and paging),
commands with idempotency keys and their audit rows, and idempotent migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from halswarm.models import SUPERVISOR_NODE_ID, Command, Project, Resources, Session
from halswarm.proto.messages import WireEvent
from halswarm.store import AuditRecord, EventQuery, IngestBatch, NodeRecord, Store, open_store
from halswarm.store.schema import MIGRATIONS, SCHEMA_SET
from tests.db_rows import file_rows_in_thread as sql_rows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

NOW = "2026-01-01T12:00:00.000000Z"


def ts(second: int) -> str:
    """A canonical timestamp *second* seconds after 10:00:00."""
    minutes, seconds = divmod(second, 60)
    return f"2026-01-01T10:{minutes:02d}:{seconds:02d}.000000Z"


def ev(
    seq: int,
    *,
    type: str = "x.test",
    second: int | None = None,
    session_id: str | None = None,
    project: str | None = None,
    state: Session | None = None,
) -> WireEvent:
    return WireEvent(
        seq=seq,
        ts=ts(seq if second is None else second),
        type=type,
        session_id=session_id,
        project=project,
        data={"n": seq},
        state=state,
    )


def session(status: str = "busy", *, title: str = "", last_activity: str | None = None) -> Session:
    return Session(
        id="ses-1",
        node_id="node-a",
        project="proj-a",
        status=status,  # type: ignore[arg-type]
        title=title,
        last_activity=last_activity,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as s:
            yield s


async def test_ingesting_the_same_batch_twice_stores_each_event_once(store: Store) -> None:
    await store.upsert_node(NodeRecord(id="node-a"))
    batch = IngestBatch("node-a", [ev(1), ev(2), ev(3)])
    with trio.fail_after(10):
        await store.ingest([batch], NOW)
        await store.ingest([batch], NOW)
        # Overlapping resend: 3 again plus a new 4.
        await store.ingest([IngestBatch("node-a", [ev(3), ev(4)])], NOW)
        events = await store.query_events(EventQuery(node_id="node-a"))
        state = await store.load_state()
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.data for e in events] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert [n.last_seq for n in state.nodes] == [4]


async def test_an_older_state_never_overwrites_a_newer_one(store: Store) -> None:
    with trio.fail_after(10):
        await store.ingest([IngestBatch("node-a", [ev(5, session_id="ses-1", state=session("busy", title="v5"))])], NOW)
        # A resent backlog arrives late: seq 3 carried an older state.
        await store.ingest([IngestBatch("node-a", [ev(3, session_id="ses-1", state=session("idle", title="v3"))])], NOW)
        after_old = await store.load_state()
        await store.upsert_sessions([(4, session("error", title="v4"))], NOW)
        after_snapshot = await store.load_state()
        await store.ingest([IngestBatch("node-a", [ev(6, session_id="ses-1", state=session("idle", title="v6"))])], NOW)
        after_new = await store.load_state()
    assert [(seq, s.status, s.title) for seq, s in after_old.sessions] == [(5, "busy", "v5")]
    assert [(seq, s.status, s.title) for seq, s in after_snapshot.sessions] == [(5, "busy", "v5")]
    assert [(seq, s.status, s.title) for seq, s in after_new.sessions] == [(6, "idle", "v6")]


async def test_session_last_activity_follows_the_newest_event_time(store: Store) -> None:
    state = session("busy", last_activity=ts(1))
    with trio.fail_after(10):
        await store.ingest([IngestBatch("node-a", [ev(1, second=1, session_id="ses-1", state=state)])], NOW)
        # Events without a state still count as activity; the newest ts wins within a batch.
        await store.ingest(
            [IngestBatch("node-a", [ev(2, second=40, session_id="ses-1"), ev(3, second=30, session_id="ses-1")])], NOW
        )
        first = await store.load_state()
        # An event with an older ts (a late resend) does not move activity back.
        await store.ingest([IngestBatch("node-a", [ev(4, second=10, session_id="ses-1")])], NOW)
        second = await store.load_state()
        # The supervisor's own events about a session (a policy action) are not its activity.
        summary = await store.ingest(
            [IngestBatch(SUPERVISOR_NODE_ID, [ev(1, second=50, session_id="ses-1", type="policy.action")])], NOW
        )
        third = await store.load_state()
    assert [s.last_activity for _, s in first.sessions] == [ts(40)]
    assert [s.last_activity for _, s in second.sessions] == [ts(40)]
    assert summary.activity == {}
    assert [s.last_activity for _, s in third.sessions] == [ts(40)]
    assert [s.status for _, s in second.sessions] == ["busy"]


async def test_load_state_round_trips_nodes_sessions_and_the_supervisor_seq(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    node = NodeRecord(
        id="node-a",
        instance_key="key-1",
        hostname="host-a",
        version="1.2.3",
        projects=[Project("proj-a", "/srv/a"), Project("proj-b", "/srv/b")],
        resources=Resources(cpu_percent=12.5, mem_used_mb=512.0, disk_used_gb=3.25),
        health={"backend": "ok", "disk": "almost full"},
        first_seen=ts(0),
        connected_at=ts(1),
        last_heartbeat=ts(2),
    )
    kept = session("waiting", title="kept")
    with trio.fail_after(10):
        async with open_store(path) as store:
            await store.upsert_node(node)
            await store.ingest(
                [
                    IngestBatch("node-a", [ev(1), ev(2, session_id="ses-1", state=kept), ev(7)]),
                    IngestBatch(SUPERVISOR_NODE_ID, [ev(1, type="node.online"), ev(2, type="node.offline")]),
                ],
                NOW,
            )
            # A reconnect updates the identity but must keep the delivery position.
            await store.upsert_node(NodeRecord(id="node-a", instance_key="key-2", hostname="host-b"))
        async with open_store(path) as reopened:
            state = await reopened.load_state()
    nodes = {n.id: n for n in state.nodes}
    assert nodes["node-a"].last_seq == 7
    assert nodes["node-a"].instance_key == "key-2"
    assert nodes["node-a"].hostname == "host-b"
    assert nodes["node-a"].first_seen == ts(0)  # first_seen is never overwritten
    assert nodes["node-a"].projects == []
    assert nodes["node-a"].resources is None
    assert state.sessions == [(2, attrs.evolve(kept, last_activity=ts(2)))]
    assert state.supervisor_seq == 2


async def test_load_state_returns_a_node_exactly_as_upserted(store: Store) -> None:
    node = NodeRecord(
        id="node-a",
        instance_key="key-1",
        hostname="host-a",
        version="1.2.3",
        projects=[Project("proj-a", "/srv/a")],
        resources=Resources(cpu_percent=12.5, mem_used_mb=512.0, disk_used_gb=3.25),
        health={"backend": "ok", "disk": "almost full"},
        first_seen=ts(0),
        connected_at=ts(1),
        last_heartbeat=ts(2),
    )
    with trio.fail_after(10):
        await store.upsert_node(node)
        state = await store.load_state()
    assert state.nodes == [node]
    assert state.sessions == []
    assert state.supervisor_seq == 0


@pytest.fixture
async def events_store(store: Store) -> Store:
    """Two nodes' events of several types, ids 1..8 in this order."""
    with trio.fail_after(10):
        await store.ingest(
            [
                IngestBatch(
                    "node-a",
                    [
                        ev(1, type="session.created", session_id="ses-1", project="proj-a"),
                        ev(2, type="session.status", session_id="ses-1", project="proj-a"),
                        ev(3, type="message.updated", session_id="ses-1", project="proj-a"),
                        ev(4, type="session.idle", session_id="ses-2", project="proj-a"),
                    ],
                ),
                IngestBatch(
                    "node-b",
                    [
                        ev(1, second=5, type="sessions", session_id="ses-3", project="proj-b"),
                        ev(2, second=6, type="session.status", session_id="ses-3", project="proj-b"),
                        ev(3, second=7, type="file.edited", session_id="ses-3", project="proj-b"),
                        ev(4, second=8, type="session", session_id="ses-3", project="proj-b"),
                    ],
                ),
            ],
            NOW,
        )
    return store


async def _ids(store: Store, query: EventQuery) -> list[int]:
    with trio.fail_after(10):
        return [e.id for e in await store.query_events(query)]


async def test_query_events_filters(events_store: Store) -> None:
    assert await _ids(events_store, EventQuery()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert await _ids(events_store, EventQuery(session_id="ses-1")) == [1, 2, 3]
    assert await _ids(events_store, EventQuery(node_id="node-b")) == [5, 6, 7, 8]
    assert await _ids(events_store, EventQuery(project="proj-a")) == [1, 2, 3, 4]
    assert await _ids(events_store, EventQuery(type="session.status")) == [2, 6]
    assert await _ids(events_store, EventQuery(type="session.status", node_id="node-a")) == [2]
    assert await _ids(events_store, EventQuery(type="session.nope")) == []
    # since is inclusive, on the event's own timestamp.
    assert await _ids(events_store, EventQuery(since=ts(4))) == [4, 5, 6, 7, 8]
    assert await _ids(events_store, EventQuery(since=ts(7), node_id="node-b")) == [7, 8]


async def test_query_events_type_prefix(events_store: Store) -> None:
    # "session.*" is every type starting with "session.": not "session", not "sessions".
    assert await _ids(events_store, EventQuery(type="session.*")) == [1, 2, 4, 6]
    assert await _ids(events_store, EventQuery(type="sess*")) == [1, 2, 4, 5, 6, 8]
    assert await _ids(events_store, EventQuery(type="*")) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert await _ids(events_store, EventQuery(type="file.*", project="proj-a")) == []


async def test_query_events_tail_and_after_paging(events_store: Store) -> None:
    # Without after: the newest N matches, oldest first.
    assert await _ids(events_store, EventQuery(limit=3)) == [6, 7, 8]
    assert await _ids(events_store, EventQuery(limit=2, type="session.*")) == [4, 6]
    # With after: forward pages from that id.
    pages: list[list[int]] = []
    after = 0
    while page := await _ids(events_store, EventQuery(after=after, limit=3)):
        pages.append(page)
        after = page[-1]
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8]]
    assert await _ids(events_store, EventQuery(after=2, limit=2, session_id="ses-3")) == [5, 6]
    assert await _ids(events_store, EventQuery(after=8)) == []


def command(command_id: str, key: str) -> Command:
    return Command(
        id=command_id,
        type="abort_session",
        target="ses-1",
        args={"why": command_id},
        actor="alice",
        source="api",
        correlation_id=f"corr-{command_id}",
        idempotency_key=key,
        created_at=NOW,
    )


def audit(action: str, outcome: str, target: str = "ses-1") -> AuditRecord:
    return AuditRecord(ts=NOW, actor="alice", source="api", action=action, target=target, outcome=outcome)


async def test_a_reused_idempotency_key_returns_the_existing_command(tmp_path: Path, store: Store) -> None:
    first = command("cmd-1", "key-1")
    with trio.fail_after(10):
        assert await store.insert_command(first, audit("abort_session", "accepted")) is None
        existing = await store.insert_command(command("cmd-2", "key-1"), audit("abort_session", "accepted"))
        other = await store.insert_command(command("cmd-3", "key-2"), audit("abort_session", "accepted"))
        assert await store.get_command("cmd-2") is None
        by_key = await store.get_command_by_key("key-1")
        audit_rows = await sql_rows(tmp_path / "s.db", "SELECT action, outcome, target FROM audit_log ORDER BY id")
    assert existing == first
    assert other is None
    assert by_key == first
    # One audit row per stored command; the refused duplicate left none.
    assert audit_rows == [("abort_session", "accepted", "ses-1"), ("abort_session", "accepted", "ses-1")]


async def test_command_outcome_and_audit_rows(tmp_path: Path, store: Store) -> None:
    cmd = command("cmd-1", "key-1")
    with trio.fail_after(10):
        await store.insert_command(cmd, audit("abort_session", "accepted"))
        done = Command(
            id=cmd.id,
            type=cmd.type,
            target=cmd.target,
            args=cmd.args,
            status="succeeded",
            result={"aborted": True},
            actor=cmd.actor,
            source=cmd.source,
            correlation_id=cmd.correlation_id,
            idempotency_key=cmd.idempotency_key,
            node_id="node-a",
            created_at=cmd.created_at,
            finished_at=ts(9),
        )
        await store.update_command(done, audit("abort_session", "succeeded"))
        # The dispatcher records "sent" in the background: landing late, it must not undo the outcome.
        await store.mark_command_sent(cmd.id)
        await store.insert_command(command("cmd-2", "key-2"), audit("abort_session", "accepted", "ses-2"))
        await store.mark_command_sent("cmd-2")
        sent = await store.get_command("cmd-2")
        failed = await store.fail_unfinished_commands(NOW, "supervisor restarted")
        await store.insert_audit(audit("login", "ok", "-"))
        stored = await store.get_command("cmd-1")
        orphan = await store.get_command("cmd-2")
        audit_rows = await sql_rows(tmp_path / "s.db", "SELECT action, outcome, target FROM audit_log ORDER BY id")
    assert stored == done
    assert sent is not None
    assert sent.status == "sent"
    assert failed == 1
    assert orphan is not None
    assert (orphan.status, orphan.error, orphan.finished_at) == ("failed", "supervisor restarted", NOW)
    assert audit_rows == [
        ("abort_session", "accepted", "ses-1"),
        ("abort_session", "succeeded", "ses-1"),
        ("abort_session", "accepted", "ses-2"),
        ("login", "ok", "-"),
    ]


async def test_opening_a_database_twice_applies_migrations_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with trio.fail_after(10):
        async with open_store(path) as first:
            await first.ingest([IngestBatch("node-a", [ev(1)])], NOW)
            # A second open of the same live file (e.g. `halctl` next to the daemon).
            async with open_store(path):
                pass
        async with open_store(path) as third:
            kept = await third.query_events(EventQuery())
        rows = await sql_rows(path, "SELECT migration_set, name FROM schema_migrations ORDER BY rowid")
        journal = await sql_rows(path, "PRAGMA journal_mode")
    expected = [(SCHEMA_SET, m.name) for m in MIGRATIONS._migrations]
    assert expected  # the schema has migrations at all
    assert rows == expected
    assert [e.seq for e in kept] == [1]
    assert journal == [("wal",)]
