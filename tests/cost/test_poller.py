"""The cost poller: backfill (in parts) then re-poll windows, coverage, failures that keep
the data and show as degraded (redacted, short in /readyz) until the provider recovers,
providers isolated from each other, the schedule on virtual time, estimates + budget
events that survive a restart, and loops that survive store failures and bugs.

Schedule tests run on trio's autojump clock against an inline store (the real cost SQL on
an in-memory SQLite connection, no threads: a thread hop would let the clock jump past
the poller's deadlines). Data tests use the real store on a file, under a hang guard.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import attrs
import pytest
import trio
import trio.testing

from halswarm.config.supervisor import BudgetsConfig, CostConfig
from halswarm.cost.estimates import SessionCost
from halswarm.cost.model import CostBucket, ProviderError, SourceStatus
from halswarm.cost.poller import CostPoller, extend_span, poll_window, window_parts
from halswarm.jsontypes import JSONObject
from halswarm.models import Session
from halswarm.obs.metrics import Metrics
from halswarm.store import Store, StoreError, cost_sql, open_store
from tests.cost.support import bucket, days
from tests.inline_sql import InlineSQL, migrated_memory_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence
    from pathlib import Path

    from halswarm.cost.model import Span

HOUR = 3600.0
START = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
TODAY = START.date()
NO_BUDGETS = BudgetsConfig()
#: A backfill of 7 days is one part; see BACKFILL_31 for a window in several parts.
HOURLY = CostConfig(poll_interval_minutes=60, backfill_days=7, repoll_days=3)
BACKFILL_31 = CostConfig(poll_interval_minutes=60, backfill_days=31, repoll_days=3)
GUARD = 10  # seconds: every test on the real store runs under trio.fail_after(GUARD)


# ---- test doubles --------------------------------------------------------------------------

Outcome = list[CostBucket] | Exception | Literal["hang"] | float


@attrs.define
class FakeSource:
    """A CostSource answering from a script (the last entry repeats), recording each call.

    A list answers the buckets of the asked days (all of them with ``clip=False``); a
    float sleeps that long first and answers the last list given.
    """

    name: str
    script: list[Outcome]
    clip: bool = True
    calls: list[tuple[float, dt.date, dt.date]] = attrs.Factory(list)
    data: list[CostBucket] = attrs.Factory(list)

    async def fetch(self, start: dt.date, end: dt.date) -> list[CostBucket]:
        self.calls.append((trio.current_time(), start, end))
        outcome = self.script[min(len(self.calls), len(self.script)) - 1]
        if outcome == "hang":
            await trio.sleep_forever()
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, float):
            await trio.sleep(outcome)
        else:
            assert isinstance(outcome, list)
            self.data = outcome
        return [b for b in self.data if start <= b.day < end] if self.clip else list(self.data)


@attrs.define
class ManualWall:
    """A wall clock the test moves by hand."""

    value: dt.datetime = START

    def __call__(self) -> dt.datetime:
        return self.value


@attrs.define
class VirtualWall:
    """A wall clock driven by trio's (mock) clock."""

    t0: float = attrs.Factory(trio.current_time)

    def __call__(self) -> dt.datetime:
        return START + dt.timedelta(seconds=trio.current_time() - self.t0)


