"""The router in the supervisor: committed events in, deliveries out to Discord, webhooks and Slack (issue #7).

::

    RouterService.run                          core nursery (only when ``routes`` is set)
    ├─ routing loop                            owns the Router; events from the pipeline's
    │                                          commit hook, plus a re-check tick
    └─ one sender task per target              bounded queue each: a slow target delays only itself

**Input.** :meth:`RouterService.committed` is the pipeline's commit hook
(:meth:`~halswarm.supervisor.pipeline.Pipeline.on_committed`): it hands the committed
batches to a bounded channel with ``send_nowait`` and returns. When the channel is full
the batch is dropped, counted (``hal_o_swarm_route_events_dropped_total``) and logged:
ingest never waits for routing.

**Tick.** Every ``tick_seconds`` (``policies.tick_seconds``) the loop reads today's spend
(``cost.daily``, ``cost.project_daily``) and re-routes each session's latest event with a
fresh context, so time-based conditions (``session.idle && idle_for > 5m``,
``cost.daily > 20``) fire while nothing happens. Only the routes whose match reads a
time-dependent value (``idle_for``, ``cost.daily``, ``cost.project_daily``) are
re-routed. The routes that already fired for a session's latest event are remembered
next to it in ``_latest`` (not in the router's bounded memory of event ids), so an
event route fires at most once per event however many sessions are tracked.

**Output.** Each delivery goes to its target's bounded queue; a full queue drops the
delivery (``outcome="dropped"``). ``discord#<name>`` awaits the injected
:class:`PostDiscord` (provided by the Discord service); without one, the delivery is
counted ``unavailable`` and logged ("discord not configured").

**Reload.** :meth:`RouterService.plan` compiles new ``routes``, ``channels.webhooks`` and
``channels.slack`` (a SIGHUP, :mod:`halswarm.supervisor.reload`); :meth:`RouterService.apply`
swaps them in without an await, so no event is routed half by the old rules and half by
the new. Unchanged routes keep their throttle windows and condition states
(:meth:`Router.replaced_by`); a target that is still named keeps its queue (its sender
picks up a changed URL or secret with the next delivery); a target no longer named has
its queue dropped (logged with the count) and its sender task cancelled. With no routes
at all the service stays idle: commits are not queued and the tick does nothing.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import httpx
import trio

from halswarm.channels.fields import RouteContext
from halswarm.channels.router import Delivery, Route, Router
from halswarm.channels.senders import RetryTuning, SlackSender, WebhookSender
from halswarm.config.routing import SlackWebhookConfig, WebhookConfig
from halswarm.models import Event
from halswarm.obs.logging import ctx
from halswarm.schedule import Ticks
from halswarm.store import IngestBatch
from halswarm.sync import Signal
from halswarm.timeutil import parse_ts

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from halswarm.channels.senders import Outcome, Sender
    from halswarm.channels.targets import Target
    from halswarm.config.routing import RouteConfig
    from halswarm.cost.budgets import TodaySpend
    from halswarm.models import Session
    from halswarm.obs.metrics import Metrics
    from halswarm.timeutil import Clock

__all__ = ["PostDiscord", "RouterPlan", "RouterService", "RouterTuning", "SessionLookup", "SpendReader"]

log = logging.getLogger(__name__)

#: Sessions whose latest event the tick re-routes, at most (least recently active dropped first).
_MAX_TRACKED_SESSIONS: Final = 10_000


class PostDiscord(Protocol):
    """Posts a routed event as an alert in a Discord channel, by its name in ``channels.discord.channels``.

    The Discord service provides it (rendering the event as an embed with buttons, then
    its ``post_alert``). It runs on the ``discord#<name>`` target's own sender task, so
    it may take its time (within its own deadlines); it returns False when the alert
    was not posted and should not raise (a raise is logged and counted as a failure).
    ``event.id`` is the router's own number; ``(event.node_id, event.seq)`` identifies
    the stored event.
    """

    async def __call__(self, channel_name: str, event: Event) -> bool:
        """Post an alert about *event*; True once posted."""
        ...


class SessionLookup(Protocol):
    """The tracker's view of a session (:meth:`~halswarm.supervisor.tracker.SessionTracker.get`)."""

    def __call__(self, session_id: str) -> Session | None:
        """The tracked session, or None."""


