"""The supervisor's store: SQLite in WAL mode behind one thread gate.

One writer connection serialised by ``CapacityLimiter(1)``; a few reader connections
for queries, so a slow API read never delays ingestion. Nothing touches SQLite on the
trio thread. The interface is what a PostgreSQL backend would implement later.
"""

from __future__ import annotations

import functools
import queue
import sqlite3
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Concatenate, Final, ParamSpec, TypeVar

import trio
from sqlite_utils import Database

from halswarm.liveness import CallTimer
from halswarm.store import cost_sql, env_sql, policy_sql, retention_sql, sql
from halswarm.store.gate import WriteGate
from halswarm.store.schema import MIGRATIONS, SchemaStatus, schema_status

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from halswarm.audit import AuditEntry
    from halswarm.cost.estimates import SessionCost
    from halswarm.cost.model import CostBucket, Span
    from halswarm.models import Command, Event, Session
    from halswarm.policy.views import PolicyOverride
    from halswarm.store.policy_sql import AuditQuery, UnfinishedCommand
    from halswarm.store.sql import AuditRecord, EventQuery, IngestBatch, IngestSummary, NodeRecord, StoredState

__all__ = ["SchemaTooNewError", "Store", "StoreError", "open_store"]

P = ParamSpec("P")
R = TypeVar("R")

_READERS: Final = 4
_BUSY_TIMEOUT_MS: Final = 5000