class InlineStore(InlineSQL):
    """The real cost SQL on an in-memory database, run inline (tests only: no threads)."""

    async def replace_provider_costs(
        self,
        provider: str,
        start: dt.date,
        end: dt.date,
        buckets: list[CostBucket],
        now: str,
        *,
        covered: Span | None = None,
        complete: bool = True,
    ) -> int:
        await self._enter("replace_provider_costs")
        return cost_sql.replace_provider_days(
            self.conn, provider, start, end, buckets, now, covered=covered, complete=complete
        )

    async def add_cost_estimates(self, deltas: list[CostBucket], seen: dict[str, SessionCost], now: str) -> None:
        await self._enter("add_cost_estimates")
        cost_sql.add_estimates(self.conn, deltas, seen, now)

    async def load_estimate_seen(self) -> dict[str, SessionCost]:
        await self._enter("load_estimate_seen")
        return cost_sql.load_estimate_seen(self.conn)

    async def prune_estimate_sessions(self, session_ids: Sequence[str]) -> int:
        await self._enter("prune_estimate_sessions")
        return cost_sql.prune_estimate_sessions(self.conn, session_ids)

    async def cost_buckets(self, first: dt.date, last: dt.date) -> list[CostBucket]:
        await self._enter("cost_buckets")
        return cost_sql.cost_buckets(self.conn, first, last)

    async def cost_state(self, prefix: str) -> dict[str, str]:
        await self._enter("cost_state")
        return cost_sql.cost_state(self.conn, prefix)

    async def put_cost_state(self, items: dict[str, str], now: str) -> None:
        await self._enter("put_cost_state")
        cost_sql.put_cost_state(self.conn, items, now)


@pytest.fixture
def inline_store() -> Iterator[InlineStore]:
    with migrated_memory_db() as conn:
        yield InlineStore(conn)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with trio.fail_after(GUARD):
        async with open_store(tmp_path / "s.db") as s:
            yield s


@attrs.define
class Emitted:
    """The event sink; ``queued=False`` plays a congested event pipeline."""

    events: list[tuple[str, JSONObject, str | None]] = attrs.Factory(list)
    queued: bool = True
    refused: int = 0

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> bool:
        if not self.queued:
            self.refused += 1
            return False
        self.events.append((event_type, data, project))
        return True

    def types(self) -> list[tuple[str, str]]:
        return [(t, str(d.get("project", d["scope"]))) for t, d, _ in self.events]


def poller(
    store: Store | InlineStore,
    sources: list[FakeSource],
    *,
    now: ManualWall | VirtualWall,
    sessions: list[Session] | None = None,
    budgets: BudgetsConfig = NO_BUDGETS,
    config: CostConfig = HOURLY,
    emit: Emitted | None = None,
    metrics: Metrics | None = None,
    secrets: Sequence[str] = (),
) -> CostPoller:
    live = sessions if sessions is not None else []
    return CostPoller(
        config,
        budgets,
        sources,
        store,
        sessions=lambda: list(live),
        emit=emit or Emitted(),
        now=now,
        metrics=metrics,
        secrets=secrets,
    )


def bill(day: dt.date, usd: str, provider: str = "anthropic", project: str = "alpha") -> CostBucket:
    return bucket(day, usd, provider=provider, project=project, input_tokens=1000)


async def provider_total(store: Store | InlineStore, provider: str) -> Decimal:
    rows = await store.cost_buckets(TODAY - days(40), TODAY)
    return sum((b.cost_usd for b in rows if b.provider == provider and b.source == "provider"), Decimal(0))


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# ---- windows and coverage ------------------------------------------------------------------


def test_poll_window_backfills_first_then_repolls_trailing_days() -> None:
    def window(last: dt.date | None) -> tuple[dt.date, dt.date]:
        return poll_window(TODAY, last, backfill_days=31, repoll_days=3)

    tomorrow = TODAY + days(1)
    assert window(None) == (TODAY - days(30), tomorrow)  # 31 days, today included
    assert window(TODAY) == (TODAY - days(2), tomorrow)  # 3 days
    assert window(TODAY - days(1)) == (TODAY - days(3), tomorrow)  # just after midnight
    assert window(TODAY - days(10)) == (TODAY - days(12), tomorrow)  # after an outage: the gap too
    # ...however long it was: the coverage must stay one contiguous span (fetched in parts).
    assert window(TODAY - days(100)) == (TODAY - days(102), tomorrow)


def test_windows_are_fetched_in_parts_of_a_week_oldest_first() -> None:
    assert window_parts(TODAY - days(30), TODAY + days(1)) == [
        (TODAY - days(30), TODAY - days(23)),
        (TODAY - days(23), TODAY - days(16)),
        (TODAY - days(16), TODAY - days(9)),
        (TODAY - days(9), TODAY - days(2)),
        (TODAY - days(2), TODAY + days(1)),
    ]
    assert window_parts(TODAY, TODAY + days(1)) == [(TODAY, TODAY + days(1))]
    assert window_parts(TODAY, TODAY) == []


