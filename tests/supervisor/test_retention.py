"""The retention job on trio's virtual time: its schedule, batches, the cutoff (nothing
younger goes), what ages out of each table, and passes that fail without stopping it.

These run on the autojump clock against an inline store: the real retention SQL on a real
SQLite connection, called without a thread hop (a hop would let the clock jump while
SQLite works). The job on the threaded store, with the file shrinking, is in
tests/store/test_retention_store.py; inside a running supervisor in
test_retention_supervisor.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from halswarm.models import Command, Session
from halswarm.obs.metrics import Metrics
from halswarm.proto.messages import WireEvent
from halswarm.store import AuditRecord, IngestBatch, NodeRecord, StoreError, retention_sql, sql
from halswarm.supervisor.retention import RetentionJob, RetentionTuning
from halswarm.supervisor.tracker import SessionTracker
from halswarm.timeutil import format_ts
from tests.inline_sql import InlineSQL, migrated_memory_db

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
CUTOFF = format_ts(NOW - 30 * DAY)  # retention_days = 30
TUNING = RetentionTuning(first_pass_after=60.0, interval=3600.0, batch_rows=10, batch_pause=0.5, vacuum_pages=64)


def stamp(age: dt.timedelta) -> str:
    return format_ts(NOW - age)


def wire(seq: int, ts: str, *, session: Session | None = None) -> WireEvent:
    return WireEvent(
        seq=seq,
        ts=ts,
        type="x.test",
        session_id=session.id if session else None,
        project=session.project if session else None,
        data={"n": seq},
        state=session,
    )


class InlineStore(InlineSQL):
    """The real retention SQL on one connection, run inline, recording each call."""

    #: What ``auto_vacuum_mode`` answers.
    mode: str = "incremental"

    async def newest_event_ids(self) -> list[int]:
        await self._enter("newest_event_ids")
        return retention_sql.newest_event_ids(self.conn)

    async def delete_events_before(self, cutoff: str, keep: Sequence[int], limit: int) -> int:
        await self._enter("delete_events_before")
        return retention_sql.delete_events_before(self.conn, cutoff, keep, limit)

    async def delete_sessions_before(self, cutoff: str, limit: int) -> dict[str, int]:
        await self._enter("delete_sessions_before")
        return retention_sql.delete_sessions_before(self.conn, cutoff, limit)

    async def delete_commands_before(self, cutoff: str, limit: int) -> int:
        await self._enter("delete_commands_before")
        return retention_sql.delete_commands_before(self.conn, cutoff, limit)

    async def incremental_vacuum(self, pages: int) -> int:
        await self._enter("incremental_vacuum")
        return retention_sql.incremental_vacuum(self.conn, pages)

    async def auto_vacuum_mode(self) -> str:
        await self._enter("auto_vacuum_mode")
        return self.mode

    def rows(self, query: str) -> list[tuple[object, ...]]:
        result: list[tuple[object, ...]] = self.conn.execute(query).fetchall()
        return result


@pytest.fixture
def store() -> Iterator[InlineStore]:
    with migrated_memory_db() as conn:
        yield InlineStore(conn)


@attrs.define
class Forgotten:
    """The tracker's side: every mapping the job asked it to forget."""

    tracker: SessionTracker = attrs.Factory(SessionTracker)
    calls: list[dict[str, int]] = attrs.Factory(list)

    def __call__(self, deleted: Mapping[str, int]) -> object:
        self.calls.append(dict(deleted))
        return self.tracker.forget(deleted)


def job(
    store: InlineStore, *, days: int = 30, metrics: Metrics | None = None, forget: Forgotten | None = None
) -> RetentionJob:
    return RetentionJob(
        days, store, forget_sessions=forget or Forgotten(), now=lambda: NOW, metrics=metrics, tuning=TUNING
    )


def seed_events(store: InlineStore, node_id: str, stamps: list[str]) -> None:
    if node_id != "supervisor":  # the supervisor's own events have no node row
        sql.upsert_node(store.conn, NodeRecord(node_id))
    events = [wire(seq, ts) for seq, ts in enumerate(stamps, start=1)]
    sql.ingest(store.conn, [IngestBatch(node_id, events)], format_ts(NOW))


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_passes_start_after_the_first_delay_then_run_every_interval(
    autojump_clock: trio.testing.MockClock, store: InlineStore
) -> None:
    retention = job(store)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(retention.run)
        await trio.sleep_until(t0 + 60 + 2 * 3600 + 1)
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in store.times("newest_event_ids")] == [60.0, 3660.0, 7260.0]
    assert retention.passes == 3


