"""``hal-supervisor db backup|migrate|stats`` as an operator runs them: output, exit codes,
clear errors, and the group's ``--config`` reaching the subcommands. The config holds no
auth token: the db commands check only the database section."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlite_utils import Database

from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch, NodeRecord, sql
from halswarm.store.schema import MIGRATIONS, code_schema_version
from halswarm.store.store import connect, migrate
from halswarm.testing import write_json

ROOT = Path(__file__).resolve().parents[2]
CODE = code_schema_version()


def hal_supervisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import halswarm.supervisor.main as m; m.main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose database holds 120 events of two nodes (and no auth token at all)."""
    db = tmp_path / "supervisor.db"
    conn = connect(db)
    try:
        migrate(conn, db)
        for node, count in (("node-a", 100), ("node-b", 20)):
            sql.upsert_node(conn, NodeRecord(node))
            events = [
                WireEvent(seq=s, ts=f"2026-05-01T00:00:{s % 60:02d}.{s:06d}Z", type="x") for s in range(1, count + 1)
            ]
            sql.ingest(conn, [IngestBatch(node, events)], "2026-05-01T00:00:00.000000Z")
    finally:
        conn.close()
    return write_json(tmp_path / "supervisor.json", {"database": {"path": str(db), "retention_days": 7}})


def test_stats_as_json_and_as_text_with_the_config_before_db(config: Path) -> None:
    result = hal_supervisor("db", "stats", "--config", str(config), "--output", "json")
    assert result.returncode == 0, result.stderr
    stats = orjson.loads(result.stdout)
    assert stats["events_per_node"] == {"node-a": 100, "node-b": 20}
    assert stats["tables"]["events"] == 120
    assert (stats["schema_version"], stats["retention_days"], stats["auto_vacuum"]) == (CODE, 7, "incremental")

    text = hal_supervisor("--config", str(config), "db", "stats")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"schema version  {CODE} (this hal-supervisor: {CODE})" in lines
    assert "retention       7 days" in lines
    assert "  node-a  100" in lines


def test_backup_refuses_to_overwrite_without_force(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "backups" / "one.db"
    target.parent.mkdir()
    first = hal_supervisor("db", "backup", str(target), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"backup written to {target}: ")
    assert ", 120 events, " in first.stdout
    assert first.stdout.rstrip().endswith("integrity check: ok")

    again = hal_supervisor("db", "backup", str(target), "--config", str(config))
    assert again.returncode == 1
    assert again.stderr == f"hal-supervisor db: backup target {target} already exists (--force replaces it)\n"

    forced = hal_supervisor("--config", str(config), "db", "backup", "--force", str(target))
    assert forced.returncode == 0, forced.stderr
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (120,)
    finally:
        conn.close()
    assert sorted(p.name for p in target.parent.iterdir()) == ["one.db"]


def test_migrate_reports_versions_and_refuses_a_newer_database_with_exit_3(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    MIGRATIONS.apply(Database(conn), stop_before="0004_env_reports")
    conn.close()
    config = write_json(tmp_path / "s.json", {"database": {"path": str(db)}})
    result = hal_supervisor("db", "migrate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{db}: schema version 3 -> {CODE} (0004_env_reports)",
        "auto_vacuum is none: retention frees space for reuse but the file never shrinks; "
        "`hal-supervisor db migrate --vacuum` (supervisor stopped) enables it",
    ]

    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO schema_migrations (migration_set, name, applied_at) VALUES ('halswarm', '0099_y', '')"
        )
    conn.close()
    newer = hal_supervisor("db", "migrate", "--config", str(config))
    assert newer.returncode == 3
    assert "has schema version 99 (migrations 0099_y), newer than this version of halswarm knows" in newer.stderr

    # The supervisor itself refuses to start on it, with the same exit code.
    full = write_json(
        tmp_path / "full.json",
        {
            "server": {"auth_token": "db-commands-token-0123456789", "host": "127.0.0.1", "port": 0, "http_port": 0},
            "database": {"path": str(db)},
        },
    )
    refused = hal_supervisor("--config", str(full), "--log-format", "text")
    assert refused.returncode == 3
    assert "newer than this version of halswarm knows" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bad_database_paths_targets_and_configs_are_clear_errors(config: Path, tmp_path: Path) -> None:
    missing = write_json(tmp_path / "missing.json", {"database": {"path": str(tmp_path / "nope.db")}})
    result = hal_supervisor("db", "stats", "--config", str(missing))
    assert result.returncode == 1
    assert result.stderr.startswith(f"hal-supervisor db: database file {tmp_path / 'nope.db'} does not exist")

    (tmp_path / "junk.db").write_bytes(b"definitely not SQLite " * 50)
    junk = write_json(tmp_path / "junk.json", {"database": {"path": str(tmp_path / "junk.db")}})
    result = hal_supervisor("db", "migrate", "--config", str(junk))
    assert (result.returncode, result.stderr) == (
        1,
        f"hal-supervisor db: {tmp_path / 'junk.db'} is not a SQLite database\n",
    )

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = hal_supervisor("db", "backup", str(blocker / "b.db"), "--config", str(config))
    assert result.returncode == 1
    assert (
        result.stderr == f"hal-supervisor db: cannot write backup to {blocker / 'b.db'}: {blocker} is not a directory\n"
    )

    bad = write_json(tmp_path / "bad.json", {"database": {"path": "", "retention_days": 0}, "sever": {}})
    result = hal_supervisor("db", "stats", "--config", str(bad))
    assert result.returncode == 2
    assert "(top level): unknown key(s): sever" in result.stderr
