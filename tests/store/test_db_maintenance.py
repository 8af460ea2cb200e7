"""The ``hal-supervisor db`` operations on real files: online backup (a snapshot even while
another connection writes, verified, atomic, never over an existing file without force),
migrations (forward only, optional switch to incremental auto-vacuum) and stats."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from halswarm.models import SUPERVISOR_NODE_ID
from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch, NodeRecord, SchemaTooNewError, sql
from halswarm.store.backup import BackupError, backup_database
from halswarm.store.dbfile import DatabaseFileError, MigrationResult, migrate_database
from halswarm.store.schema import MIGRATIONS, code_schema_version
from halswarm.store.stats import database_stats
from halswarm.store.store import connect, migrate
from tests.db_rows import file_rows

CODE = code_schema_version()


def ts(i: int) -> str:
    return f"2026-05-{1 + i // 86400 % 28:02d}T00:00:00.{i % 1_000_000:06d}Z"


def add_events(conn: sqlite3.Connection, node_id: str, first: int, count: int) -> None:
    if node_id != SUPERVISOR_NODE_ID:
        sql.upsert_node(conn, NodeRecord(node_id))
    batch = [WireEvent(seq=s, ts=ts(s), type="x.test", data={"pad": "x" * 400}) for s in range(first, first + count)]
    sql.ingest(conn, [IngestBatch(node_id, batch)], ts(0))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A supervisor database (WAL) with 2,000 events of node-a and 10 of node-b."""
    path = tmp_path / "supervisor.db"
    conn = connect(path)
    try:
        migrate(conn, path)
        add_events(conn, "node-a", 1, 2000)
        add_events(conn, "node-b", 1, 10)
    finally:
        conn.close()
    return path


def read(path: Path, query: str) -> list[tuple[object, ...]]:
    return file_rows(path, query, read_only=True)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_the_backup_is_the_database_as_committed_when_it_began_while_writes_go_on(db: Path, tmp_path: Path) -> None:
    writer = connect(db)
    steps: list[tuple[int, int]] = []
    seq = 2001

    def progress(copied: int, total: int) -> None:
        # Another connection commits between every two steps, as the supervisor would.
        nonlocal seq
        steps.append((copied, total))
        add_events(writer, "node-a", seq, 50)
        seq += 50

    try:
        result = backup_database(db, tmp_path / "backup.db", step_pages=32, progress=progress)
    finally:
        writer.close()
    # Many steps, copied once from the first page to the last (no restart on each write).
    assert len(steps) > 10
    assert [copied for copied, _ in steps] == sorted({copied for copied, _ in steps})
    assert steps[-1][0] == steps[-1][1]
    per_node = "SELECT node_id, COUNT(*), MIN(seq), MAX(seq) FROM events GROUP BY node_id"
    assert read(tmp_path / "backup.db", per_node) == [
        ("node-a", 2000, 1, 2000),
        ("node-b", 10, 1, 10),
    ]
    assert (result.events, result.integrity) == (2010, "ok")
    assert result.bytes == (tmp_path / "backup.db").stat().st_size
    # One self-contained file in rollback-journal mode; the live database moved on.
    assert read(tmp_path / "backup.db", "PRAGMA journal_mode") == [("delete",)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("backup")) == ["backup.db"]
    assert read(db, "SELECT MAX(seq) FROM events WHERE node_id = 'node-a'")[0][0] == seq - 1
    assert leftovers(tmp_path) == []