async def test_old_events_go_in_batches_and_nothing_younger_than_the_cutoff(
    autojump_clock: trio.testing.MockClock, store: InlineStore
) -> None:
    micro = dt.timedelta(microseconds=1)
    old = [stamp(40 * DAY + dt.timedelta(minutes=i)) for i in range(24, 0, -1)]  # 24 events, oldest first
    # One just past the cutoff goes; one exactly at the cutoff and the young ones stay.
    seed_events(store, "node-a", [*old, stamp(30 * DAY + micro), stamp(30 * DAY), stamp(DAY), stamp(micro)])
    seed_events(store, "node-b", [stamp(90 * DAY)])  # its newest (and only) event: kept
    metrics = Metrics()
    retention = job(store, metrics=metrics)

    t0 = trio.current_time()
    report = await retention.run_once()

    assert report.events == 25
    assert report.cutoff == CUTOFF
    # 25 rows in batches of 10: three delete transactions, half a second apart.
    assert [t - t0 for t in store.times("delete_events_before")] == [0.0, 0.5, 1.0]
    assert store.rows("SELECT node_id, seq, ts FROM events ORDER BY node_id, seq") == [
        ("node-a", 26, CUTOFF),
        ("node-a", 27, stamp(DAY)),
        ("node-a", 28, stamp(micro)),
        ("node-b", 1, stamp(90 * DAY)),
    ]
    assert counter(metrics, "hal_o_swarm_retention_deleted_rows_total", table="events") == 25
    # Nothing left: the next pass deletes nothing in one transaction.
    store.calls.clear()
    assert (await retention.run_once()).events == 0
    assert len(store.times("delete_events_before")) == 1


async def test_the_newest_event_of_every_node_is_kept_so_ids_and_seqs_never_restart(
    autojump_clock: trio.testing.MockClock, store: InlineStore
) -> None:
    seed_events(store, "node-a", [stamp(50 * DAY), stamp(45 * DAY)])
    seed_events(store, "supervisor", [stamp(60 * DAY), stamp(55 * DAY)])
    top = store.rows("SELECT MAX(id) FROM events")[0][0]
    await job(store).run_once()
    assert store.rows("SELECT node_id, seq FROM events ORDER BY id") == [("node-a", 2), ("supervisor", 2)]
    assert store.rows("SELECT MAX(id) FROM events")[0][0] == top


async def test_completed_sessions_age_out_once_settled_for_cost_and_old_finished_commands_go(
    autojump_clock: trio.testing.MockClock, store: InlineStore
) -> None:
    def session(sid: str, status: str, age: dt.timedelta) -> Session:
        return Session(sid, "node-a", "proj", status=status, last_activity=stamp(age))  # type: ignore[arg-type]

    states = [
        (1, session("done-long-ago", "completed", 50 * DAY), stamp(50 * DAY)),
        # Older than retention_days, but not yet settled for the cost estimates (36 days).
        (2, session("done-33-days", "completed", 33 * DAY), stamp(33 * DAY)),
        (3, session("idle-long-ago", "idle", 50 * DAY), stamp(50 * DAY)),  # live sessions never go
        (4, session("done-recently", "completed", DAY), stamp(DAY)),
    ]
    forget = Forgotten()
    for seq, state, written in states:
        sql.upsert_sessions(store.conn, [(seq, state)], written)
        forget.tracker.apply(seq, state)
    store.conn.execute(
        "INSERT INTO cost_estimate_sessions VALUES "
        "('done-long-ago', 1, 1, 1, 0, 0, ?), ('done-33-days', 1, 1, 1, 0, 0, ?)",
        (stamp(50 * DAY), stamp(33 * DAY)),
    )

    def command(cid: str, status: str, age: dt.timedelta) -> Command:
        return Command(cid, "abort_session", "s", status=status, idempotency_key=cid, created_at=stamp(age))  # type: ignore[arg-type]

    audit = AuditRecord(stamp(50 * DAY), "api", "http", "command.abort_session", "s", "accepted")
    for cid, status, age in (
        ("old-done", "succeeded", 40 * DAY),
        ("old-failed", "failed", 31 * DAY),
        ("old-pending", "pending", 40 * DAY),  # still waiting for its outcome: stays
        ("new-done", "succeeded", DAY),
    ):
        sql.insert_command(store.conn, command(cid, status, age), audit)
    store.conn.commit()

    report = await job(store, forget=forget).run_once()

    assert (report.sessions, report.commands) == (1, 2)
    assert report.session_cutoff == stamp(36 * DAY)
    kept = [("done-33-days",), ("done-recently",), ("idle-long-ago",)]
    assert store.rows("SELECT id FROM sessions ORDER BY id") == kept
    assert [s.id for s in forget.tracker.sessions()] == ["done-33-days", "done-recently", "idle-long-ago"]
    assert forget.calls == [{"done-long-ago": 1}]
    assert store.rows("SELECT session_id FROM cost_estimate_sessions") == [("done-33-days",)]
    assert store.rows("SELECT id FROM commands ORDER BY id") == [("new-done",), ("old-pending",)]
    # The audit trail is never deleted.
    assert store.rows("SELECT COUNT(*) FROM audit_log") == [(4,)]


