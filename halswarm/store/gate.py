"""The writer's gate: one write at a time, urgent writes ahead of queued bulk ones.

Commands are written while events stream in; behind a plain FIFO lock a command's row
would wait for every ingest transaction queued before it. With this gate it waits only
for the transaction already running (SQLite has a single writer either way).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

__all__ = ["WriteGate"]


class WriteGate:
    """A lock with two queues. Urgent holders are served first; FIFO within a queue.

    Ownership is handed straight to the next waiter on release, so a newcomer can never
    slip in between (no starvation of waiters already queued in the same class).
    """

    def __init__(self) -> None:
        self._busy = False
        self._urgent = trio.lowlevel.ParkingLot()
        self._bulk = trio.lowlevel.ParkingLot()

    @property
    def waiting(self) -> int:
        """Writers queued (not counting the one holding the gate)."""
        return len(self._urgent) + len(self._bulk)

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for the gate; pair with :meth:`release` (or use :meth:`hold`).

        Cancellation: a waiter cancelled before it gets the gate leaves its queue.
        """
        if self._busy:
            # Woken only by release(), which hands the gate over with _busy still set.
            await (self._urgent if urgent else self._bulk).park()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._busy = True

    def release(self) -> None:
        """Hand the gate to the next waiter (urgent first), or free it."""
        if not self._busy:
            raise RuntimeError("WriteGate.release() without acquire()")
        if self._urgent:
            self._urgent.unpark()
        elif self._bulk:
            self._bulk.unpark()
        else:
            self._busy = False

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncGenerator[None, None]:
        """Hold the gate for the body of the ``async with``; released however it ends."""
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()
