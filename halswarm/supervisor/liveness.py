"""Is the supervisor wedged? The check behind its systemd watchdog pings (issue 10).

The rule is shared with the agent (:mod:`halswarm.liveness`): pings stop once one
blocking operation has run for longer than the watchdog period. For the supervisor the
operations are

- the store writer's current SQLite call, and
- the event pipeline's current commit attempt (waiting for the writer included).

A **full disk is not a reason to restart**: each write fails at once, the pipeline
retries with backoff (it is between attempts most of the time), ``/readyz`` says
``pipeline: stalled for Ns`` and agents keep their events.
"""

from __future__ import annotations

from typing import Protocol

from halswarm.liveness import Stall, first_stall

__all__ = ["supervisor_problem"]


class _Writer(Protocol):
    def writer_stuck_for(self) -> float:
        """Seconds the current SQLite write call has taken (0: none)."""


class _Committer(Protocol):
    def attempt_stuck_for(self) -> float:
        """Seconds the current commit attempt has taken (0: none)."""


def supervisor_problem(store: _Writer, pipeline: _Committer, limit: float | None) -> str | None:
    """None while the supervisor makes progress; otherwise why it does not (one line).

    Args:
        store: the supervisor's store (its writer).
        pipeline: the event pipeline.
        limit: seconds one call or attempt may take before the process counts as wedged
            (the watchdog period; None: no watchdog, never wedged).
    """
    return first_stall(
        (
            Stall("the database writer has been inside one call for {:.1f}s", store.writer_stuck_for),
            Stall("storing a batch of events has taken {:.1f}s so far", pipeline.attempt_stuck_for),
        ),
        limit,
    )
