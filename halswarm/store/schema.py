"""Database schema, as ordered migrations (sqlite-utils ``Migrations``).

Migrations are append-only: never edit one that has shipped; add the next.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs
from sqlite_utils.migrations import Migrations

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["MIGRATIONS", "SCHEMA_SET", "SchemaStatus", "code_schema_version", "schema_status"]

SCHEMA_SET: Final = "halswarm"
_NUMBER: Final = re.compile(r"([0-9]+)_")


class _SchemaMigrations(Migrations):
    # DESIGN.md names the table schema_migrations.
    migrations_table = "schema_migrations"

    def names(self) -> list[str]:
        """Every registered migration's name, in order."""
        return [migration.name for migration in self._migrations]


MIGRATIONS: Final = _SchemaMigrations(SCHEMA_SET)


def _number(name: str) -> int:
    """The version a migration brings the schema to: its name's number (``0004_env`` -> 4)."""
    match = _NUMBER.match(name)
    return int(match.group(1)) if match else 0


def code_schema_version() -> int:
    """The schema version this code brings a database to (its last migration's number)."""
    return max((_number(name) for name in MIGRATIONS.names()), default=0)


@attrs.frozen
class SchemaStatus:
    """Where a database's schema stands relative to this code."""

    #: Migrations recorded in the database, in the order they were applied.
    applied: tuple[str, ...]
    #: Migrations of this code not yet applied.
    pending: tuple[str, ...]
    #: Migrations recorded in the database that this code does not know: a newer
    #: halswarm wrote them. Such a database is never touched (no downgrades).
    unknown: tuple[str, ...]

    @property
    def version(self) -> int:
        """The database's schema version (0: an empty database)."""
        return max((_number(name) for name in self.applied), default=0)

    @property
    def code_version(self) -> int:
        """The version this code brings a database to."""
        return code_schema_version()

    @property
    def newer(self) -> bool:
        """The database was migrated by a newer halswarm."""
        return bool(self.unknown)


def schema_status(db: Database) -> SchemaStatus:
    """Compare the migrations recorded in *db* with this code's (read-only)."""
    applied = tuple(m.name for m in MIGRATIONS.applied(db))
    known = MIGRATIONS.names()
    return SchemaStatus(
        applied=applied,
        pending=tuple(name for name in known if name not in applied),
        unknown=tuple(name for name in applied if name not in known),
    )


def _run_statements(db: Database, script: str) -> None:
    # Not executescript(): it commits first, which would break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@MIGRATIONS(name="0001_initial")
def _initial(db: Database) -> None:
    _run_statements(
        db,
        """
        CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            instance_key TEXT NOT NULL DEFAULT '',
            hostname TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '',
            projects TEXT NOT NULL DEFAULT '[]',
            resources TEXT,
            health TEXT,
            last_seq INTEGER NOT NULL DEFAULT 0,
            first_seen TEXT,
            connected_at TEXT,
            last_heartbeat TEXT
        );
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            node_id TEXT NOT NULL,
            project TEXT NOT NULL,
            status TEXT NOT NULL,
            state_seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            last_activity TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX sessions_node ON sessions(node_id);
        CREATE INDEX sessions_project ON sessions(project);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            node_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts TEXT NOT NULL,
            session_id TEXT,
            project TEXT,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            UNIQUE (node_id, seq)
        );
        CREATE INDEX events_session ON events(session_id, id);
        CREATE INDEX events_type_ts ON events(type, ts);
        CREATE INDEX events_ts ON events(ts);
        CREATE TABLE commands (
            id TEXT PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            target TEXT NOT NULL,
            node_id TEXT,
            args TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT,
            error TEXT,
            actor TEXT NOT NULL,
            source TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX commands_created ON commands(created_at);
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            actor TEXT NOT NULL,
            source TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            correlation_id TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_ts ON audit_log(ts);
        """,
    )


@MIGRATIONS(name="0002_cost")
def _cost(db: Database) -> None:
    # Money is INTEGER nano-dollars (1e-9 USD): exact, additive in SQL (the estimate
    # upserts add deltas in place) and 1000 times finer than the micro-dollars reports
    # show. See halswarm/store/cost_sql.py and docs/COST.md.
    _run_statements(
        db,
        """
        CREATE TABLE cost_daily (
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            project TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('provider', 'estimate')),
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_nanos INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (day, provider, model, project, source)
        ) WITHOUT ROWID;
        CREATE INDEX cost_daily_provider_day ON cost_daily(provider, source, day);
        CREATE TABLE cost_estimate_sessions (
            session_id TEXT PRIMARY KEY,
            cost_nanos INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE cost_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    )


@MIGRATIONS(name="0003_policy")
def _policy(db: Database) -> None:
    # Auto-intervention policies (issue 6): see halswarm/store/policy_sql.py and
    # docs/POLICIES.md. The partial index serves the engine's per-tick look-up of
    # commands in flight; audit_actor the actor filter of GET /api/v1/audit.
    _run_statements(
        db,
        """
        CREATE TABLE policy_state (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE policy_overrides (
            name TEXT PRIMARY KEY,
            enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
            actor TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX commands_unfinished ON commands(status) WHERE status IN ('pending', 'sent');
        CREATE INDEX audit_actor ON audit_log(actor, id);
        """,
    )


@MIGRATIONS(name="0004_env_reports")
def _env_reports(db: Database) -> None:
    # Environment checks (issue 9): the latest report per (node, project), so
    # /api/v1/env/status survives a supervisor restart. See halswarm/store/env_sql.py.
    _run_statements(
        db,
        """
        CREATE TABLE env_reports (
            node_id TEXT NOT NULL,
            project TEXT NOT NULL,
            state TEXT NOT NULL,
            checked_at TEXT NOT NULL,
            report TEXT NOT NULL,
            PRIMARY KEY (node_id, project)
        ) WITHOUT ROWID;
        """,
    )