class SpendReader(Protocol):
    """Reads today's spend as the daily budgets measure it (None: no figure yet); may raise."""

    def __call__(self, day: dt.date) -> Awaitable[TodaySpend | None]:
        """The spend of UTC *day*."""


@attrs.frozen
class RouterPlan:
    """New routing config, compiled and checked: :meth:`RouterService.apply` cannot fail on it."""

    routes: tuple[Route, ...]
    webhooks: Mapping[str, WebhookConfig]
    slack: Mapping[str, SlackWebhookConfig]
    tick_seconds: float


@attrs.frozen
class RouterTuning:
    """Queue sizes and timings of the router service."""

    #: Re-check interval (seconds; ``policies.tick_seconds``).
    tick_seconds: float = 30.0
    #: Committed transactions waiting to be routed.
    event_queue_size: int = 256
    #: Deliveries waiting per target.
    delivery_queue_size: int = 64
    #: Deadline of reading today's spend on a tick.
    spend_timeout_sec: float = 10.0
    retry: RetryTuning = attrs.Factory(RetryTuning)


class _Queue:
    """One target's bounded queue, fed by the routing loop and drained by its sender task.

    When full, the *oldest* waiting delivery makes room for the new one: during a flood
    the latest state of things is what an operator needs to see (a memory channel could
    only refuse the newest).
    """

    def __init__(self, target: Target, capacity: int) -> None:
        self.target = target
        self.capacity = max(1, capacity)
        #: Deliveries with the text of the route that made each (looked up when queued:
        #: a reload may renumber the routes before it is sent).
        self._items: collections.deque[tuple[Delivery, str]] = collections.deque()
        self._wake = trio.Event()
        #: The sender task's scope: cancelled when a reload stops naming the target.
        self.scope = trio.CancelScope()
        #: A sender task was started for this queue.
        self.draining = False
        #: Inside a drop episode (logged once per episode, not per drop).
        self.dropping = False
        #: Outcome of the last delivery attempt (None before the first).
        self.last_outcome: Outcome | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, delivery: Delivery, route_text: str) -> Delivery | None:
        """Queue *delivery*; returns the oldest delivery dropped to make room, if any."""
        dropped = self._items.popleft()[0] if len(self._items) >= self.capacity else None
        self._items.append((delivery, route_text))
        self._wake.set()
        return dropped

    async def get(self) -> tuple[Delivery, str]:
        """The oldest waiting delivery (waits for one). One consumer only."""
        while not self._items:
            self._wake = trio.Event()
            await self._wake.wait()
        return self._items.popleft()


class _DiscordSender:
    """``discord#<name>``: hands the event to the Discord service."""

    def __init__(self, name: str, post: PostDiscord | None) -> None:
        self.name = name
        self.post = post

    async def send(self, delivery: Delivery, route_text: str) -> Outcome:
        del route_text
        if self.post is None:  # counted as "unavailable" before it gets here
            return "failed"
        try:
            posted = await self.post(self.name, delivery.event)
        except Exception:
            log.exception("discord alert failed", extra=ctx(target=f"discord#{self.name}"))
            return "failed"
        return "delivered" if posted else "failed"