def test_an_existing_target_is_refused_unless_forced_and_stale_side_files_go(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    with pytest.raises(BackupError, match=r"^backup target .*backup\.db already exists \(--force replaces it\)$"):
        backup_database(db, target)
    assert target.read_text() == "an older backup"
    target.unlink()
    stale_wal = tmp_path / "backup.db-wal"
    stale_wal.write_bytes(b"\0" * 100)  # of some earlier database: it must never meet the new one
    with pytest.raises(BackupError, match=r"backup\.db-wal already exists"):
        backup_database(db, target)
    target.write_text("an older backup")
    stale_journal = tmp_path / "backup.db-journal"  # a hot journal would roll back into the new file
    stale_journal.write_bytes(b"\0" * 100)
    backup_database(db, target, force=True)
    assert not stale_wal.exists()
    assert not stale_journal.exists()
    assert read(target, "SELECT COUNT(*) FROM events") == [(2010,)]
    assert leftovers(tmp_path) == []


def test_every_bad_source_or_target_gets_an_error_naming_it(db: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(DatabaseFileError, match=r"database file .*nope\.db does not exist \(check database\.path"):
        backup_database(missing, tmp_path / "b.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all, " * 100)
    with pytest.raises(DatabaseFileError, match=r"garbage\.db is not a SQLite database$"):
        backup_database(garbage, tmp_path / "b.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(DatabaseFileError, match=r"other\.db is not a halswarm supervisor database"):
        backup_database(other, tmp_path / "b.db")
    with pytest.raises(BackupError, match=r"b\.db: .*no-such-dir is not a directory$"):
        backup_database(db, tmp_path / "no-such-dir" / "b.db")
    (tmp_path / "adir").mkdir()
    with pytest.raises(BackupError, match=r"adir: it is a directory$"):
        backup_database(db, tmp_path / "adir")
    with pytest.raises(BackupError, match=r"it is the database itself$"):
        backup_database(db, db, force=True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BackupError, match=r"file is not a directory$"):
        backup_database(db, blocker / "b.db")
    assert not (tmp_path / "b.db").exists()
    assert leftovers(tmp_path) == []


def test_paths_the_user_may_not_read_are_errors_not_tracebacks(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11's Path.exists() raises PermissionError (EACCES) instead of answering:
    # a database or target inside another user's 0700 directory.
    denied = tmp_path / "private"
    real_exists = Path.exists

    def exists(path: Path) -> bool:
        if path.is_relative_to(denied):
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(DatabaseFileError, match=r"cannot read database .*private/s\.db: Permission denied"):
        backup_database(denied / "s.db", tmp_path / "b.db")
    with pytest.raises(BackupError, match=r"cannot write backup to .*private/b\.db: Permission denied"):
        backup_database(db, denied / "b.db")


def test_a_copy_that_fails_its_integrity_check_is_never_renamed_into_place(db: Path, tmp_path: Path) -> None:
    # Corrupt a page in the middle of the events table: the copy carries it along.
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"\xa5" * 4096)
    with pytest.raises(BackupError, match=r"^the backup failed its integrity check \(.+\); the database itself"):
        backup_database(db, tmp_path / "backup.db")
    assert not (tmp_path / "backup.db").exists()
    assert leftovers(tmp_path) == []


def test_migrate_goes_forward_only_and_says_from_which_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    MIGRATIONS.apply(Database(conn), stop_before="0004_env_reports")
    add_events(conn, "node-a", 1, 500)
    conn.close()

    assert migrate_database(path) == MigrationResult(
        before=3,
        after=CODE,
        applied=[name for name in MIGRATIONS.names() if name >= "0004"],
        auto_vacuum_before="none",
        auto_vacuum="none",
        vacuumed=False,
    )
    again = migrate_database(path, vacuum=True)
    assert (again.before, again.after, again.applied) == (CODE, CODE, [])
    assert (again.auto_vacuum_before, again.auto_vacuum, again.vacuumed) == ("none", "incremental", True)
    assert read(path, "SELECT COUNT(*), MAX(seq) FROM events") == [(500, 500)]
    assert read(path, "PRAGMA integrity_check") == [("ok",)]

    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO schema_migrations (migration_set, name, applied_at) VALUES ('halswarm', '0099_x', '')"
        )
    conn.close()
    with pytest.raises(SchemaTooNewError, match=r"schema version 99 \(migrations 0099_x\), newer than"):
        migrate_database(path)
    with pytest.raises(DatabaseFileError, match="does not exist"):
        migrate_database(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()  # never created by a migrate


def test_stats_describe_the_file_the_schema_and_the_events(db: Path) -> None:
    conn = connect(db)
    try:
        add_events(conn, SUPERVISOR_NODE_ID, 1, 3)
        stats = database_stats(db, retention_days=14)  # while another connection holds the WAL
    finally:
        conn.close()
    assert stats.path == str(db)
    assert stats.file_bytes == db.stat().st_size
    assert stats.wal_bytes > 0
    assert (stats.auto_vacuum, stats.journal_mode, stats.page_size) == ("incremental", "wal", 4096)
    assert stats.page_count > 200
    assert (stats.schema_version, stats.code_schema_version, stats.pending_migrations) == (CODE, CODE, [])
    assert stats.tables["events"] == 2013
    assert stats.tables["nodes"] == 2
    assert stats.tables["audit_log"] == 0
    assert stats.events_per_node == {"node-a": 2000, "node-b": 10, "supervisor": 3}
    assert (stats.oldest_event, stats.newest_event) == (ts(1), ts(2000))
    assert stats.retention_days == 14
