"""The retention job (issue 10): what is older than ``database.retention_days`` leaves the store.

Every :attr:`RetentionTuning.interval` seconds (the first pass a minute after start) one
pass deletes, in small batches through the store's writer:

1. events whose ``ts`` is older than the cutoff, except each node's newest event (see
   :mod:`halswarm.store.retention_sql` for why);
2. completed sessions untouched for ``max(retention_days, 36)`` days, from the store and
   the tracker (36: the cost estimates settle a completed session after 35 days and must
   never see it again, see :mod:`halswarm.cost.estimates`);
3. commands with an outcome created before the cutoff (their audit rows stay);

then gives the freed pages back to the file system (``PRAGMA incremental_vacuum``, when
the database has ``auto_vacuum = INCREMENTAL``). The audit log is never deleted: it is the
audit trail. docs/DATA.md has the operator's view.

Why an event's ``ts``: it is the only time an event row has. The agent stamps it when it
commits the event to its outbox; the supervisor checks its format but keeps it as sent.
A node whose clock runs far ahead keeps its events longer, one far behind loses them
sooner (docs/DATA.md says so); a supervisor-side receive time would cost a column and an
index on every ingested row.

Invariants: a batch is one short write transaction, so queued event batches (and urgent
command writes, which jump the queue) wait for at most one batch; nothing younger than
the cutoff is deleted; a failed pass is logged and counted and the next pass runs on
schedule.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from halswarm.cost.estimates import SETTLED_AFTER_DAYS
from halswarm.obs.logging import ctx
from halswarm.obs.metrics import Metrics
from halswarm.store import StoreError
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

__all__ = ["SESSION_MIN_DAYS", "RetentionJob", "RetentionReport", "RetentionStore", "RetentionTuning"]

log = logging.getLogger(__name__)

#: Completed sessions are kept at least this long, whatever ``retention_days`` says.
SESSION_MIN_DAYS: Final = SETTLED_AFTER_DAYS + 1


class RetentionStore(Protocol):
    """What the job needs of the store (:class:`~halswarm.store.Store` has it)."""

    async def newest_event_ids(self) -> list[int]:
        """The id of each node's newest event."""
        ...

    async def delete_events_before(self, cutoff: str, keep: Sequence[int], limit: int) -> int:
        """Delete up to *limit* of the oldest events before *cutoff*, not *keep*."""
        ...

    async def delete_sessions_before(self, cutoff: str, limit: int) -> dict[str, int]:
        """Delete up to *limit* completed sessions idle since *cutoff*."""
        ...

    async def delete_commands_before(self, cutoff: str, limit: int) -> int:
        """Delete up to *limit* finished commands created before *cutoff*."""
        ...

    async def incremental_vacuum(self, pages: int) -> int:
        """Shrink the file by up to *pages* free pages."""
        ...

    async def auto_vacuum_mode(self) -> str:
        """``none``, ``full`` or ``incremental``."""
        ...


@attrs.frozen
class RetentionTuning:
    """The job's schedule and batch sizes (not config keys: the defaults suit every size)."""

    #: Seconds from start to the first pass (after the start-up burst of reconnects).
    first_pass_after: float = 60.0
    #: Seconds between passes.
    interval: float = 3600.0
    #: Rows per delete transaction: a few milliseconds of the writer each.
    batch_rows: int = 2000
    #: Seconds between two batches, so the pipeline's batches get the writer first.
    batch_pause: float = 0.01
    #: Pages per incremental-vacuum transaction.
    vacuum_pages: int = 1024


@attrs.frozen
class RetentionReport:
    """What one pass did."""

    cutoff: str  # events and commands older than this went
    session_cutoff: str  # completed sessions idle since before this went
    events: int
    sessions: int
    commands: int
    pages_freed: int
    seconds: float


@attrs.define
class _Progress:
    events: int = 0
    sessions: int = 0
    commands: int = 0
    pages_freed: int = 0