class RouterService:
    """Routes committed events to their targets. Start with ``nursery.start(service.run)``.

    Args:
        routes: config ``routes`` (already checked at load).
        webhooks: config ``channels.webhooks``.
        slack: config ``channels.slack``.
        post_discord: the Discord service's alert method; None while Discord is not
            configured (``discord#`` deliveries are then counted ``unavailable``).
        sessions: looks up a tracked session.
        spend: reads today's spend; None: cost conditions stay null.
        metrics: the supervisor's metrics.
        now: the wall clock (idle durations, signatures, the cost day).
        tuning: queue sizes and the tick.
        client: an httpx client to use (tests); by default one is opened in :meth:`run`.
    """

    def __init__(
        self,
        routes: Sequence[RouteConfig],
        *,
        webhooks: Mapping[str, WebhookConfig],
        slack: Mapping[str, SlackWebhookConfig],
        post_discord: PostDiscord | None,
        sessions: SessionLookup,
        spend: SpendReader | None,
        metrics: Metrics,
        now: Clock,
        tuning: RouterTuning = RouterTuning(),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.router = Router.from_config(routes)
        self.webhooks = dict(webhooks)
        self.slack = dict(slack)
        self.post_discord = post_discord
        self.sessions = sessions
        self.spend = spend
        self.metrics = metrics
        self.now = now
        self.tuning = tuning
        self._client = client
        self._events_send, self._events_receive = trio.open_memory_channel[Sequence[IngestBatch]](
            tuning.event_queue_size
        )
        self._queues: dict[Target, _Queue] = {}
        self._add_queues()
        #: Target -> its sender, built in :meth:`run` (and again by :meth:`apply`).
        self._senders: dict[Target, Sender] = {}
        self._http: httpx.AsyncClient | None = None
        #: Fired when queues without a sender task were added.
        self._new_queues = Signal()
        self._ids = itertools.count(1)
        #: Session id -> its latest event (re-routed on each tick) and the indexes of the
        #: event routes that already fired for it; least recently active first.
        self._latest: dict[str, tuple[Event, set[int]]] = {}
        self._spend: TodaySpend | None = None
        self._spend_day: str | None = None
        self._dropping_events = False
        #: Completed ticks (tests wait on it).
        self.ticks = 0
        #: Events routed (tests wait on it).
        self.routed = 0

    @property
    def active(self) -> bool:
        """True while at least one route is configured (otherwise the service idles)."""
        return bool(self.router.routes)

    # ---- input ------------------------------------------------------------------------------

    def committed(self, batches: Sequence[IngestBatch]) -> None:
        """The pipeline committed *batches*: queue them for routing. Never blocks (a pipeline hook)."""
        if not self.router.routes:
            return  # nothing would fire: no routing work per commit while routing is unused
        try:
            self._events_send.send_nowait(batches)
        except trio.WouldBlock:
            dropped = sum(len(b.events) for b in batches)
            self.metrics.route_events_dropped.inc(dropped)
            if not self._dropping_events:  # once per congestion episode, not per batch
                self._dropping_events = True
                log.warning("router congested: dropping committed events unrouted", extra=ctx(events=dropped))
        else:
            if self._dropping_events:
                self._dropping_events = False
                log.info("router caught up; routing events again")

    def queue_stats(self) -> dict[str, int]:
        """Sizes and peaks of the router's queues, for health output."""
        stats = {}
        events = self._events_receive.statistics()
        stats["events"] = events.current_buffer_used
        for target, queue in self._queues.items():
            stats[str(target)] = len(queue)
        return stats

    def health(self) -> str:
        """``ok``, or ``degraded: <why>``: congested, a target's queue overflowing, or its deliveries failing."""
        problems = []
        if self._dropping_events:
            problems.append("congested, committed events dropped unrouted")
        full = [str(q.target) for q in self._queues.values() if q.dropping and len(q) >= q.capacity]
        if full:
            problems.append(f"queue full (oldest deliveries dropped): {', '.join(full)}")
        failing = [str(q.target) for q in self._queues.values() if q.last_outcome == "failed"]
        if failing:
            problems.append(f"last delivery failed: {', '.join(failing)}")
        return f"degraded: {'; '.join(problems)}" if problems else "ok"

    # ---- reload -----------------------------------------------------------------------------

    def plan(
        self,
        routes: Sequence[RouteConfig],
        *,
        webhooks: Mapping[str, WebhookConfig],
        slack: Mapping[str, SlackWebhookConfig],
        tick_seconds: float,
    ) -> RouterPlan:
        """Compile a new routing config for :meth:`apply`; changes nothing.

        Raises:
            RouteError: a route does not compile (``check_routing`` reports these at load).
        """
        compiled = Router.from_config(routes).routes
        return RouterPlan(compiled, dict(webhooks), dict(slack), tick_seconds)

    def apply(self, plan: RouterPlan) -> None:
        """Route with *plan* from now on (see the module doc, "Reload"). Synchronous: atomic for trio.

        The next event is routed by the new rules; a new tick interval starts after the
        tick that is due.
        """
        router, kept = self.router.replaced_by(plan.routes)
        for _event, fired in self._latest.values():
            renumbered = {kept[i] for i in fired if i in kept}
            fired.clear()
            fired.update(renumbered)
        if not router.routes:
            self._latest.clear()  # nothing to re-check; stale entries would outlive their sessions
        self.router = router
        self.webhooks, self.slack = dict(plan.webhooks), dict(plan.slack)
        self.tuning = attrs.evolve(self.tuning, tick_seconds=plan.tick_seconds)
        named = {route.target for route in router.routes}
        for target in [t for t in self._queues if t not in named]:
            queue = self._queues.pop(target)
            queue.scope.cancel()
            self._senders.pop(target, None)
            if len(queue):
                log.warning(
                    "route target removed by a reload: its waiting deliveries are dropped",
                    extra=ctx(target=str(target), dropped=len(queue)),
                )
        self._add_queues()
        if self._http is not None:
            self._senders = {t: self._sender_for(t, self._http) for t in self._queues}
        self._new_queues.fire()

    def _add_queues(self) -> None:
        for route in self.router.routes:
            if route.target not in self._queues:
                self._queues[route.target] = _Queue(route.target, self.tuning.delivery_queue_size)

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start one sender task per target, then route events and tick until cancelled.

        Cancellation: safe at any await; queued deliveries are lost (events stay stored).
        Resource handling: the httpx client (unless injected) is closed on exit.
        Error handling: a failing routing pass, spend read or delivery is logged; the
        service keeps going.
        """
        async with trio.open_nursery() as nursery:
            client = self._client
            if client is None:
                client = httpx.AsyncClient(follow_redirects=False)
            try:
                self._http = client
                self._senders = {t: self._sender_for(t, client) for t in self._queues}
                nursery.start_soon(self._start_drains, nursery)
                task_status.started()
                if self.router.routes:
                    log.info(
                        "router ready",
                        extra=ctx(routes=len(self.router.routes), targets=[str(t) for t in self._queues]),
                    )
                await self._loop()
            finally:
                self._http = None
                if self._client is None:
                    with trio.move_on_after(1, shield=True):
                        await client.aclose()

    async def _start_drains(self, nursery: trio.Nursery) -> None:
        """Start a sender task for every queue that has none (at start, and after a reload)."""
        while True:
            added = self._new_queues.waiter()
            for queue in self._queues.values():
                if not queue.draining:
                    queue.draining = True
                    nursery.start_soon(self._drain, queue)
            await added.wait()

    async def _loop(self) -> None:
        ticks = Ticks(self.tuning.tick_seconds)
        next_tick = ticks.start  # the first tick at once
        while True:
            with trio.move_on_at(next_tick):
                batches = await self._events_receive.receive()
                self._route_batches(batches)
                continue
            await self._tick()
            # A reload may have changed tick_seconds: a new schedule starts from here.
            next_tick = ticks.advance(self.tuning.tick_seconds)

    def _route_batches(self, batches: Sequence[IngestBatch]) -> None:
        for batch in batches:
            for wire in batch.events:
                event = Event(
                    next(self._ids),
                    batch.node_id,
                    wire.seq,
                    wire.ts,
                    wire.type,
                    wire.session_id,
                    wire.project,
                    wire.data,
                )
                fired: set[int] = set()
                if event.session_id is not None:
                    self._latest.pop(event.session_id, None)
                    self._latest[event.session_id] = (event, fired)
                    if len(self._latest) > _MAX_TRACKED_SESSIONS:
                        del self._latest[next(iter(self._latest))]
                self._route(event, fired)

    def _route(self, event: Event, fired: set[int], *, tick: bool = False) -> None:
        session = self.sessions(event.session_id) if event.session_id is not None else None
        wall = self.now()
        context = RouteContext.of_session(
            session,
            idle_for=_idle_for(session, event, wall),
            cost_daily=self._spend.fleet if self._spend is not None else None,
            cost_project_daily=self._project_spend(event.project),
            day=self._spend_day,
        )
        try:
            deliveries = self.router.route(
                event,
                context,
                trio.current_time(),
                only=self.router.time_dependent if tick else None,
                fired=fired,
            )
        except Exception:  # a bug must not stop routing of the next event
            log.exception("routing failed", extra=ctx(type=event.type, node_id=event.node_id, seq=event.seq))
            return
        self.routed += 1
        for delivery in deliveries:
            self._enqueue(delivery)

    def _project_spend(self, project: str | None) -> Decimal | None:
        if self._spend is None or project is None:
            return None
        return self._spend.projects.get(project, Decimal(0))

    async def _tick(self) -> None:
        if not self.router.routes:
            self.ticks += 1
            return  # idle: no spend to read, nothing to re-check
        wall = self.now()
        today = wall.astimezone(dt.UTC).date()
        if self.spend is not None:
            try:
                with trio.fail_after(self.tuning.spend_timeout_sec):
                    self._spend = await self.spend(today)
                self._spend_day = today.isoformat()
            except Exception as exc:  # keep the last figures; the next tick tries again
                log.warning("router: cannot read today's spend: %s", exc)
        recheck = bool(self.router.time_dependent)
        for session_id, (event, fired) in list(self._latest.items()):
            if self.sessions(session_id) is None:  # deleted or forgotten: nothing to re-check
                del self._latest[session_id]
                continue
            if recheck:
                self._route(event, fired, tick=True)
        self.ticks += 1

    # ---- output -----------------------------------------------------------------------------

    def _enqueue(self, delivery: Delivery) -> None:
        queue = self._queues[delivery.target]
        label = str(delivery.target)
        if delivery.target.kind == "discord" and self.post_discord is None:
            self.metrics.route_deliveries.labels(label, "unavailable").inc()
            log.warning("discord not configured: alert not sent", extra=ctx(target=label, type=delivery.event.type))
            return
        dropped = queue.put(delivery, self.router.routes[delivery.route_index].text)
        if dropped is None:
            queue.dropping = False
            return
        self.metrics.route_deliveries.labels(label, "dropped").inc()
        if not queue.dropping:
            queue.dropping = True
            log.warning(
                "target queue full: dropping the oldest deliveries until it drains",
                extra=ctx(target=label, dropped_type=dropped.event.type),
            )

    def _sender_for(self, target: Target, client: httpx.AsyncClient) -> Sender:
        match target.kind:
            case "webhook":
                return WebhookSender(target.name, self.webhooks[target.name], client, self.now, self.tuning.retry)
            case "slack":
                return SlackSender(target.name, self.slack[target.name], client, self.tuning.retry)
            case "discord":
                return _DiscordSender(target.name, self.post_discord)

    async def _drain(self, queue: _Queue) -> None:
        """One target's sender task: deliver its queue in order, one at a time.

        Cancellation: a reload that stops naming the target cancels ``queue.scope``
        (a delivery in flight is abandoned).
        """
        label = str(queue.target)
        with queue.scope:
            while True:
                delivery, route_text = await queue.get()
                sender = self._senders.get(queue.target)
                if sender is None:
                    return  # removed by a reload while this task was waking up
                outcome: Outcome
                try:
                    outcome = await sender.send(delivery, route_text)
                except Exception:  # a sender bug: this delivery fails, the target keeps working
                    log.exception("delivery crashed", extra=ctx(target=label))
                    outcome = "failed"
                self.metrics.route_deliveries.labels(label, outcome).inc()
                queue.last_outcome = outcome


def _idle_for(session: Session | None, event: Event, wall: dt.datetime) -> float | None:
    """Seconds *session* has been idle: since its last activity (or the event), None unless idle."""
    if session is None or session.status != "idle":
        return None
    since = session.last_activity or event.ts
    try:
        start = parse_ts(since)
    except ValueError:
        return None
    return max(0.0, (wall - start).total_seconds())