def test_coverage_grows_with_each_stored_part_and_never_claims_unfetched_days() -> None:
    assert extend_span(None, TODAY - days(30), TODAY - days(23)) == (TODAY - days(30), TODAY - days(24))
    span = (TODAY - days(30), TODAY - days(1))
    assert extend_span(span, TODAY - days(2), TODAY + days(1)) == (TODAY - days(30), TODAY)  # overlap
    assert extend_span(span, TODAY, TODAY + days(1)) == (TODAY - days(30), TODAY)  # touching
    assert extend_span(span, TODAY + days(5), TODAY + days(6)) == (TODAY + days(5), TODAY + days(5))  # a jump


async def test_first_poll_backfills_in_parts_later_polls_repoll_and_a_restart_does_not_backfill(store: Store) -> None:
    data = [bill(TODAY - days(20), "3.00"), bill(TODAY - days(1), "1.50"), bill(TODAY, "0.25")]
    source = FakeSource("anthropic", [data])
    wall = ManualWall()
    with trio.fail_after(GUARD):
        first = poller(store, [source], now=wall, config=BACKFILL_31)
        await first.load()
        assert first.source_statuses()[0].status == "pending"
        assert first.coverage.span("anthropic") is None
        assert await first.poll_once(source)
        assert first.coverage.span("anthropic") == (TODAY - days(30), TODAY)
        wall.value += dt.timedelta(hours=1)
        assert await first.poll_once(source)
        restarted = poller(store, [source], now=wall, config=BACKFILL_31)
        await restarted.load()
        assert restarted.source_statuses()[0].status == "ok"
        assert restarted.coverage.span("anthropic") == (TODAY - days(30), TODAY)  # persisted
        assert await restarted.poll_once(source)
        total = await provider_total(store, "anthropic")
    windows = [(start, end) for _, start, end in source.calls]
    assert windows == [
        *window_parts(TODAY - days(30), TODAY + days(1)),  # the backfill, a week at a time
        (TODAY - days(2), TODAY + days(1)),
        (TODAY - days(2), TODAY + days(1)),
    ]
    assert total == Decimal("4.75")  # three polls, counted once


# ---- failures ------------------------------------------------------------------------------


