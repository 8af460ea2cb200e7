"""Is the supervisor wedged? The check behind its systemd watchdog pings (issue 10).

The watchdog restarts a process that stops pinging. Pinging whenever the event loop
turns would miss the failure a restart cures: a SQLite call that never returns (a hung
disk or network filesystem) holds the single writer, and nothing is stored again. So
the supervisor vouches for itself only while

- the store's writer is not stuck inside one call for longer than the limit, and
- the event pipeline's current commit attempt (waiting for the writer included) has
  not taken longer than the limit.

A **full disk is not a reason to restart**: each write fails at once, the pipeline
retries with backoff (it is between attempts most of the time), ``/readyz`` says
``pipeline: stalled for Ns`` and agents keep their events. A restart would not free
space, and repeated restarts would hit systemd's start limit and leave the supervisor
down for good. So are slow commits (seconds each): every one finishes.

The limit is the watchdog period itself: a wedge is noticed after one period and
systemd acts within one more.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["supervisor_problem"]


class _Writer(Protocol):
    def writer_stuck_for(self) -> float:
        """Seconds the current SQLite write call has taken (0: none)."""


class _Committer(Protocol):
    def attempt_stuck_for(self) -> float:
        """Seconds the current commit attempt has taken (0: none)."""


def supervisor_problem(store: _Writer, pipeline: _Committer, limit: float) -> str | None:
    """None while the supervisor makes progress; otherwise why it does not (one line).

    Args:
        store: the supervisor's store (its writer).
        pipeline: the event pipeline.
        limit: seconds one call or attempt may take before the process counts as wedged.
    """
    stuck = store.writer_stuck_for()
    if stuck > limit:
        return f"the database writer has been inside one call for {stuck:.1f}s (limit {limit:g}s)"
    attempt = pipeline.attempt_stuck_for()
    if attempt > limit:
        return f"storing a batch of events has taken {attempt:.1f}s so far (limit {limit:g}s)"
    return None
