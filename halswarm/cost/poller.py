"""The cost poller: provider admin APIs, opencode estimates and budgets, on schedules (issue 5).

::

    CostPoller.run
    └─ nursery (owned by run)
       ├─ one poll loop per CostSource     every cost.poll_interval_minutes
       └─ estimate loop                    every cost.estimate_interval_seconds:
                                           book session cost growth, then check budgets

**Poll windows.** A provider with no stored successful poll is backfilled
``cost.backfill_days`` days (today included). Later polls re-fetch from
``cost.repoll_days - 1`` days before the last successful poll's day (provider data settles
late; after a long outage this also fills the gap), never more than the backfill
window. Each fetched range replaces that provider's rows in one transaction, so polling
the same period twice changes nothing.

**Failures.** One provider failing (after its own retries), timing out (a poll may take
at most one poll interval) or its rows failing to store never stops the other provider,
the estimates or the supervisor: earlier data stays, the provider's status says
``error`` with the reason, ``/readyz`` shows ``cost`` as degraded, and the log says what
failed and when the next try is. Timing comes from trio's clock; persisted and reported
times from the injected wall clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from halswarm.cost.budgets import Notified, budget_scopes, decide, today_spend
from halswarm.cost.estimates import EstimateBook
from halswarm.cost.model import CostBucket, ProviderError, SourceStatus
from halswarm.obs.logging import ctx
from halswarm.store import StoreError
from halswarm.store.cost_sql import POLL_KEY_PREFIX
from halswarm.timeutil import Clock, format_ts, parse_ts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from halswarm.config.supervisor import BudgetsConfig, CostConfig
    from halswarm.cost.model import CostSource
    from halswarm.cost.storage import CostStore
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Session
    from halswarm.obs.metrics import Metrics

__all__ = ["BUDGET_KEY_PREFIX", "CostPoller", "Emit", "poll_window"]

log = logging.getLogger(__name__)

#: ``cost_state`` key prefix of each budget scope's notifications.
BUDGET_KEY_PREFIX = "budget:"


class Emit(Protocol):
    """Raises a supervisor event (``Pipeline.emit``)."""

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> None: ...


def poll_window(
    today: dt.date, last_success: dt.date | None, *, backfill_days: int, repoll_days: int
) -> tuple[dt.date, dt.date]:
    """The days to fetch, as ``(start, end)`` with ``end`` exclusive (tomorrow).

    Args:
        today: the current UTC day.
        last_success: the UTC day of the provider's last successful poll (None: never).
        backfill_days: days fetched when nothing is stored yet (today included).
        repoll_days: trailing days re-fetched on later polls (today included).
    """
    end = today + dt.timedelta(days=1)
    earliest = today - dt.timedelta(days=backfill_days - 1)
    if last_success is None:
        return earliest, end
    start = min(today, last_success) - dt.timedelta(days=repoll_days - 1)
    return max(earliest, start), end


@attrs.define
class _SourceState:
    last_success: str | None = None
    last_error: str | None = None
    failing_since: str | None = None
    next_try: str | None = None

    def status(self, provider: str) -> SourceStatus:
        if self.last_error is not None:
            return SourceStatus(provider, "error", self.last_success, self.last_error)
        if self.last_success is not None:
            return SourceStatus(provider, "ok", self.last_success)
        return SourceStatus(provider, "pending")


def _day_of(stamp: str | None) -> dt.date | None:
    if stamp is None:
        return None
    try:
        return parse_ts(stamp).date()
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f}s"


@attrs.define
class _Ticks:
    """A drift-free schedule ``start + k * interval`` (trio's clock).

    A step that overruns skips the ticks it missed; one that ends exactly on a tick (a
    poll that used its whole deadline) runs again at once.
    """

    interval: float
    start: float = attrs.field(factory=trio.current_time)
    k: int = 0

    def next_at(self) -> float:
        """The tick the schedule would move to now."""
        elapsed = trio.current_time() - self.start
        due = math.ceil(elapsed / self.interval - 1e-9)
        return self.start + max(self.k + 1, due) * self.interval

    def advance(self) -> float:
        """Move to the next tick; returns its time."""
        at = self.next_at()
        self.k = round((at - self.start) / self.interval)
        return at


class CostPoller:
    """Polls cost sources, books estimates and checks budgets. Start with ``nursery.start(poller.run)``."""

    def __init__(
        self,
        config: CostConfig,
        budgets: BudgetsConfig,
        sources: Sequence[CostSource],
        store: CostStore,
        *,
        sessions: Callable[[], Iterable[Session]],
        emit: Emit,
        now: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"cost sources must have distinct names, got {names}")
        self.config = config
        self.budgets = budgets
        self.sources = list(sources)
        self.store = store
        self.sessions = sessions
        self.emit = emit
        self.now = now
        self.metrics = metrics
        #: Providers whose own data is authoritative for totals (the totals rule).
        self.polled: frozenset[str] = frozenset(names)
        self._states = {name: _SourceState() for name in names}
        self._notified: dict[str, Notified] = {}
        self._book: EstimateBook | None = None
        #: How many estimate ticks (estimates + budgets) have completed; for tests and health.
        self.estimate_ticks = 0

    # ---- views --------------------------------------------------------------------------

    def today(self) -> dt.date:
        """The current UTC day, from the injected wall clock."""
        return self.now().astimezone(dt.UTC).date()

    def source_statuses(self) -> list[SourceStatus]:
        """How the last poll of each provider went (in configuration order)."""
        return [self._states[s.name].status(s.name) for s in self.sources]

    def readiness(self) -> str:
        """``ok``, or ``degraded: ...`` naming each failing provider and why."""
        failing = [
            f"{name} poll failing since {st.failing_since}: {st.last_error} (next try at {st.next_try})"
            for name, st in self._states.items()
            if st.last_error is not None
        ]
        return "ok" if not failing else "degraded: " + "; ".join(failing)

    # ---- the component ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load persisted state, then poll, book estimates and check budgets forever.

        Raises:
            StoreError: the persisted state cannot be read at start.

        Cancellation: safe at any await; every store write is one transaction that
        either commits or not, and memory follows only committed writes.
        Resource handling: the loops live in a nursery owned by this call.
        Error handling: provider, timeout and store failures are logged and retried on
        the next tick; they never propagate.
        """
        await self.load()
        task_status.started()
        log.info(
            "cost tracking started",
            extra=ctx(
                providers=sorted(self.polled),
                poll_interval_minutes=self.config.poll_interval_minutes,
                estimate_interval_seconds=self.config.estimate_interval_seconds,
                budgets=len(budget_scopes(self.budgets)),
            ),
        )
        async with trio.open_nursery() as nursery:
            for source in self.sources:
                nursery.start_soon(self._poll_loop, source)
            nursery.start_soon(self._estimate_loop)

    async def load(self) -> None:
        """Read what earlier runs persisted: last polls, budget notices, booked estimates.

        Raises:
            StoreError: the database cannot be read.
        """
        polls = await self.store.cost_state(POLL_KEY_PREFIX)
        for name, state in self._states.items():
            state.last_success = polls.get(POLL_KEY_PREFIX + name)
        for key, value in (await self.store.cost_state(BUDGET_KEY_PREFIX)).items():
            notified = Notified.decode(value)
            if notified is not None:
                self._notified[key.removeprefix(BUDGET_KEY_PREFIX)] = notified
        self._book = await EstimateBook.load(self.store)

    @property
    def _poll_interval(self) -> float:
        return self.config.poll_interval_minutes * 60.0

    async def _poll_loop(self, source: CostSource) -> None:
        ticks = _Ticks(self._poll_interval)
        while True:
            await self.poll_once(source, ticks=ticks)
            await trio.sleep_until(ticks.advance())

    async def _estimate_loop(self) -> None:
        ticks = _Ticks(self.config.estimate_interval_seconds)
        while True:
            await self.estimate_once()
            await trio.sleep_until(ticks.advance())

    async def poll_once(self, source: CostSource, *, ticks: _Ticks | None = None) -> bool:
        """Fetch one provider's window and store it; returns True on success.

        Failures are recorded (status, readiness, log, metrics), never raised. *ticks*
        is the loop's schedule, to tell when the next try is (default: one interval).
        """
        name = source.name
        state = self._states[name]
        today = self.today()
        start, end = poll_window(
            today,
            _day_of(state.last_success),
            backfill_days=self.config.backfill_days,
            repoll_days=self.config.repoll_days,
        )
        kind = "repoll" if state.last_success is not None else "backfill"
        error: str | None = None
        buckets: list[CostBucket] = []
        with trio.move_on_after(self._poll_interval) as scope:
            try:
                buckets = await source.fetch(start, end)
            except ProviderError as exc:
                error = str(exc)
            except Exception as exc:  # a bug in one source must not stop the others
                log.exception("cost source %s raised an unexpected error", name)
                error = f"unexpected error: {type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"no answer within {_duration(self._poll_interval)}"
        if error is None:
            kept = [b for b in buckets if b.provider == name and b.source == "provider" and start <= b.day < end]
            if len(kept) != len(buckets):
                log.warning(
                    "cost source %s returned %d buckets outside %s..%s or not its own; ignored them",
                    name,
                    len(buckets) - len(kept),
                    start,
                    end,
                )
            stamp = format_ts(self.now())
            try:
                rows = await self.store.replace_provider_costs(name, start, end, kept, stamp)
            except StoreError as exc:
                error = f"could not store its data: {exc}"
            else:
                if state.last_error is not None:
                    log.info("cost poll of %s recovered", name, extra=ctx(provider=name))
                state.last_success, state.last_error, state.failing_since, state.next_try = stamp, None, None, None
                log.info(
                    "polled %s costs (%s %s..%s): %d daily rows",
                    name,
                    kind,
                    start,
                    end - dt.timedelta(days=1),
                    rows,
                    extra=ctx(provider=name, start=start.isoformat(), end=end.isoformat(), rows=rows),
                )
                self._count_poll(name, "ok")
                return True
        wait = float(round(self._poll_interval if ticks is None else max(0.0, ticks.next_at() - trio.current_time())))
        next_try = format_ts(self.now() + dt.timedelta(seconds=wait))
        if state.failing_since is None:
            state.failing_since = format_ts(self.now())
        state.last_error, state.next_try = error, next_try
        log.error(
            "cost poll of %s failed: %s; its earlier data is kept; next try in %s (at %s)",
            name,
            error,
            _duration(wait),
            next_try,
            extra=ctx(provider=name, start=start.isoformat(), end=end.isoformat(), next_try=next_try),
        )
        self._count_poll(name, "error")
        return False

    async def estimate_once(self) -> None:
        """Book opencode's session cost growth, then check today's budgets.

        Store failures are logged (the database component of ``/readyz`` shows them)
        and retried on the next tick.
        """
        assert self._book is not None, "run() loads the estimate book first"
        today = self.today()
        stamp = format_ts(self.now())
        try:
            await self._book.step(self.sessions(), today, stamp)
        except StoreError as exc:
            log.error("could not book cost estimates (retried next tick): %s", exc)
        try:
            await self._check_budgets(today, stamp)
        except StoreError as exc:
            log.error("could not check budgets (retried next tick): %s", exc)
        self.estimate_ticks += 1

    async def _check_budgets(self, today: dt.date, stamp: str) -> None:
        spend = today_spend(await self.store.cost_buckets(today, today), self.polled)
        decision = decide(self.budgets, spend, today, self._notified)
        if decision.notified:
            # Persist first: a crash after this loses at most the in-flight event, while
            # the other order would raise it again after every restart.
            await self.store.put_cost_state(
                {BUDGET_KEY_PREFIX + key: n.encode() for key, n in decision.notified.items()}, stamp
            )
            self._notified.update(decision.notified)
        for notice in decision.notices:
            data = notice.data()
            log.warning(
                "budget %s for %s: $%s of $%s today (%s%%)",
                "exceeded" if notice.level == "exceeded" else "warning",
                notice.scope.label,
                data["spent_usd"],
                data["limit_usd"],
                data["percent"],
                extra=ctx(scope=notice.scope.label, day=today.isoformat()),
            )
            self.emit(notice.event_type, data, project=notice.scope.project)
        if self.metrics is not None:
            for provider in self.polled | set(spend.providers):
                self.metrics.cost_today_usd.labels(provider).set(float(spend.providers.get(provider, 0)))
            for scope in budget_scopes(self.budgets):
                used = spend.of(scope) * 100 / scope.limit_usd
                self.metrics.cost_budget_used_percent.labels(scope.label).set(float(used))

    def _count_poll(self, provider: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.cost_polls.labels(provider, outcome).inc()