async def test_a_longer_retention_keeps_completed_sessions_that_long(
    autojump_clock: trio.testing.MockClock, store: InlineStore
) -> None:
    done = Session("s", "node-a", "proj", status="completed", last_activity=stamp(80 * DAY))
    sql.upsert_sessions(store.conn, [(1, done)], stamp(80 * DAY))
    assert (await job(store, days=90).run_once()).sessions == 0
    assert (await job(store, days=60).run_once()).sessions == 1


async def test_a_failing_pass_is_logged_and_counted_and_the_next_pass_runs_on_schedule(
    autojump_clock: trio.testing.MockClock, store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    seed_events(store, "node-a", [stamp(40 * DAY + dt.timedelta(seconds=i)) for i in range(30, 0, -1)] + [stamp(DAY)])
    store.faults["delete_events_before"] = StoreError("database write failed: disk I/O error")
    store.fault_count["delete_events_before"] = 1
    store.faults["delete_commands_before"] = RuntimeError("a bug")
    store.fault_count["delete_commands_before"] = 1  # the second pass meets this one
    metrics = Metrics()
    retention = job(store, metrics=metrics)
    t0 = trio.current_time()
    with caplog.at_level(logging.INFO, logger="halswarm.supervisor.retention"):
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            await trio.sleep_until(t0 + 60 + 2 * 3600 + 10)
            nursery.cancel_scope.cancel()

    assert retention.passes == 3
    assert counter(metrics, "hal_o_swarm_retention_passes_total", outcome="failed") == 2
    assert counter(metrics, "hal_o_swarm_retention_passes_total", outcome="ok") == 1
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "ERROR",
        "retention pass failed after deleting 0 events, 0 sessions, 0 commands (next pass on schedule): "
        "database write failed: disk I/O error",
    ) in messages
    # The second pass deleted the events before the bug in the commands step hit it.
    assert (
        "ERROR",
        "retention pass failed unexpectedly after deleting 30 events, 0 sessions, 0 commands (next pass on schedule)",
    ) in messages
    quiet = f"retention: deleted 0 events, 0 sessions, 0 commands older than {CUTOFF}; freed 0 pages in 0.00 s"
    assert ("INFO", quiet) in messages
    assert store.rows("SELECT COUNT(*) FROM events") == [(1,)]
    assert counter(metrics, "hal_o_swarm_retention_deleted_rows_total", table="events") == 30


async def test_each_pass_logs_its_figures_and_observes_its_duration(
    autojump_clock: trio.testing.MockClock, store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    seed_events(store, "node-a", [stamp(40 * DAY + dt.timedelta(seconds=i)) for i in range(15, 0, -1)] + [stamp(DAY)])
    metrics = Metrics()
    retention = job(store, metrics=metrics)
    with caplog.at_level(logging.INFO, logger="halswarm.supervisor.retention"):
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            await trio.sleep(61)
            nursery.cancel_scope.cancel()
    [record] = [r for r in caplog.records if r.getMessage().startswith("retention: ")]
    # Two event batches half a second apart; the vacuum found no whole page to give back.
    assert record.getMessage() == (
        f"retention: deleted 15 events, 0 sessions, 0 commands older than {CUTOFF}; freed 0 pages in 0.50 s"
    )
    fields = record.__dict__["ctx"]
    assert (fields["events"], fields["retention_days"], fields["seconds"]) == (15, 30, 0.5)
    assert counter(metrics, "hal_o_swarm_retention_pass_duration_seconds_sum") == 0.5
    assert retention.last_report is not None
    assert retention.last_report.events == 15


async def test_without_incremental_auto_vacuum_it_warns_once_and_never_vacuums(
    autojump_clock: trio.testing.MockClock, store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.mode = "none"
    retention = job(store)
    with caplog.at_level(logging.WARNING, logger="halswarm.supervisor.retention"):
        await retention.run_once()
        await retention.run_once()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "database auto_vacuum is none: retention frees pages for reuse but the file never shrinks; "
        "run `hal-supervisor db migrate --vacuum` with the supervisor stopped to enable it (docs/DATA.md)"
    ]
    assert store.times("incremental_vacuum") == []
    assert len(store.times("auto_vacuum_mode")) == 1