@attrs.define
class RetentionJob:
    """Deletes old rows on a schedule. Start with ``await nursery.start(job.run)``."""

    retention_days: int
    store: RetentionStore
    #: Drops deleted sessions from memory (:meth:`SessionTracker.forget`).
    forget_sessions: Callable[[Mapping[str, int]], object]
    now: Clock
    metrics: Metrics | None = None
    tuning: RetentionTuning = RetentionTuning()
    #: Passes finished (successful or not), for tests and health output.
    passes: int = attrs.field(default=0, init=False)
    last_report: RetentionReport | None = attrs.field(default=None, init=False)
    _vacuum_mode: str | None = attrs.field(default=None, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run a pass every ``tuning.interval`` seconds, the first ``tuning.first_pass_after`` after start.

        Cancellation: safe at any await; a batch is one transaction, committed or not.

        Error handling: a failing pass (store error, bug) is logged, counted as
        ``hal_o_swarm_retention_passes_total{outcome="failed"}`` and the schedule goes on.

        Resource handling: holds no resources between passes.
        """
        task_status.started()
        first = trio.current_time() + self.tuning.first_pass_after
        for k in itertools.count():
            # Drift-free: a slow pass delays only itself (a pass longer than the interval
            # is followed at once by the next one).
            await trio.sleep_until(first + k * self.tuning.interval)
            await self._guarded_pass()

    async def _guarded_pass(self) -> None:
        started = trio.current_time()
        progress = _Progress()
        try:
            report = await self._pass(progress)
        except Exception as exc:  # house rule 8: one bad pass must not stop the job
            seconds = trio.current_time() - started
            self._count_pass("failed", seconds)
            deleted = f"{progress.events} events, {progress.sessions} sessions, {progress.commands} commands"
            if isinstance(exc, StoreError):
                log.error("retention pass failed after deleting %s (next pass on schedule): %s", deleted, exc)
            else:
                log.exception("retention pass failed unexpectedly after deleting %s (next pass on schedule)", deleted)
        else:
            self.last_report = report
            self._count_pass("ok", report.seconds)
            log.info(
                "retention: deleted %d events, %d sessions, %d commands older than %s; freed %d pages in %.2f s",
                report.events,
                report.sessions,
                report.commands,
                report.cutoff,
                report.pages_freed,
                report.seconds,
                extra=ctx(
                    retention_days=self.retention_days,
                    cutoff=report.cutoff,
                    events=report.events,
                    sessions=report.sessions,
                    commands=report.commands,
                    pages_freed=report.pages_freed,
                    seconds=round(report.seconds, 3),
                ),
            )
        finally:
            self.passes += 1

    def _count_pass(self, outcome: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.retention_passes.labels(outcome).inc()
            self.metrics.retention_duration.observe(seconds)

    def _count_rows(self, table: str, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.retention_deleted.labels(table).inc(n)

    async def run_once(self) -> RetentionReport:
        """One pass now: delete in batches, then vacuum (not counted in :attr:`passes`).

        Raises:
            StoreError: a batch failed; the batches before it stay deleted.
        """
        return await self._pass(_Progress())

    async def _pass(self, p: _Progress) -> RetentionReport:
        started = trio.current_time()
        wall = self.now()
        cutoff = format_ts(wall - dt.timedelta(days=self.retention_days))
        session_cutoff = format_ts(wall - dt.timedelta(days=max(self.retention_days, SESSION_MIN_DAYS)))
        limit = self.tuning.batch_rows
        keep = await self.store.newest_event_ids()

        async def events() -> int:
            n = await self.store.delete_events_before(cutoff, keep, limit)
            p.events += n
            self._count_rows("events", n)
            return n

        async def sessions() -> int:
            deleted = await self.store.delete_sessions_before(session_cutoff, limit)
            if deleted:
                self.forget_sessions(deleted)
            p.sessions += len(deleted)
            self._count_rows("sessions", len(deleted))
            return len(deleted)

        async def commands() -> int:
            n = await self.store.delete_commands_before(cutoff, limit)
            p.commands += n
            self._count_rows("commands", n)
            return n

        for step in (events, sessions, commands):
            await self._in_batches(step, limit)
        if await self._vacuum_enabled():
            await self._vacuum(p)
        return RetentionReport(
            cutoff=cutoff,
            session_cutoff=session_cutoff,
            events=p.events,
            sessions=p.sessions,
            commands=p.commands,
            pages_freed=p.pages_freed,
            seconds=trio.current_time() - started,
        )

    async def _in_batches(self, batch: Callable[[], Awaitable[int]], limit: int) -> None:
        """Run *batch* until one deletes fewer than *limit* rows, pausing between batches."""
        while True:
            if await batch() < limit:
                return
            await trio.sleep(self.tuning.batch_pause)

    async def _vacuum(self, p: _Progress) -> None:
        pages = self.tuning.vacuum_pages
        while True:
            freed = await self.store.incremental_vacuum(pages)
            p.pages_freed += freed
            if self.metrics is not None and freed:
                self.metrics.retention_pages_freed.inc(freed)
            if freed < pages:
                return
            await trio.sleep(self.tuning.batch_pause)

    async def _vacuum_enabled(self) -> bool:
        """Read the database's auto_vacuum mode once; say once if the file cannot shrink."""
        if self._vacuum_mode is None:
            mode = await self.store.auto_vacuum_mode()
            if mode != "incremental":
                log.warning(
                    "database auto_vacuum is %s: retention frees pages for reuse but the file never shrinks; "
                    "run `hal-supervisor db migrate --vacuum` with the supervisor stopped to enable it "
                    "(docs/DATA.md)",
                    mode,
                )
            self._vacuum_mode = mode
        return self._vacuum_mode == "incremental"
