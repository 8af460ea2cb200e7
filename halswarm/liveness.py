"""Is a daemon wedged? The shared part of the checks behind both daemons' systemd watchdog pings (issue 10).

The watchdog restarts a process that stops pinging. Pinging whenever the event loop
turns would miss the failure a restart cures: a SQLite call that never returns (a hung
disk or network filesystem) holds a single-writer database, and nothing is stored
again. So a daemon vouches for itself only while none of the blocking operations it
waits on has been running for longer than a limit: the watchdog period itself, so a
wedge is noticed after one period and systemd acts within one more.

Operations that fail fast (a full disk) or are merely slow (commits taking seconds) are
no reason to restart: each one finishes. A restart would not free space, and repeated
restarts would hit systemd's start limit and leave the daemon down for good.

Each daemon says which operations count (:mod:`halswarm.supervisor.liveness`: the
store's writer and the event pipeline's commit attempt; ``halswarm.agent.app``: the
outbox); :class:`CallTimer` times one, :func:`first_stall` judges them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

__all__ = ["CallTimer", "Stall", "first_stall"]


@attrs.define
class CallTimer:
    """How long the operation now running has taken (trio's clock); one operation at a time."""

    #: ``trio.current_time()`` when the operation now running started (None: none runs).
    started: float | None = None

    @contextmanager
    def timing(self) -> Generator[None]:
        """Time the operation run inside the ``with`` block (ended however the block ends)."""
        self.started = trio.current_time()
        try:
            yield
        finally:
            self.started = None

    def running_for(self) -> float:
        """Seconds the operation now running has taken (0 while none runs)."""
        started = self.started
        return 0.0 if started is None else trio.current_time() - started


@attrs.frozen
class Stall:
    """One operation a daemon must not be stuck in.

    Args:
        text: what is stuck, with ``{:.1f}`` where the seconds go (``"the outbox
            database has been inside one call for {:.1f}s"``).
        running_for: seconds the operation now running has taken (0: none runs).
    """

    text: str
    running_for: Callable[[], float]


def first_stall(stalls: Iterable[Stall], limit: float | None) -> str | None:
    """None while the daemon makes progress; otherwise why it does not (one line).

    Args:
        stalls: the operations to check, in order; the first one over the limit is named.
        limit: seconds one operation may take before the daemon counts as wedged (None:
            no limit, so never wedged: there is no watchdog to feed).
    """
    if limit is None:
        return None
    for stall in stalls:
        seconds = stall.running_for()
        if seconds > limit:
            return f"{stall.text.format(seconds)} (limit {limit:g}s)"
    return None