class StoreError(Exception):
    """The database failed (disk full, corrupt, locked too long); the message says how."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer halswarm: this code never touches it (no downgrades)."""

    def __init__(self, path: Path | str, status: SchemaStatus) -> None:
        super().__init__(
            f"database {path} has schema version {status.version} (migrations {', '.join(status.unknown)}), "
            f"newer than this version of halswarm knows ({status.code_version}): run the newer version, "
            "or restore the backup taken before the upgrade (docs/DATA.md)"
        )
        self.status = status


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a connection with halswarm's pragmas.

    ``check_same_thread=False`` is safe only because every use is serialised by a
    limiter (house-style rule 16).
    """
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        # NORMAL is durable against process crashes in WAL mode; only power loss can
        # drop the last transactions (documented in docs/ARCHITECTURE.md).
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def migrate(conn: sqlite3.Connection, path: Path | str = "") -> list[str]:
    """Enable WAL and apply pending migrations (idempotent); returns the migrations applied.

    A new (empty) database gets ``auto_vacuum = INCREMENTAL`` first, so the retention job
    can give freed pages back to the file system; an existing database keeps its mode
    until ``hal-supervisor db migrate --vacuum`` (docs/DATA.md).

    Raises:
        SchemaTooNewError: a newer halswarm migrated the database; nothing was changed.
    """
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        # Only takes effect before the first table exists; later it needs a VACUUM.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db = Database(conn)
    status = schema_status(db)
    if status.newer:
        raise SchemaTooNewError(path or "<database>", status)
    db.enable_wal()
    MIGRATIONS.apply(db)
    return list(status.pending)


class Store:
    """Async access to the supervisor database. Use :func:`open_store`."""

    def __init__(self, path: Path, writer: sqlite3.Connection, readers: list[sqlite3.Connection]) -> None:
        self.path = path
        self._writer = writer
        self._write_gate = WriteGate()
        # The gate already serialises writes; this only lends the writer one thread.
        self._write_thread = trio.CapacityLimiter(1)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        for conn in readers:
            self._readers.put(conn)
        self._read_gate = trio.CapacityLimiter(len(readers))
        self.healthy = True
        self.last_error: str | None = None
        #: Times the SQLite call now running on the writer: the systemd watchdog stops
        #: vouching for a supervisor whose writer is stuck in one call (a hung disk), not
        #: for one whose writes fail quickly (a full disk).
        self.write_call = CallTimer()

    def writer_stuck_for(self) -> float:
        """Seconds the writer's current SQLite call has taken (0 while it is idle)."""
        return self.write_call.running_for()

    async def _write(self, fn: Callable[Concatenate[sqlite3.Connection, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._write_as(False, fn, *args, **kwargs)

    async def _write_urgent(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        # Commands: a human (or a policy) is waiting on these, not a batch of events.
        return await self._write_as(True, fn, *args, **kwargs)

    async def _write_as(
        self, urgent: bool, fn: Callable[Concatenate[sqlite3.Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        try:
            async with self._write_gate.hold(urgent=urgent):
                with self.write_call.timing():
                    result: R = await trio.to_thread.run_sync(
                        functools.partial(fn, self._writer, *args, **kwargs), limiter=self._write_thread
                    )
        except sqlite3.Error as exc:
            self.healthy = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise StoreError(f"database write failed: {exc}") from exc
        except (OverflowError, ValueError) as exc:
            # A value the database cannot hold (an integer beyond 64 bits) or a row the
            # SQL refused: the database itself is fine, so it stays healthy.
            raise StoreError(f"database write rejected a value: {exc}") from exc
        self.healthy = True
        self.last_error = None
        return result

    async def _read(self, fn: Callable[Concatenate[sqlite3.Connection, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        def run() -> R:
            conn = self._readers.get_nowait()
            try:
                result: R = fn(conn, *args, **kwargs)
            finally:
                self._readers.put(conn)
            return result

        try:
            return await trio.to_thread.run_sync(run, limiter=self._read_gate)
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc
        except (OverflowError, ValueError) as exc:  # a stored value this version cannot read
            raise StoreError(f"database read failed: {exc}") from exc

    # ---- writes ----------------------------------------------------------------------

    async def ingest(self, batches: list[IngestBatch], now: str) -> IngestSummary:
        """Persist event batches in one transaction (duplicates ignored); see :func:`sql.ingest`."""
        return await self._write(sql.ingest, batches, now)

    async def upsert_sessions(self, snapshots: Iterable[tuple[int, Session]], now: str) -> None:
        """Write session states, keeping newer stored ones."""
        await self._write(sql.upsert_sessions, list(snapshots), now)

    async def upsert_node(self, node: NodeRecord) -> None:
        """Insert or update a node's identity."""
        await self._write(sql.upsert_node, node)

    async def insert_command(self, command: Command, audit: AuditRecord) -> Command | None:
        """Persist a new command; returns the existing one if its idempotency key is taken."""
        return await self._write_urgent(sql.insert_command, command, audit)

    async def update_command(self, command: Command, audit: AuditRecord | None = None) -> None:
        """Store a command's progress or outcome."""
        await self._write_urgent(sql.update_command, command, audit)

    async def mark_command_sent(self, command_id: str) -> None:
        """Record that a command went out, unless it already has an outcome."""
        await self._write_urgent(sql.mark_command_sent, command_id)

    async def fail_unfinished_commands(self, now: str, reason: str) -> int:
        """Fail commands a previous run left without an outcome; returns how many."""
        return await self._write(sql.fail_unfinished_commands, now, reason)

    async def insert_audit(self, audit: AuditRecord) -> None:
        """Append an audit row."""
        await self._write(sql.insert_audit, audit)

    # ---- retention (issue 10; SQL in halswarm.store.retention_sql) --------------------
    # Bulk writes, one short transaction each: queued event batches get the writer
    # between two of them.

    async def newest_event_ids(self) -> list[int]:
        """The id of each node's newest event (kept by retention)."""
        return await self._read(retention_sql.newest_event_ids)

    async def delete_events_before(self, cutoff: str, keep: Sequence[int], limit: int) -> int:
        """Delete up to *limit* of the oldest events with ``ts < cutoff`` (not *keep*); returns how many."""
        return await self._write(retention_sql.delete_events_before, cutoff, list(keep), limit)

    async def delete_sessions_before(self, cutoff: str, limit: int) -> dict[str, int]:
        """Delete up to *limit* completed sessions idle since *cutoff*; returns id -> state seq."""
        return await self._write(retention_sql.delete_sessions_before, cutoff, limit)

    async def delete_commands_before(self, cutoff: str, limit: int) -> int:
        """Delete up to *limit* finished commands created before *cutoff*; returns how many."""
        return await self._write(retention_sql.delete_commands_before, cutoff, limit)

    async def incremental_vacuum(self, pages: int) -> int:
        """Shrink the file by up to *pages* free pages; returns how many went."""
        return await self._write(retention_sql.incremental_vacuum, pages)

    async def auto_vacuum_mode(self) -> str:
        """``none``, ``full`` or ``incremental``."""
        return await self._read(retention_sql.auto_vacuum_mode)

    # ---- reads -----------------------------------------------------------------------

    async def load_state(self) -> StoredState:
        """Nodes and sessions, to rebuild memory at start."""
        return await self._read(sql.load_state)

    async def query_events(self, query: EventQuery) -> list[Event]:
        """Events matching a query (see :func:`halswarm.store.sql.query_events`)."""
        return await self._read(sql.query_events, query)

    async def get_command(self, command_id: str) -> Command | None:
        """One command by id."""
        return await self._read(sql.get_command, command_id)

    async def get_command_by_key(self, key: str) -> Command | None:
        """One command by idempotency key."""
        return await self._read(sql.get_command_by_key, key)

    async def ping(self) -> None:
        """A trivial read, for readiness probes."""
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    def close(self) -> None:
        """Close every connection (synchronous and quick: safe in cleanup)."""
        self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

    # ---- cost tracking (issue 5; SQL in halswarm.store.cost_sql) ----------------------

    async def replace_provider_costs(
        self,
        provider: str,
        start: dt.date,
        end: dt.date,
        buckets: list[CostBucket],
        now: str,
        *,
        covered: Span | None = None,
        complete: bool = True,
    ) -> int:
        """Replace a provider's days ``start <= day < end``, record its coverage and (if *complete*) the poll.

        See :func:`cost_sql.replace_provider_days`; returns the rows the range now holds.
        """
        return await self._write(
            cost_sql.replace_provider_days, provider, start, end, buckets, now, covered=covered, complete=complete
        )

    async def add_cost_estimates(self, deltas: list[CostBucket], seen: dict[str, SessionCost], now: str) -> None:
        """Add estimate deltas and the sessions' bookkeeping in one transaction."""
        await self._write(cost_sql.add_estimates, deltas, seen, now)

    async def load_estimate_seen(self) -> dict[str, SessionCost]:
        """What the estimates booked of each session so far."""
        return await self._read(cost_sql.load_estimate_seen)

    async def prune_estimate_sessions(self, session_ids: Sequence[str]) -> int:
        """Forget what the estimates booked of settled sessions; returns how many rows went."""
        return await self._write(cost_sql.prune_estimate_sessions, list(session_ids))

    async def cost_buckets(self, first: dt.date, last: dt.date) -> list[CostBucket]:
        """Stored cost buckets of UTC days ``first..last`` (inclusive), both sources."""
        return await self._read(cost_sql.cost_buckets, first, last)

    async def cost_state(self, prefix: str) -> dict[str, str]:
        """Cost poller and budget state entries whose key starts with *prefix*."""
        return await self._read(cost_sql.cost_state, prefix)

    async def put_cost_state(self, items: dict[str, str], now: str) -> None:
        """Set cost poller and budget state entries in one transaction."""
        await self._write(cost_sql.put_cost_state, items, now)

    # ---- policies and the audit log (issue 6; SQL in halswarm.store.policy_sql) -------

    async def load_policy_rows(self) -> dict[str, str]:
        """Every persisted policy state row (name -> JSON text)."""
        return await self._read(policy_sql.load_policy_rows)

    async def save_policy_rows(self, rows: Mapping[str, str], now: str, audits: Sequence[AuditRecord] = ()) -> None:
        """Write policy state rows and audit rows in one transaction (urgent: commands follow)."""
        await self._write_urgent(policy_sql.save_policy_rows, dict(rows), now, list(audits))

    async def load_policy_overrides(self) -> dict[str, PolicyOverride]:
        """Runtime policy overrides (name -> override)."""
        return await self._read(policy_sql.load_policy_overrides)

    async def set_policy_override(self, name: str, override: PolicyOverride | None, audit: AuditRecord) -> None:
        """Set or clear a policy's runtime override, with its audit row, in one transaction."""
        await self._write_urgent(policy_sql.set_policy_override, name, override, audit)

    async def record_config_reload(self, cleared_overrides: Sequence[str], audit: AuditRecord) -> None:
        """A config reload: clear the policy overrides it made redundant and append its audit row, together."""
        await self._write(policy_sql.record_config_reload, list(cleared_overrides), audit)

    async def unfinished_commands(self) -> list[UnfinishedCommand]:
        """Commands still pending or sent."""
        return await self._read(policy_sql.unfinished_commands)

    async def save_env_reports(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Upsert the latest environment reports (issue 9); see :func:`env_sql.save_env_reports`."""
        await self._write(env_sql.save_env_reports, rows)

    async def load_env_reports(self) -> list[str]:
        """Every stored environment report's JSON."""
        return await self._read(env_sql.load_env_reports)

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Audit rows matching *query*, newest first (see :class:`policy_sql.AuditQuery`)."""
        return await self._read(policy_sql.query_audit, query)


@asynccontextmanager
async def open_store(path: Path) -> AsyncGenerator[Store, None]:
    """Open (creating and migrating if needed) the database at *path*.

    Raises:
        StoreError: the file cannot be created, opened or migrated.

    Resource handling: every connection is closed on exit, also when cancelled.
    """

    def opener() -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = connect(path)
        try:
            migrate(writer, path)
            readers = [connect(path, readonly=True) for _ in range(_READERS)]
        except BaseException:
            writer.close()
            raise
        return Store(path, writer, readers)

    try:
        store = await trio.to_thread.run_sync(opener)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        yield store
    finally:
        store.close()
