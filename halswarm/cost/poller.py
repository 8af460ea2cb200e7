"""The cost poller: provider admin APIs, opencode estimates and budgets, on schedules (issue 5).

::

    CostPoller.run
    └─ nursery (owned by run)
       ├─ one poll loop per CostSource     every cost.poll_interval_minutes
       └─ estimate loop                    every cost.estimate_interval_seconds:
                                           book session cost growth, then check budgets

**Poll windows.** A provider with no stored coverage is backfilled
``cost.backfill_days`` days (today included). Later polls re-fetch from
``cost.repoll_days - 1`` days before the last covered day (provider data settles late;
after an outage this also fills the whole gap, so coverage stays one contiguous span).
A window is fetched and stored in parts of :data:`PART_DAYS` days, oldest first; each
part replaces that provider's rows of its days in one transaction and extends the
provider's coverage, so polling the same period twice changes nothing and a long
backfill that is interrupted resumes where it stopped.

**Coverage** (:class:`~halswarm.cost.model.Coverage`): the days a provider's stored rows
are the bill for, persisted as ``coverage:<provider>``; the totals rule and budgets
count the provider's rows only there and opencode's estimates everywhere else.

**Failures.** One provider failing (after its own retries), timing out (each part of a
poll may take at most :attr:`CostPoller.poll_timeout`: the poll interval, but at least
10 minutes) or its rows failing to store never stops the other provider, the estimates
or the supervisor: earlier data stays, the provider's status says ``error`` with the
reason (secrets redacted), ``/readyz`` shows ``cost`` as degraded, and the log says what
failed and when the next try is. Every step of the estimate loop (pruning, booking,
budgets) is isolated the same way: an error is logged with its traceback and the loop
goes on (house rule 8). Timing comes from trio's clock; persisted and reported times
from the injected wall clock.

**Budget events** are recorded as sent only once the event pipeline has queued them
(an event it could not queue is raised again on the next check); the record is then
persisted, so a restart does not raise them again. A crash between the two may raise
one event twice; none is lost.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from halswarm.cost.budgets import Notified, budget_scopes, decide, today_spend
from halswarm.cost.estimates import EstimateBook
from halswarm.cost.model import Coverage, ProviderError, SourceStatus
from halswarm.cost.money import percent_of
from halswarm.cost.report import provider_totals, utc_today
from halswarm.obs.logging import ctx, redact
from halswarm.schedule import Ticks
from halswarm.store import StoreError
from halswarm.store.cost_sql import COVERAGE_KEY_PREFIX, POLL_KEY_PREFIX, decode_span
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from halswarm.config.supervisor import BudgetsConfig, CostConfig
    from halswarm.cost.model import CostBucket, CostSource, Span
    from halswarm.cost.storage import CostStore
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Session
    from halswarm.obs.metrics import Metrics

__all__ = [
    "BUDGET_KEY_PREFIX",
    "MIN_POLL_TIMEOUT",
    "PART_DAYS",
    "CostPoller",
    "Emit",
    "extend_span",
    "poll_window",
    "window_parts",
]

log = logging.getLogger(__name__)

#: ``cost_state`` key prefix of each budget scope's notifications.
BUDGET_KEY_PREFIX = "budget:"
#: Days fetched and stored per part of a poll window.
PART_DAYS: Final = 7
#: A poll part's deadline is the poll interval, but never less than this (seconds).
MIN_POLL_TIMEOUT: Final = 600.0
_DAY: Final = dt.timedelta(days=1)


class Emit(Protocol):
    """Raises a supervisor event (``Pipeline.try_emit``); True when it was queued."""

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> bool: ...


def poll_window(
    today: dt.date, last_covered: dt.date | None, *, backfill_days: int, repoll_days: int
) -> tuple[dt.date, dt.date]:
    """The days to fetch, as ``(start, end)`` with ``end`` exclusive (tomorrow).

    Args:
        today: the current UTC day.
        last_covered: the last UTC day the provider's stored rows cover (None: none).
        backfill_days: days fetched when nothing is covered yet (today included).
        repoll_days: trailing days re-fetched on later polls (today included); the
            window reaches back that far from the last covered day, so after an outage
            the whole gap is fetched and the coverage stays contiguous.
    """
    end = today + _DAY
    if last_covered is None:
        return today - dt.timedelta(days=backfill_days - 1), end
    return min(today, last_covered) - dt.timedelta(days=repoll_days - 1), end


def window_parts(start: dt.date, end: dt.date, days: int = PART_DAYS) -> list[tuple[dt.date, dt.date]]:
    """``start..end`` (end exclusive) cut into consecutive parts of at most *days* days, oldest first."""
    parts = []
    while start < end:
        stop = min(end, start + dt.timedelta(days=days))
        parts.append((start, stop))
        start = stop
    return parts


def extend_span(span: Span | None, start: dt.date, end: dt.date) -> Span:
    """The coverage after storing days ``start <= day < end``.

    The new days join the covered span when they overlap or touch it; otherwise (a
    clock that jumped) they replace it, so the span never claims days nobody fetched.
    """
    last = end - _DAY
    if span is None or start > span[1] + _DAY or last < span[0] - _DAY:
        return (start, last)
    return (min(span[0], start), max(span[1], last))


@attrs.define
class _SourceState:
    last_success: str | None = None
    last_error: str | None = None
    failing_since: str | None = None
    next_try: str | None = None

    def status(self, provider: str, span: Span | None) -> SourceStatus:
        through = span[1].isoformat() if span is not None else None
        if self.last_error is not None:
            return SourceStatus(provider, "error", self.last_success, self.last_error, through)
        if self.last_success is not None:
            return SourceStatus(provider, "ok", self.last_success, billed_through=through)
        return SourceStatus(provider, "pending", billed_through=through)


def _duration(seconds: float) -> str:
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f}s"


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
        secrets: Iterable[str] = (),
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
        #: Redacted from every error text the poller keeps (status, readiness).
        self.secrets = [s for s in secrets if s]
        self._spans: dict[str, Span | None] = dict.fromkeys(names)
        #: Live view: the configured providers and the days their own data covers (what
        #: the totals rule, budgets, reports and the policy engine read).
        self.coverage = Coverage(self._spans)
        self._states = {name: _SourceState() for name in names}
        self._notified: dict[str, Notified] = {}
        self._unsaved: dict[str, Notified] = {}  # queued budget events not yet persisted
        self._book: EstimateBook | None = None
        self._pruned_on: dt.date | None = None
        self._gauge_providers: set[str] = set(names)
        #: How many estimate ticks (estimates + budgets) have completed; for tests and health.
        self.estimate_ticks = 0

    # ---- views --------------------------------------------------------------------------

    def today(self) -> dt.date:
        """The current UTC day, from the injected wall clock."""
        return utc_today(self.now)

    @property
    def poll_timeout(self) -> float:
        """Deadline of one part of a poll, seconds: the interval, at least :data:`MIN_POLL_TIMEOUT`."""
        return max(self._poll_interval, MIN_POLL_TIMEOUT)

    def source_statuses(self) -> list[SourceStatus]:
        """How the last poll of each provider went (in configuration order)."""
        return [self._states[s.name].status(s.name, self._spans[s.name]) for s in self.sources]

    def readiness(self) -> str:
        """``ok``, or ``degraded: <provider> poll failing since <time>`` for each failing provider.

        Short on purpose: ``/readyz`` answers without a token; the reasons are in the
        authenticated ``GET /api/v1/cost`` (``sources``) and the log.
        """
        failing = [
            f"{name} poll failing since {st.failing_since}" for name, st in self._states.items() if st.last_error
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
        Error handling: provider, timeout, store and unexpected failures are logged and
        retried on the next tick; they never propagate.
        """
        await self.load()
        task_status.started()
        log.info(
            "cost tracking started",
            extra=ctx(
                providers=list(self.coverage),
                poll_interval_minutes=self.config.poll_interval_minutes,
                poll_timeout_minutes=round(self.poll_timeout / 60, 2),
                estimate_interval_seconds=self.config.estimate_interval_seconds,
                budgets=len(budget_scopes(self.budgets)),
            ),
        )
        async with trio.open_nursery() as nursery:
            for source in self.sources:
                nursery.start_soon(self._poll_loop, source)
            nursery.start_soon(self._estimate_loop)

    async def load(self) -> None:
        """Read what earlier runs persisted: polls, coverage, budget notices, booked estimates.

        Raises:
            StoreError: the database cannot be read.
        """
        polls = await self.store.cost_state(POLL_KEY_PREFIX)
        spans = await self.store.cost_state(COVERAGE_KEY_PREFIX)
        for name, state in self._states.items():
            state.last_success = polls.get(POLL_KEY_PREFIX + name)
            text = spans.get(COVERAGE_KEY_PREFIX + name)
            self._spans[name] = decode_span(text) if text is not None else None
        for key, value in (await self.store.cost_state(BUDGET_KEY_PREFIX)).items():
            notified = Notified.decode(value)
            if notified is not None:
                self._notified[key.removeprefix(BUDGET_KEY_PREFIX)] = notified
        self._book = await EstimateBook.load(self.store)

    @property
    def _poll_interval(self) -> float:
        return self.config.poll_interval_minutes * 60.0

    async def _poll_loop(self, source: CostSource) -> None:
        ticks = Ticks(self._poll_interval)
        while True:
            try:
                await self.poll_once(source, ticks=ticks)
            except Exception:  # poll_once records its failures; this is a bug's last stop
                log.exception("cost poll of %s failed unexpectedly; next try at the next interval", source.name)
            await ticks.wait()

    async def _estimate_loop(self) -> None:
        ticks = Ticks(self.config.estimate_interval_seconds)
        while True:
            await self.estimate_once()
            await ticks.wait()

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    async def poll_once(self, source: CostSource, *, ticks: Ticks | None = None) -> bool:
        """Fetch one provider's window part by part and store each part; True on success.

        Failures are recorded (status, readiness, log, metrics), never raised; parts
        stored before a failure stay stored (and covered). *ticks* is the loop's
        schedule, to tell when the next try is (default: one interval).
        """
        name = source.name
        state = self._states[name]
        span = self._spans[name]
        start, end = poll_window(
            self.today(),
            span[1] if span is not None else None,
            backfill_days=self.config.backfill_days,
            repoll_days=self.config.repoll_days,
        )
        kind = "repoll" if span is not None else "backfill"
        began = trio.current_time()
        parts = window_parts(start, end)
        rows = 0
        error: str | None = None
        for i, (part_start, part_end) in enumerate(parts):
            outcome = await self._poll_part(source, part_start, part_end, complete=i == len(parts) - 1)
            if isinstance(outcome, str):
                error = outcome
                break
            rows += outcome
        if self.metrics is not None:
            self.metrics.cost_poll_duration.labels(name).observe(trio.current_time() - began)
        if error is None:
            if state.last_error is not None:
                log.info("cost poll of %s recovered", name, extra=ctx(provider=name))
            state.last_error, state.failing_since, state.next_try = None, None, None
            log.info(
                "polled %s costs (%s %s..%s): %d daily rows",
                name,
                kind,
                start,
                end - _DAY,
                rows,
                extra=ctx(provider=name, start=start.isoformat(), end=end.isoformat(), rows=rows, parts=len(parts)),
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

    async def _poll_part(self, source: CostSource, start: dt.date, end: dt.date, *, complete: bool) -> int | str:
        """Fetch and store days ``start <= day < end``: the rows stored, or why it failed (redacted)."""
        name = source.name
        buckets: list[CostBucket] = []
        error: str | None = None
        with trio.move_on_after(self.poll_timeout) as scope:
            try:
                buckets = await source.fetch(start, end)
            except ProviderError as exc:
                error = str(exc)
            except Exception as exc:  # a bug in one source must not stop the others
                log.exception("cost source %s raised an unexpected error", name)
                error = f"unexpected error: {type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"no answer within {_duration(self.poll_timeout)}"
        if error is not None:
            return self._redact(error)
        kept = [b for b in buckets if b.provider == name and b.source == "provider" and start <= b.day < end]
        if len(kept) != len(buckets):
            log.warning(
                "cost source %s returned %d buckets outside %s..%s or not its own; ignored them",
                name,
                len(buckets) - len(kept),
                start,
                end - _DAY,
            )
        stamp = format_ts(self.now())
        covered = extend_span(self._spans[name], start, end)
        try:
            rows = await self.store.replace_provider_costs(
                name, start, end, kept, stamp, covered=covered, complete=complete
            )
        except StoreError as exc:
            return self._redact(f"could not store its data: {exc}")
        except Exception as exc:  # house rule 8: log it whole, keep polling
            log.exception("storing the cost data of %s failed unexpectedly", name)
            return self._redact(f"could not store its data: {type(exc).__name__}: {exc}")
        self._spans[name] = covered
        if complete:
            self._states[name].last_success = stamp
        return rows

    async def estimate_once(self) -> None:
        """Prune settled bookkeeping (daily), book opencode's session cost growth, check budgets.

        Each step is isolated: a store failure or an unexpected error is logged and the
        step is retried on the next tick, while the other steps still run.
        """
        assert self._book is not None, "run() loads the estimate book first"
        book = self._book
        today = self.today()
        stamp = format_ts(self.now())
        sessions: list[Session] | None = None
        try:
            sessions = list(self.sessions())
        except Exception:
            log.exception("could not read the tracked sessions for cost estimates (retried next tick)")
        if sessions is not None:
            if self._pruned_on != today and await self._guarded(
                "prune settled sessions' cost bookkeeping", functools.partial(self._prune, book, sessions, today)
            ):
                self._pruned_on = today
            await self._guarded("book cost estimates", functools.partial(book.step, sessions, today, stamp))
        await self._guarded("check budgets", functools.partial(self._check_budgets, today, stamp))
        self.estimate_ticks += 1

    async def _guarded(self, what: str, step: Callable[[], Awaitable[object]]) -> bool:
        """Run one step of the estimate tick; True when it worked (failures are logged)."""
        try:
            await step()
        except StoreError as exc:
            log.error("could not %s (retried next tick): %s", what, exc)
            return False
        except Exception:  # house rule 8: one bad step must not stop the loop
            log.exception("could not %s: unexpected error (retried next tick)", what)
            return False
        return True

    async def _prune(self, book: EstimateBook, sessions: list[Session], today: dt.date) -> None:
        settled = book.settled(sessions, today)
        if settled:
            removed = await self.store.prune_estimate_sessions(settled)
            book.forget(settled)
            log.info("forgot the cost bookkeeping of %d sessions completed long ago", removed)

    async def _check_budgets(self, today: dt.date, stamp: str) -> None:
        buckets = await self.store.cost_buckets(today, today)
        self._set_today_gauges(buckets)
        spend = today_spend(buckets, self.coverage)
        for notice in decide(self.budgets, spend, today, self._notified):
            data = notice.data()
            label = notice.scope.label
            if not self.emit(notice.event_type, data, project=notice.scope.project):
                log.error(
                    "could not queue %s for %s (the event queue is congested); raised again on the next check",
                    notice.event_type,
                    label,
                    extra=ctx(scope=label, day=today.isoformat()),
                )
                continue
            sent = notice.sent(self._notified.get(notice.scope.key))
            self._notified[notice.scope.key] = self._unsaved[notice.scope.key] = sent
            log.warning(
                "budget %s for %s: $%s of $%s today (%s%%)",
                "exceeded" if notice.level == "exceeded" else "warning",
                label,
                data["spent_usd"],
                data["limit_usd"],
                data["percent"],
                extra=ctx(scope=label, day=today.isoformat()),
            )
        if self.metrics is not None:
            for scope in budget_scopes(self.budgets):
                used = percent_of(spend.of(scope), scope.limit_usd)
                self.metrics.cost_budget_used_percent.labels(scope.label).set(float(used))
        if self._unsaved:
            # Only after the events were queued: a failed write is retried next tick
            # (memory already knows they were sent, so they are not raised twice).
            await self.store.put_cost_state(
                {BUDGET_KEY_PREFIX + key: n.encode() for key, n in self._unsaved.items()}, stamp
            )
            self._unsaved.clear()

    def _set_today_gauges(self, buckets: list[CostBucket]) -> None:
        """``hal_o_swarm_cost_today_usd``: every provider ever shown, 0 when it has nothing today."""
        if self.metrics is None:
            return
        totals = provider_totals(buckets, self.coverage)
        self._gauge_providers.update(totals)
        for provider in sorted(self._gauge_providers):
            self.metrics.cost_today_usd.labels(provider).set(float(totals.get(provider, 0)))

    def _count_poll(self, provider: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.cost_polls.labels(provider, outcome).inc()
