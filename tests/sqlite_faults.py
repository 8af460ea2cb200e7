"""Real SQLite failures for tests, induced in SQLite itself rather than with test doubles.

* :func:`disk_full`: ``PRAGMA max_page_count = <page_count>`` caps a database at its
  current size, so every later write that needs a new page fails with ``database or
  disk is full``, as on a full disk.
* :func:`reads_failing`: a progress handler that aborts every statement on the store's
  reader connections, so each query fails with ``interrupted``.

Connections are only touched under the limiter their owner serialises them with, so
the fault never races the component's own use of them.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar

import trio

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import AsyncGenerator, Callable

    from halswarm.store import Store
    from halswarm.store.gate import WriteGate

__all__ = ["disk_full", "reads_failing"]

T = TypeVar("T")

_RESTORE_TIMEOUT: Final = 5.0


def _cap(conn: sqlite3.Connection) -> int:
    """Cap the database at its current page count; returns the previous maximum."""
    previous = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return previous


def _uncap(conn: sqlite3.Connection, previous: int) -> None:
    conn.execute(f"PRAGMA max_page_count = {previous}")


async def _under(gate: trio.CapacityLimiter | WriteGate, fn: Callable[[], T]) -> T:
    """Run *fn* in a thread while holding the gate its owner serialises the connection with."""
    if isinstance(gate, trio.CapacityLimiter):
        return await trio.to_thread.run_sync(fn, limiter=gate)
    async with gate.hold(urgent=True):
        return await trio.to_thread.run_sync(fn)


@asynccontextmanager
async def disk_full(conn: sqlite3.Connection, gate: trio.CapacityLimiter | WriteGate) -> AsyncGenerator[None, None]:
    """Inside the block, writes on *conn* that need a new page fail (the disk is "full").

    *gate* is the limiter or write gate its owner runs every call on *conn* under.
    """
    previous = await _under(gate, lambda: _cap(conn))
    try:
        yield
    finally:
        with trio.move_on_after(_RESTORE_TIMEOUT, shield=True):
            await _under(gate, lambda: _uncap(conn, previous))


def _abort() -> int:
    return 1  # non-zero: SQLite interrupts the running statement


async def _on_every_reader(store: Store, change: Callable[[sqlite3.Connection], None]) -> None:
    """Apply *change* to each reader connection while none is in use."""
    gate = store._read_gate
    held: list[object] = []
    try:
        # Holding every reader token leaves every reader connection idle in the pool.
        for _ in range(int(gate.total_tokens)):
            borrower = object()
            await gate.acquire_on_behalf_of(borrower)
            held.append(borrower)
        readers = [store._readers.get_nowait() for _ in held]
        try:
            for conn in readers:
                change(conn)
        finally:
            for conn in readers:
                store._readers.put(conn)
    finally:
        for borrower in held:
            gate.release_on_behalf_of(borrower)


@asynccontextmanager
async def reads_failing(store: Store) -> AsyncGenerator[None, None]:
    """Inside the block, every query on *store*'s reader connections fails with "interrupted"."""
    await _on_every_reader(store, lambda conn: conn.set_progress_handler(_abort, 1))
    try:
        yield
    finally:
        with trio.move_on_after(_RESTORE_TIMEOUT, shield=True):
            await _on_every_reader(store, lambda conn: conn.set_progress_handler(None, 1))