async def test_a_failed_poll_keeps_the_data_shows_degraded_and_recovers(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource(
        "anthropic",
        [
            [bill(TODAY, "2.00")],
            ProviderError("anthropic usage_report: HTTP 500 after 5 attempts"),
            [bill(TODAY, "2.50")],
        ],
    )
    wall = ManualWall()
    metrics = Metrics()
    with trio.fail_after(GUARD):
        p = poller(store, [source], now=wall, metrics=metrics)
        await p.load()
        assert await p.poll_once(source)
        assert p.readiness() == "ok"

        wall.value += dt.timedelta(hours=1)
        with caplog.at_level(logging.INFO, logger="halswarm.cost.poller"):
            assert not await p.poll_once(source)
        status = p.source_statuses()[0]
        assert status.status == "error"
        assert status.last_error == "anthropic usage_report: HTTP 500 after 5 attempts"
        assert status.last_success == "2026-03-10T12:00:00.000000Z"
        # Short: /readyz needs no token; the reason is in the API and the log.
        assert p.readiness() == "degraded: anthropic poll failing since 2026-03-10T13:00:00.000000Z"
        assert await provider_total(store, "anthropic") == Decimal("2.00")  # the earlier data stays
        assert p.coverage.span("anthropic") == (TODAY - days(6), TODAY)  # and so does its coverage
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.getMessage() == (
            "cost poll of anthropic failed: anthropic usage_report: HTTP 500 after 5 attempts; "
            "its earlier data is kept; next try in 60 min (at 2026-03-10T14:00:00.000000Z)"
        )

        wall.value += dt.timedelta(hours=1)
        with caplog.at_level(logging.INFO, logger="halswarm.cost.poller"):
            assert await p.poll_once(source)
        assert p.readiness() == "ok"
        assert p.source_statuses()[0].status == "ok"
        assert await provider_total(store, "anthropic") == Decimal("2.50")
    assert any(r.getMessage() == "cost poll of anthropic recovered" for r in caplog.records)
    # The window after the failure still starts from the last covered day.
    assert source.calls[2][1] == TODAY - days(2)
    scrape = metrics.render().decode()
    assert 'hal_o_swarm_cost_polls_total{outcome="error",provider="anthropic"} 1.0' in scrape
    assert 'hal_o_swarm_cost_polls_total{outcome="ok",provider="anthropic"} 2.0' in scrape
    assert gauge(metrics, "hal_o_swarm_cost_poll_duration_seconds_count", provider="anthropic") == 3.0


async def test_error_texts_are_redacted_before_status_and_readiness(store: Store) -> None:
    key = "sk-admin-0123456789abcdef"
    source = FakeSource("openai", [ProviderError(f"openai costs: HTTP 401: Incorrect API key provided: {key}")])
    with trio.fail_after(GUARD):
        p = poller(store, [source], now=ManualWall(), secrets=[key])
        await p.load()
        assert not await p.poll_once(source)
    status = p.source_statuses()[0]
    assert status.last_error == "openai costs: HTTP 401: Incorrect API key provided: [REDACTED]"
    assert key not in p.readiness()


async def test_buckets_a_source_should_not_have_sent_are_dropped(store: Store) -> None:
    stray = [bill(TODAY, "1.00"), bill(TODAY + days(5), "99"), bill(TODAY, "99", provider="openai")]
    source = FakeSource("anthropic", [stray], clip=False)
    with trio.fail_after(GUARD):
        p = poller(store, [source], now=ManualWall())
        await p.load()
        assert await p.poll_once(source)
        assert await provider_total(store, "anthropic") == Decimal("1.00")
        assert await provider_total(store, "openai") == Decimal(0)


async def test_schedule_on_virtual_time_with_one_provider_failing_and_hanging(
    autojump_clock: trio.testing.MockClock, inline_store: InlineStore
) -> None:
    good = FakeSource("openai", [[bill(TODAY, "1.00", provider="openai")]])
    bad = FakeSource("anthropic", [RuntimeError("boom"), "hang", [bill(TODAY, "4.00")]])
    ticks: list[float] = []
    config = CostConfig(poll_interval_minutes=60, estimate_interval_seconds=600, backfill_days=7, repoll_days=3)
    p = poller(inline_store, [good, bad], now=VirtualWall(), config=config)
    t0 = trio.current_time()

    def sessions() -> list[Session]:
        ticks.append(trio.current_time() - t0)
        return []

    p.sessions = sessions
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await trio.sleep_until(t0 + 0.5 * HOUR)
        statuses = {s.provider: s for s in p.source_statuses()}
        assert statuses["openai"].status == "ok"
        assert statuses["anthropic"].status == "error"
        assert statuses["anthropic"].last_error == "unexpected error: RuntimeError: boom"
        assert p.readiness() == "degraded: anthropic poll failing since 2026-03-10T12:00:00.000000Z"
        await trio.sleep_until(t0 + 1.5 * HOUR)  # anthropic hangs since 1h; openai polled again
        assert len(good.calls) == 2
        assert p.source_statuses()[0].status == "ok"
        await trio.sleep_until(t0 + 2.5 * HOUR + 1)  # the hang timed out at 2h; the retry at 2h worked
        assert p.readiness() == "ok"
        nursery.cancel_scope.cancel()
    assert [t - t0 for t, _, _ in good.calls] == [0, HOUR, 2 * HOUR]
    assert [t - t0 for t, _, _ in bad.calls] == [0, HOUR, 2 * HOUR]
    assert ticks == [600.0 * k for k in range(16)]  # estimates every 10 min throughout
    assert await provider_total(inline_store, "anthropic") == Decimal("4.00")
    assert await provider_total(inline_store, "openai") == Decimal("1.00")


async def test_a_backfill_longer_than_the_poll_interval_completes_part_by_part(
    autojump_clock: trio.testing.MockClock, inline_store: InlineStore
) -> None:
    # Each week of the backfill takes 20 minutes to fetch: 100 minutes for five parts,
    # well past the 60-minute interval. Each part is stored (and covered) as it comes.
    data = [bill(TODAY - days(n), "1.00") for n in range(31)]
    source = FakeSource("anthropic", [data, 1200.0])
    wall = VirtualWall()
    p = poller(inline_store, [source], now=wall, config=BACKFILL_31)
    t0 = trio.current_time()
    spans: list[tuple[float, Span | None]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        for minute in (30, 50, 70, 90, 110):
            await trio.sleep_until(t0 + minute * 60)
            spans.append((minute, p.coverage.span("anthropic")))
        await trio.sleep_until(t0 + 121 * 60)
        nursery.cancel_scope.cancel()
    # The first part answered at once (the script's list); the next four took 20 min each.
    assert [round((t - t0) / 60) for t, _, _ in source.calls] == [0, 0, 20, 40, 60, 120]
    assert spans == [
        (30, (TODAY - days(30), TODAY - days(17))),
        (50, (TODAY - days(30), TODAY - days(10))),
        (70, (TODAY - days(30), TODAY - days(3))),
        (90, (TODAY - days(30), TODAY)),  # done at 80 min, past the interval
        (110, (TODAY - days(30), TODAY)),
    ]
    assert p.source_statuses()[0].status == "ok"
    assert await provider_total(inline_store, "anthropic") == Decimal(31)
    # The next poll ran at the next tick after the long one (2 h), as a repoll.
    assert source.calls[-1][1:] == (TODAY - days(2), TODAY + days(1))


async def test_a_hanging_part_times_out_after_ten_minutes_and_the_next_poll_resumes(
    autojump_clock: trio.testing.MockClock, inline_store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    # With a 1-minute interval a part still gets 10 minutes before it counts as hung.
    data = [bill(TODAY - days(n), "1.00") for n in range(31)]
    source = FakeSource("anthropic", [data, "hang", data])
    config = CostConfig(poll_interval_minutes=1, estimate_interval_seconds=3600, backfill_days=31, repoll_days=3)
    p = poller(inline_store, [source], now=VirtualWall(), config=config)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await trio.sleep_until(t0 + 5 * 60)
        # The first week is stored (and counts as billed); the second hangs.
        assert p.source_statuses()[0] == SourceStatus(
            "anthropic", "pending", billed_through=(TODAY - days(24)).isoformat()
        )
        assert p.coverage.span("anthropic") == (TODAY - days(30), TODAY - days(24))
        await trio.sleep_until(t0 + 12 * 60)
        nursery.cancel_scope.cancel()
    [failure] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.startswith("cost poll of anthropic failed: no answer within 10 min; its earlier data is kept")
    assert p.source_statuses()[0].status == "ok"
    assert p.coverage.span("anthropic") == (TODAY - days(30), TODAY)
    # The retry (at 10 min) started two days before what was covered, not from scratch.
    retry = [(start, end) for t, start, end in source.calls if t - t0 >= 600]
    assert retry[0] == (TODAY - days(26), TODAY - days(19))
    assert await provider_total(inline_store, "anthropic") == Decimal(31)


async def test_store_failures_and_bugs_in_any_step_keep_both_loops_running(
    autojump_clock: trio.testing.MockClock, inline_store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource("anthropic", [[bill(TODAY, "1.00")]])
    live = [sim("a", 1.0)]
    config = CostConfig(poll_interval_minutes=60, estimate_interval_seconds=60, backfill_days=7, repoll_days=3)
    emitted = Emitted()
    p = poller(
        inline_store,
        [source],
        now=VirtualWall(),
        sessions=live,
        config=config,
        budgets=BudgetsConfig(daily_usd=1.0),
        emit=emitted,
    )
    store = inline_store
    store.faults = {
        "replace_provider_costs": StoreError("database write failed: disk I/O error"),
        "add_cost_estimates": RuntimeError("a bug in the estimates"),
        "cost_buckets": KeyError("a bug in the budgets"),
    }
    store.fault_count = {"replace_provider_costs": 2, "add_cost_estimates": 2, "cost_buckets": 3}
    t0 = trio.current_time()
    with caplog.at_level(logging.INFO, logger="halswarm.cost.poller"):
        async with trio.open_nursery() as nursery:
            await nursery.start(p.run)
            await trio.sleep_until(t0 + 2 * HOUR + 1)
            nursery.cancel_scope.cancel()
    # Polls at 0 and 1 h failed to store, the one at 2 h worked.
    assert [t - t0 for t, _, _ in source.calls] == [0, HOUR, 2 * HOUR]
    assert p.source_statuses()[0].status == "ok"
    assert await provider_total(store, "anthropic") == Decimal("1.00")
    # Every estimate tick ran; the estimate was booked once the bug stopped, exactly once.
    assert p.estimate_ticks == 121
    [estimate] = [b for b in await store.cost_buckets(TODAY, TODAY) if b.source == "estimate"]
    assert estimate.cost_usd == Decimal("1.0")
    assert emitted.types() == [("cost.budget_exceeded", "fleet")]  # once the budgets could read again
    unexpected = [r for r in caplog.records if r.exc_info is not None]
    assert {r.getMessage() for r in unexpected} == {
        "could not book cost estimates: unexpected error (retried next tick)",
        "could not check budgets: unexpected error (retried next tick)",
    }
    assert all(r.levelno == logging.ERROR for r in unexpected)  # with their tracebacks
    assert any(
        "could not store its data: database write failed: disk I/O error" in r.getMessage() for r in caplog.records
    )

    # A bug (not a StoreError) while storing is a failed poll too, logged with its traceback.
    store.faults = {"replace_provider_costs": ValueError("a bug in the SQL")}
    store.fault_count = {}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="halswarm.cost.poller"):
        assert not await p.poll_once(source)
    assert p.source_statuses()[0].last_error == "could not store its data: ValueError: a bug in the SQL"
    [traced] = [r for r in caplog.records if r.exc_info is not None]
    assert traced.getMessage() == "storing the cost data of anthropic failed unexpectedly"


# ---- estimates and budgets -----------------------------------------------------------------


def sim(
    sid: str,
    cost: float,
    project: str = "alpha",
    *,
    model: str = "anthropic/claude-sonnet-4",
    last_activity: str | None = None,
    status: Literal["busy", "completed"] = "busy",
) -> Session:
    return Session(
        id=sid, node_id="n", project=project, model=model, cost_usd=cost, last_activity=last_activity, status=status
    )


async def test_estimates_and_budget_events_once_per_day_and_not_after_a_restart(store: Store) -> None:
    budgets = BudgetsConfig(daily_usd=10.0, projects={"alpha": 4.0}, warn_percent=80.0)
    live = [sim("a", 1.0), sim("b", 1.0, project="beta")]
    wall = ManualWall()
    emitted = Emitted()
    metrics = Metrics()

    async def tick(p: CostPoller, *costs: float) -> None:
        for i, cost in enumerate(costs):
            live[i] = attrs.evolve(live[i], cost_usd=cost, last_activity=format_wall(wall))
        await p.estimate_once()

    with trio.fail_after(GUARD):
        first = poller(store, [], now=wall, sessions=live, budgets=budgets, emit=emitted, metrics=metrics)
        await first.load()
        await tick(first, 1.0, 1.0)
        assert emitted.events == []
        await tick(first, 3.3, 1.0)  # alpha 3.3 of 4 (82 %)
        await tick(first, 3.5, 4.6)  # fleet 8.1 of 10 (81 %)
        await tick(first, 4.5, 4.6)  # alpha over; fleet 9.1
        await tick(first, 4.9, 6.0)  # fleet over
        await tick(first, 5.0, 7.0)  # nothing new
        assert emitted.types() == [
            ("cost.budget_warning", "alpha"),
            ("cost.budget_warning", "fleet"),
            ("cost.budget_exceeded", "alpha"),
            ("cost.budget_exceeded", "fleet"),
        ]
        assert emitted.events[2][1:] == (
            {"scope": "project", "project": "alpha", "day": "2026-03-10", "limit_usd": 4.0, "spent_usd": 4.5,
             "percent": 112.5},
            "alpha",
        )  # fmt: skip
        assert gauge(metrics, "hal_o_swarm_cost_today_usd", provider="anthropic") == 12.0

        restarted = poller(store, [], now=wall, sessions=live, budgets=budgets, emit=emitted)
        await restarted.load()
        await tick(restarted, 5.0, 7.0)
        await tick(restarted, 5.5, 7.0)
        assert len(emitted.events) == 4  # nothing again after the restart...
        today = {b.project: b.cost_usd for b in await store.cost_buckets(TODAY, TODAY)}
        assert today == {"alpha": Decimal("5.5"), "beta": Decimal(7)}  # ...and nothing booked twice

        wall.value += dt.timedelta(days=1)  # a new UTC day re-arms
        await tick(restarted, 8.0, 7.0)  # alpha +2.5 today: 62 %
        assert len(emitted.events) == 4
        await tick(restarted, 9.0, 7.0)  # alpha +3.5 today: 87 %
    assert emitted.types()[4:] == [("cost.budget_warning", "alpha")]
    assert emitted.events[4][1]["day"] == "2026-03-11"


def format_wall(wall: ManualWall) -> str:
    return wall.value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_a_budget_event_the_pipeline_could_not_queue_is_raised_on_the_next_tick(store: Store) -> None:
    live = [sim("a", 3.0)]
    emitted = Emitted(queued=False)
    with trio.fail_after(GUARD):
        p = poller(store, [], now=ManualWall(), sessions=live, budgets=BudgetsConfig(daily_usd=2.0), emit=emitted)
        await p.load()
        await p.estimate_once()
        assert (emitted.refused, emitted.events) == (1, [])
        assert await store.cost_state("budget:") == {}  # not recorded as sent
        emitted.queued = True
        await p.estimate_once()
        await p.estimate_once()
        assert emitted.types() == [("cost.budget_exceeded", "fleet")]
        assert set(await store.cost_state("budget:")) == {"budget:fleet"}  # persisted once queued


async def test_the_today_gauge_resets_every_provider_at_utc_midnight(store: Store) -> None:
    wall = ManualWall(dt.datetime(2026, 3, 10, 23, 50, tzinfo=dt.UTC))
    live = [sim("a", 2.0, last_activity="2026-03-10T23:49:00.000000Z")]
    live.append(sim("o", 1.5, model="openai/gpt-5", last_activity="2026-03-10T23:49:00.000000Z"))
    metrics = Metrics()
    with trio.fail_after(GUARD):
        p = poller(store, [], now=wall, sessions=live, metrics=metrics)
        await p.load()
        await p.estimate_once()
        assert gauge(metrics, "hal_o_swarm_cost_today_usd", provider="anthropic") == 2.0
        assert gauge(metrics, "hal_o_swarm_cost_today_usd", provider="openai") == 1.5
        wall.value += dt.timedelta(minutes=20)  # 00:10 UTC: a new day, nothing spent yet
        await p.estimate_once()
    assert gauge(metrics, "hal_o_swarm_cost_today_usd", provider="anthropic") == 0.0
    assert gauge(metrics, "hal_o_swarm_cost_today_usd", provider="openai") == 0.0


async def test_a_failing_provider_s_estimates_count_for_budgets_and_the_gauge(store: Store) -> None:
    source = FakeSource("anthropic", [ProviderError("anthropic: HTTP 401 authentication failed")])
    metrics = Metrics()
    emitted = Emitted()
    with trio.fail_after(GUARD):
        p = poller(
            store,
            [source],
            now=ManualWall(),
            sessions=[sim("a", 3.0)],
            budgets=BudgetsConfig(daily_usd=2.0),
            emit=emitted,
            metrics=metrics,
        )
        await p.load()
        assert not await p.poll_once(source)
        await p.estimate_once()
    assert gauge(metrics, "hal_o_swarm_cost_today_usd", provider="anthropic") == 3.0
    assert emitted.types() == [("cost.budget_exceeded", "fleet")]


async def test_growth_after_a_supervisor_outage_is_booked_on_the_day_it_happened(store: Store) -> None:
    wall = ManualWall()
    live = [sim("a", 1.0, last_activity="2026-03-10T11:00:00.000000Z")]
    with trio.fail_after(GUARD):
        p = poller(store, [], now=wall, sessions=live)
        await p.load()
        await p.estimate_once()
        # Down for three days; the session grew on the 11th and went quiet.
        wall.value += dt.timedelta(days=3)
        live[0] = attrs.evolve(live[0], cost_usd=4.0, last_activity="2026-03-11T09:00:00.000000Z")
        restarted = poller(store, [], now=wall, sessions=live)
        await restarted.load()
        await restarted.estimate_once()
        rows = await store.cost_buckets(TODAY, TODAY + days(3))
    assert {b.day: b.cost_usd for b in rows} == {TODAY: Decimal("1.0"), TODAY + days(1): Decimal("3.0")}


async def test_an_absurd_session_cost_is_skipped_with_a_warning_and_books_the_others(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    live = [sim("absurd", 1e10), sim("huge-tokens", 1.0), sim("fine", 2.0)]
    live[1] = attrs.evolve(live[1], tokens=attrs.evolve(live[1].tokens, input=2**70))
    with trio.fail_after(GUARD), caplog.at_level(logging.WARNING):
        p = poller(store, [], now=ManualWall(), sessions=live)
        await p.load()
        await p.estimate_once()
        await p.estimate_once()
        rows = await store.cost_buckets(TODAY, TODAY)
        seen = await store.load_estimate_seen()
    assert [b.cost_usd for b in rows] == [Decimal("2.0")]
    assert set(seen) == {"fine"}
    warnings = [r.getMessage() for r in caplog.records if "impossible cost figure" in r.getMessage()]
    assert len(warnings) == 2  # once per session, not every tick
    assert any("session absurd" in w and "cost_usd 10000000000.0" in w for w in warnings)


async def test_settled_sessions_are_pruned_at_start_and_daily(store: Store) -> None:
    wall = ManualWall()
    old = "2026-02-01T10:00:00.000000Z"  # 37 days before TODAY
    recent = "2026-02-20T10:00:00.000000Z"  # 18 days before
    live = [
        sim("done-long-ago", 1.0, last_activity=old, status="completed"),
        sim("done-recently", 1.0, last_activity=recent, status="completed"),
        sim("idle-long-ago", 1.0, last_activity=old),  # not completed: may still grow
    ]
    with trio.fail_after(GUARD):
        await store.add_cost_estimates([], {s.id: SessionCost.of(s) for s in live}, "2026-02-20T10:00:00.000000Z")
        p = poller(store, [], now=wall, sessions=live)
        await p.load()
        await p.estimate_once()  # the first tick prunes
        assert set(await store.load_estimate_seen()) == {"done-recently", "idle-long-ago"}
        await p.estimate_once()  # not again the same day, and nothing re-booked
        assert set(await store.load_estimate_seen()) == {"done-recently", "idle-long-ago"}
        wall.value += dt.timedelta(days=18)  # done-recently is now 36 days old
        await p.estimate_once()
        assert set(await store.load_estimate_seen()) == {"idle-long-ago"}
        assert list(await store.cost_buckets(TODAY - days(60), TODAY + days(30))) == []
