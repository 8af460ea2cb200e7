"""Event pipeline: persist agent batches, update the tracker, then acknowledge.

Batches from all connections queue on one bounded channel; the pipeline commits
whatever is waiting (up to ``max_events_per_txn``) in one transaction, so the cost of a
commit is shared by every node that sent something meanwhile. Acks go out only after
the commit: an acked event is on disk. A failed commit is retried (nothing is acked,
so agents keep their copies) until the store recovers.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.liveness import CallTimer
from halswarm.models import SUPERVISOR_NODE_ID
from halswarm.obs.logging import ctx
from halswarm.proto.messages import WireEvent
from halswarm.store import IngestBatch, Store, StoreError
from halswarm.sync import Signal
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from collections.abc import Sequence

    from halswarm.jsontypes import JSONObject
    from halswarm.obs.metrics import Metrics
    from halswarm.supervisor.tracker import SessionTracker

__all__ = ["SUPERVISOR_NODE_ID", "IngestJob", "Pipeline"]

log = logging.getLogger(__name__)

_RETRY_DELAY: Final = 1.0
_RETRY_DELAY_MAX: Final = 15.0
_OVERFLOW_MAX: Final = 10_000  # supervisor events kept aside while the queue is full


@attrs.frozen
class IngestJob:
    """A batch to persist; ``on_stored(last_seq)`` runs after the commit."""

    node_id: str
    events: list[WireEvent]
    on_stored: Callable[[int], None] | None = None
    #: ``trio.current_time()`` when the batch reached the pipeline (set by ``submit``):
    #: ``hal_o_swarm_ingest_lag_seconds`` measures from here to the commit.
    received: float | None = attrs.field(default=None, kw_only=True)


class Pipeline:
    """The single writer of events. Start with ``nursery.start(pipeline.run)``."""

    def __init__(
        self,
        store: Store,
        tracker: SessionTracker,
        metrics: Metrics,
        *,
        now: Clock,
        last_seqs: dict[str, int],
        queue_size: int = 256,
        max_events_per_txn: int = 20_000,
        max_queued_events: int = 20_000,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.metrics = metrics
        self.now = now
        self.max_events_per_txn = max_events_per_txn
        self._last_seq = dict(last_seqs)  # committed position per node
        self._send, self._receive = trio.open_memory_channel[IngestJob](queue_size)
        # Jobs are bounded by count, and their size by events too: with a stalled store
        # and many agents, 256 full batches alone would hold hundreds of MB.
        self.max_queued_events = max_queued_events
        self._queued_events = 0
        self._room = Signal()
        self._supervisor_seq = self._last_seq.get(SUPERVISOR_NODE_ID, 0)
        self._overflow: collections.deque[IngestJob] = collections.deque(maxlen=_OVERFLOW_MAX)
        self._idle = trio.Event()
        self._idle.set()
        self.stalled_since: float | None = None
        #: Times the commit attempt now running (none while waiting for work, or between
        #: retries): how the systemd watchdog tells a wedged pipeline from one whose store
        #: fails fast.
        self.attempt = CallTimer()
        self._watchers: dict[str, list[Callable[[], None]]] = {}
        self._commit_watchers: list[Callable[[Sequence[IngestBatch]], None]] = []

    def on_stored(self, event_type: str, callback: Callable[[], None]) -> None:
        """Call *callback* after every commit that stored events of *event_type*.

        It runs on the pipeline's task right after the commit, so what it reads from the
        store includes those events. It must not block or raise: set a flag, wake a task.
        """
        self._watchers.setdefault(event_type, []).append(callback)

    def on_committed(self, callback: Callable[[Sequence[IngestBatch]], None]) -> None:
        """Call *callback* with the new events of every commit (all types; duplicates already dropped).

        It runs on the pipeline's task right after the commit, once per transaction: it
        must not block or raise and should do O(1) work (hand the batches to a bounded
        channel; the event router does, issue #7).
        """
        self._commit_watchers.append(callback)

    def last_seq(self, node_id: str) -> int:
        """The last committed seq of a node: every event up to it is stored."""
        return self._last_seq.get(node_id, 0)

    async def submit(self, job: IngestJob) -> None:
        """Queue a batch (waits while the queue is full: backpressure to the agent)."""
        self._mark_busy()
        if job.received is None:
            job = attrs.evolve(job, received=trio.current_time())
        size = len(job.events)
        while True:
            room = self._room.waiter()
            if self._queued_events == 0 or self._queued_events + size <= self.max_queued_events:
                break
            await room.wait()
        self._queued_events += size
        try:
            await self._send.send(job)
        except BaseException:  # cancelled (connection closed): the job was not queued
            self._queued_events -= size
            self._room.fire()
            raise

    def emit(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> None:
        """Record an event raised by the supervisor itself (e.g. ``node.offline``).

        Never blocks: callers are the hub and the heartbeat monitor, which must not wait
        behind a congested store. The seq is assigned at commit, so no gaps appear. See
        :meth:`try_emit` for when an event is dropped.
        """
        self.try_emit(event_type, data, session_id=session_id, project=project)

    def try_emit(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> bool:
        """:meth:`emit`, saying whether the event was queued.

        Returns:
            True when the event is queued (on the channel, or set aside while it is
            full, to be committed with the next transaction); False when even the
            set-aside room is full: this event is dropped (and logged), so a caller that
            must not lose it (budget events) can raise it again later.
        """
        event = WireEvent(0, format_ts(self.now()), event_type, session_id, project, data)
        job = IngestJob(SUPERVISOR_NODE_ID, [event], received=trio.current_time())
        self._mark_busy()
        try:
            self._send.send_nowait(job)
        except trio.WouldBlock:
            if len(self._overflow) == self._overflow.maxlen:
                log.error("dropping a supervisor event: the event queue is congested", extra=ctx(type=event_type))
                return False
            self._overflow.append(job)  # committed with the next transaction
        return True

    def _mark_busy(self) -> None:
        """Work was queued: wait_idle() must wait for its commit."""
        if self._idle.is_set():
            self._idle = trio.Event()

    def congested(self) -> bool:
        """True while the store is failing or the queue is full (agents are waiting on us)."""
        stats = self._receive.statistics()
        return (
            self.stalled_since is not None
            or stats.current_buffer_used >= stats.max_buffer_size
            or self._queued_events >= self.max_queued_events
        )

    def attempt_stuck_for(self) -> float:
        """Seconds the commit attempt now running has taken (0 while none runs)."""
        return self.attempt.running_for()

    def queue_stats(self) -> JSONObject:
        """Channel statistics for readiness output."""
        stats = self._receive.statistics()
        return {
            "queued": stats.current_buffer_used,
            "capacity": stats.max_buffer_size,
            "queued_events": self._queued_events,
            "max_queued_events": self.max_queued_events,
        }

    async def wait_idle(self) -> None:
        """Return once every submitted job is committed."""
        await self._idle.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit queued batches until cancelled.

        Cancellation: a transaction either commits or not (SQLite atomicity); jobs that
        were not committed are not acknowledged, so agents resend them.
        Error handling: store failures are logged, counted and retried with backoff.
        """
        task_status.started()
        while True:
            jobs = [await self._receive.receive()]
            total = len(jobs[0].events)
            while total < self.max_events_per_txn:
                try:
                    job = self._receive.receive_nowait()
                except trio.WouldBlock:
                    break
                jobs.append(job)
                total += len(job.events)
            while self._overflow:
                jobs.append(self._overflow.popleft())
            await self._commit_with_retry(jobs)
            # Memory of these jobs is released now (not when taken from the channel).
            self._queued_events -= sum(len(j.events) for j in jobs if j.node_id != SUPERVISOR_NODE_ID)
            self._room.fire()
            if self._receive.statistics().current_buffer_used == 0:
                self._idle.set()

    async def _commit_with_retry(self, jobs: list[IngestJob]) -> None:
        delay = _RETRY_DELAY
        while True:
            try:
                with self.attempt.timing():
                    await self._commit(jobs)
            except StoreError as exc:
                self.metrics.ingest_errors.inc()
                if self.stalled_since is None:
                    self.stalled_since = trio.current_time()
                log.error(
                    "cannot store events, retrying in %.0fs (agents keep them until acked): %s",
                    delay,
                    exc,
                    extra=ctx(batches=len(jobs)),
                )
                await trio.sleep(delay)
                delay = min(delay * 2, _RETRY_DELAY_MAX)
                continue
            if self.stalled_since is not None:
                log.info("event storage recovered")
                self.stalled_since = None
            return

    async def _commit(self, jobs: list[IngestJob]) -> None:
        # Drop events already stored (a resend after reconnect) before touching SQL.
        positions = dict(self._last_seq)
        batches: list[IngestBatch] = []
        own_seq = self._supervisor_seq
        duplicates = 0
        for job in jobs:
            if job.node_id == SUPERVISOR_NODE_ID:
                numbered = []
                for ev in job.events:
                    own_seq += 1
                    numbered.append(attrs.evolve(ev, seq=own_seq))
                batches.append(IngestBatch(SUPERVISOR_NODE_ID, numbered))
                continue
            start = positions.get(job.node_id, 0)
            fresh = job.events if job.events[0].seq > start else [e for e in job.events if e.seq > start]
            duplicates += len(job.events) - len(fresh)
            if fresh:
                if fresh[0].seq > start + 1 and start > 0:
                    log.warning(
                        "gap in event seqs: events were lost before reaching us",
                        extra=ctx(node_id=job.node_id, after=start, next=fresh[0].seq),
                    )
                batches.append(IngestBatch(job.node_id, fresh))
                positions[job.node_id] = fresh[-1].seq
        if batches:
            began = trio.current_time()
            summary = await self.store.ingest(batches, format_ts(self.now()))
            committed = trio.current_time()
            self.metrics.observe_store_write("ingest", committed - began)
            self.metrics.ingest_batches.inc()
            # The store made the one pass over the events; here it is per session.
            apply, touch = self.tracker.apply, self.tracker.touch
            for seq, state in summary.states.values():
                apply(seq, state)
            for session_id, ts in summary.activity.items():
                touch(session_id, ts)
            self.metrics.count_events(summary.types)
            for event_type, callbacks in self._watchers.items():
                if summary.types[event_type]:
                    for callback in callbacks:
                        callback()
            for watcher in self._commit_watchers:
                watcher(batches)
        self._last_seq = positions
        self._supervisor_seq = own_seq
        if duplicates:
            self.metrics.duplicates_dropped.inc(duplicates)
        done = trio.current_time()
        for job in jobs:
            if job.received is not None:
                self.metrics.ingest_lag.observe(done - job.received)
            if job.on_stored is not None:
                job.on_stored(job.events[-1].seq)
        if any(job.node_id == SUPERVISOR_NODE_ID for job in jobs):
            self._last_seq[SUPERVISOR_NODE_ID] = own_seq
