"""A store's real SQL run inline on one in-memory database, for tests of the jobs that use it.

Tests of a periodic job (cost poller, retention) run on trio's MockClock, which threads
would defeat; these stand-ins call the same SQL functions as the real store, on one
connection, at once. Subclasses add one method per store call, each starting with
``await self._enter("<method>")``.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio
from sqlite_utils import Database

from halswarm.store.schema import MIGRATIONS

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ["InlineSQL", "migrated_memory_db"]


@contextmanager
def migrated_memory_db() -> Generator[sqlite3.Connection, None, None]:
    """A new in-memory database with every migration applied, closed afterwards."""
    conn = sqlite3.connect(":memory:")
    MIGRATIONS.apply(Database(conn))
    try:
        yield conn
    finally:
        conn.close()


class InlineSQL:
    """The base of inline stores: records each call with its (trio) time, and injects faults.

    ``faults[method]`` makes that method raise the exception instead (for the next
    ``fault_count[method]`` calls, or always).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.faults: dict[str, Exception] = {}
        self.fault_count: dict[str, int] = {}
        #: (method, trio.current_time()) of every call, in order.
        self.calls: list[tuple[str, float]] = []

    async def _enter(self, method: str) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append((method, trio.current_time()))
        fault = self.faults.get(method)
        if fault is None:
            return
        left = self.fault_count.get(method)
        if left is not None:
            if left <= 1:
                del self.faults[method]
            self.fault_count[method] = left - 1
        raise fault

    def times(self, method: str) -> list[float]:
        """When *method* was called (trio clock)."""
        return [t for name, t in self.calls if name == method]
