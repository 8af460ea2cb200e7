"""Retention on the real store (a SQLite file, the writer thread): old rows go in batches
and the file shrinks; new databases get incremental auto-vacuum; a database migrated by
a newer halswarm is refused untouched."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio
from sqlite_utils import Database

from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch, NodeRecord, SchemaTooNewError, open_store
from halswarm.store.schema import MIGRATIONS, code_schema_version, schema_status
from halswarm.supervisor.retention import RetentionJob, RetentionTuning
from halswarm.supervisor.tracker import SessionTracker
from halswarm.timeutil import format_ts
from tests.db_rows import file_rows as read

if TYPE_CHECKING:
    from pathlib import Path

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
GUARD = 30


def events(first_seq: int, count: int, age: dt.timedelta) -> list[WireEvent]:
    ts = format_ts(NOW - age)
    seqs = range(first_seq, first_seq + count)
    return [WireEvent(seq=s, ts=ts, type="x.test", data={"pad": "x" * 400}) for s in seqs]


async def test_old_events_go_and_the_file_gives_the_space_back(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with trio.fail_after(GUARD):
        async with open_store(db) as store:
            await store.upsert_node(NodeRecord("node-a"))
            for start in range(1, 6001, 1000):
                await store.ingest([IngestBatch("node-a", events(start, 1000, dt.timedelta(days=40)))], format_ts(NOW))
            await store.ingest([IngestBatch("node-a", events(6001, 10, dt.timedelta(days=1)))], format_ts(NOW))
            pages_before = read(db, "PRAGMA page_count")[0][0]
            assert isinstance(pages_before, int)
            job = RetentionJob(
                30,
                store,
                forget_sessions=SessionTracker().forget,
                now=lambda: NOW,
                tuning=RetentionTuning(batch_rows=2000, batch_pause=0.001, vacuum_pages=256),
            )
            report = await job.run_once()
            assert report.events == 6000
            assert read(db, "SELECT MIN(seq), MAX(seq), COUNT(*) FROM events") == [(6001, 6010, 10)]
            pages_after = read(db, "PRAGMA page_count")[0][0]
            assert isinstance(pages_after, int)
            # ~6,000 rows of 400+ bytes lived in several hundred pages; they are gone from the file.
            assert report.pages_freed == pages_before - pages_after
            assert report.pages_freed > 500
            assert read(db, "PRAGMA freelist_count") == [(0,)]


async def test_a_new_database_gets_incremental_auto_vacuum_an_old_one_keeps_its_mode(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    MIGRATIONS.apply(Database(conn), stop_before="0004_env_reports")  # a database from before
    conn.close()
    with trio.fail_after(GUARD):
        async with open_store(tmp_path / "new.db") as store:
            assert await store.auto_vacuum_mode() == "incremental"
        async with open_store(old) as store:
            assert await store.auto_vacuum_mode() == "none"
    assert read(old, "SELECT name FROM schema_migrations ORDER BY id")[-1] == ("0004_env_reports",)


async def test_a_database_from_a_newer_halswarm_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with trio.fail_after(GUARD):
        async with open_store(db):
            pass
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO schema_migrations (migration_set, name, applied_at) VALUES ('halswarm', '0099_future', 'x')"
        )
    conn.close()
    before = db.read_bytes()
    with trio.fail_after(GUARD), pytest.raises(SchemaTooNewError) as caught:
        async with open_store(db):
            pass
    assert str(caught.value) == (
        f"database {db} has schema version 99 (migrations 0099_future), newer than this version of halswarm "
        f"knows ({code_schema_version()}): run the newer version, or restore the backup taken before the upgrade "
        "(docs/DATA.md)"
    )
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    try:
        status = schema_status(Database(conn))
    finally:
        conn.close()
    assert (status.version, status.newer, status.pending) == (99, True, ())
