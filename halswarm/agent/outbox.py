"""The agent's durable outbox: events wait here, numbered, until the supervisor acks them.

An event exists once it is committed here: its ``seq`` is assigned in the same
transaction, so seqs are gap-free and survive restarts. Acked events are deleted.
The same SQLite file keeps the agent's identity (instance key), recent command
results (so a resent command is answered, not re-run) and small backend state.
One connection behind ``CapacityLimiter(1)``; nothing touches SQLite on the trio thread.
"""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from halswarm.liveness import CallTimer
from halswarm.sync import Signal

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Sequence
    from pathlib import Path

__all__ = ["Outbox", "OutboxError", "open_outbox"]

R = TypeVar("R")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS command_results (key TEXT PRIMARY KEY, result BLOB NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
)
_RESULTS_KEPT: Final = 2000


class OutboxError(Exception):
    """The outbox database failed (disk full, unreadable data dir)."""


class Outbox:
    """Async facade over the outbox database. Use :func:`open_outbox`."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, instance_key: str, last_seq: int, *, synced: bool = True
    ) -> None:
        self._conn = conn
        self.path = path
        self._gate = trio.CapacityLimiter(1)
        # The gate serialises the calls; this only lends them one thread of their own.
        self._thread = trio.CapacityLimiter(1)
        #: Times the SQLite call now running: the systemd watchdog stops vouching for an
        #: agent stuck in one call.
        self.call = CallTimer()
        self.instance_key = instance_key
        self.last_seq = last_seq  # last seq assigned (committed)
        self.synced = synced  # a supervisor has welcomed this outbox at least once
        self.acked_seq = 0  # highest seq the supervisor confirmed (in memory)
        self.appended = Signal()
        self.acked = Signal()

    async def _run(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        try:
            async with self._gate:
                with self.call.timing():
                    return await trio.to_thread.run_sync(fn, self._conn, limiter=self._thread)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc

    def stuck_for(self) -> float:
        """Seconds the SQLite call now running has taken (0 while idle)."""
        return self.call.running_for()

    @property
    def pending(self) -> int:
        """Events assigned but not yet acknowledged."""
        return max(0, self.last_seq - self.acked_seq)

    async def append(self, bodies: Sequence[bytes]) -> list[int]:
        """Commit events (bodies without seq); returns the seqs assigned, in order."""
        if not bodies:
            return []

        def work(conn: sqlite3.Connection) -> list[int]:
            first = self.last_seq + 1
            seqs = list(range(first, first + len(bodies)))
            with conn:
                conn.executemany("INSERT INTO outbox (seq, body) VALUES (?, ?)", zip(seqs, bodies, strict=True))
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seqs[-1]),))
            self.last_seq = seqs[-1]
            return seqs

        seqs = await self._run(work)
        self.appended.fire()
        return seqs

    async def read_after(self, seq: int, *, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Up to *limit* events after *seq*, at most *max_bytes* of bodies (at least one)."""

        def work(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            rows: list[tuple[int, bytes]] = conn.execute(
                "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
            total = 0
            for i, (_, body) in enumerate(rows):
                total += len(body) + 24  # the spliced seq and separators
                if total > max_bytes and i > 0:
                    return rows[:i]
            return rows

        return await self._run(work)

    def note_acked(self, seq: int) -> None:
        """Record an ack (memory only; :meth:`prune` deletes the rows later)."""
        if seq > self.acked_seq:
            self.acked_seq = seq
            self.acked.fire()

    async def prune(self) -> None:
        """Delete acknowledged events."""
        upto = self.acked_seq

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))

        await self._run(work)

    async def mark_synced(self) -> None:
        """Record that a supervisor welcomed this outbox (its seqs are now that supervisor's)."""

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('synced', '1')")

        await self._run(work)
        self.synced = True

    async def renumber_after(self, seq: int, *, force: bool = False) -> int:
        """The supervisor already holds seqs beyond ours (our data dir was lost): move the
        pending events so the first one follows *seq*, so none is taken for a duplicate.

        Returns:
            How far the seqs moved (0 if nothing needed moving).
        """
        if seq <= self.last_seq and not force:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            first = conn.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
            delta = seq + 1 - first if first is not None else seq - self.last_seq
            if delta <= 0:
                return 0
            with conn:
                # Two steps through negative values: no transient primary-key clash.
                conn.execute("UPDATE outbox SET seq = -(seq + ?)", (delta,))
                conn.execute("UPDATE outbox SET seq = -seq")
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(self.last_seq + delta),)
                )
            self.last_seq += delta
            self.acked_seq = seq
            return delta

        return await self._run(work)

    async def count(self) -> int:
        """Rows in the outbox (acked rows not yet pruned included)."""
        return await self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]))

    async def wait_acked(self, seq: int) -> None:
        """Return once the supervisor has acknowledged every event up to *seq*."""
        while self.acked_seq < seq:
            await self.acked.waiter().wait()

    async def wait_pending_below(self, limit: int) -> None:
        """Return once fewer than *limit* events are unacknowledged (producer backpressure)."""
        while True:
            waiter = self.acked.waiter()
            if self.pending < limit:
                return
            await waiter.wait()

    # ---- command results and backend state ---------------------------------------------

    async def get_result(self, key: str) -> bytes | None:
        """A remembered command result."""

        def work(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT result FROM command_results WHERE key = ?", (key,)).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(work)

    async def put_result(self, key: str, result: bytes, created: float) -> None:
        """Remember a command result; keeps the most recent ones only."""

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO command_results (key, result, created) VALUES (?, ?, ?)",
                    (key, result, created),
                )
                # By insertion order (REPLACE gives the row a new rowid): ``created`` comes
                # from trio's clock, whose origin differs in every process.
                conn.execute(
                    "DELETE FROM command_results WHERE rowid NOT IN "
                    "(SELECT rowid FROM command_results ORDER BY rowid DESC LIMIT ?)",
                    (_RESULTS_KEPT,),
                )

        await self._run(work)

    async def get_kv(self, key: str) -> bytes | None:
        """Backend state stored under *key*."""

        def work(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(work)

    async def put_kv(self, key: str, value: bytes) -> None:
        """Store backend state under *key*."""

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

        await self._run(work)


def _open(path: Path) -> Outbox:
    # The outbox holds event data and the last environment manifest (its env values may
    # be secrets): a directory of its own, for the agent's user only.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False)  # serialised by the outbox's gate
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'instance_key'").fetchone()
            if row is None:
                instance_key = secrets.token_hex(16)
                conn.execute("INSERT INTO meta (key, value) VALUES ('instance_key', ?)", (instance_key,))
                conn.execute("INSERT INTO meta (key, value) VALUES ('synced', '0')")
            else:
                instance_key = row[0]
            # No marker at all: an outbox from before the marker existed, which has synced.
            row = conn.execute("SELECT value FROM meta WHERE key = 'synced'").fetchone()
            synced = row is None or row[0] == "1"
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            last_seq = int(row[0]) if row else 0
            # Rows can outrun the meta row only if someone edited the file; trust the rows.
            max_row = conn.execute("SELECT MAX(seq) FROM outbox").fetchone()[0] or 0
    except BaseException:
        conn.close()
        raise
    return Outbox(conn, path, instance_key, max(last_seq, max_row), synced=synced)


@asynccontextmanager
async def open_outbox(data_dir: Path) -> AsyncGenerator[Outbox, None]:
    """Open (creating if needed) ``<data_dir>/outbox.db``.

    Raises:
        OutboxError: the directory or database cannot be created or opened.

    Resource handling: the connection is closed on exit, also when cancelled.
    """
    path = data_dir / "outbox.db"
    try:
        outbox = await trio.to_thread.run_sync(_open, path)
    except (sqlite3.Error, OSError) as exc:
        raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
    try:
        yield outbox
    finally:
        outbox._conn.close()
