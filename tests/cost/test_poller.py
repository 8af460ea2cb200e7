"""The cost poller: backfill then re-poll windows, failures that keep the data and show as
degraded until the provider recovers, providers isolated from each other, the schedule on
virtual time, and estimates + budget events that survive a restart.

Schedule tests run on trio's autojump clock against an inline store (the real cost SQL on
an in-memory SQLite connection, no threads: a thread hop would let the clock jump past
the poller's deadlines). Data tests use the real store on a file.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import attrs
import pytest
import trio
import trio.testing
from sqlite_utils import Database

from halswarm.config.supervisor import BudgetsConfig, CostConfig
from halswarm.cost.model import CostBucket, ProviderError
from halswarm.cost.poller import CostPoller, poll_window
from halswarm.jsontypes import JSONObject
from halswarm.models import Session
from halswarm.obs.metrics import Metrics
from halswarm.store import Store, cost_sql, open_store
from halswarm.store.schema import MIGRATIONS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from halswarm.cost.estimates import SessionCost

HOUR = 3600.0
START = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
TODAY = START.date()
NO_BUDGETS = BudgetsConfig()
HOURLY = CostConfig(poll_interval_minutes=60, backfill_days=31, repoll_days=3)


def days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


# ---- test doubles --------------------------------------------------------------------------

Outcome = list[CostBucket] | Exception | Literal["hang"]


@attrs.define
class FakeSource:
    """A CostSource answering from a script (the last entry repeats), recording each call."""

    name: str
    script: list[Outcome]
    calls: list[tuple[float, dt.date, dt.date]] = attrs.Factory(list)

    async def fetch(self, start: dt.date, end: dt.date) -> list[CostBucket]:
        self.calls.append((trio.current_time(), start, end))
        outcome = self.script[min(len(self.calls), len(self.script)) - 1]
        if outcome == "hang":
            await trio.sleep_forever()
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, list)
        return outcome


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


class InlineStore:
    """The real cost SQL on an in-memory database, run inline (tests only: no threads)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def replace_provider_costs(
        self, provider: str, start: dt.date, end: dt.date, buckets: list[CostBucket], now: str
    ) -> int:
        await trio.lowlevel.checkpoint()
        return cost_sql.replace_provider_days(self.conn, provider, start, end, buckets, now)

    async def add_cost_estimates(self, deltas: list[CostBucket], seen: dict[str, SessionCost], now: str) -> None:
        await trio.lowlevel.checkpoint()
        cost_sql.add_estimates(self.conn, deltas, seen, now)

    async def load_estimate_seen(self) -> dict[str, SessionCost]:
        await trio.lowlevel.checkpoint()
        return cost_sql.load_estimate_seen(self.conn)

    async def cost_buckets(self, first: dt.date, last: dt.date) -> list[CostBucket]:
        await trio.lowlevel.checkpoint()
        return cost_sql.cost_buckets(self.conn, first, last)

    async def cost_state(self, prefix: str) -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return cost_sql.cost_state(self.conn, prefix)

    async def put_cost_state(self, items: dict[str, str], now: str) -> None:
        await trio.lowlevel.checkpoint()
        cost_sql.put_cost_state(self.conn, items, now)


@pytest.fixture
def inline_store() -> Iterator[InlineStore]:
    conn = sqlite3.connect(":memory:")
    MIGRATIONS.apply(Database(conn))
    try:
        yield InlineStore(conn)
    finally:
        conn.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as s:
            yield s


@attrs.define
class Emitted:
    events: list[tuple[str, JSONObject, str | None]] = attrs.Factory(list)

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> None:
        self.events.append((event_type, data, project))

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
    )


def bill(day: dt.date, usd: str, provider: str = "anthropic", project: str = "alpha") -> CostBucket:
    return CostBucket(day, provider, "claude-sonnet-4", project, "provider", input_tokens=1000, cost_usd=Decimal(usd))


async def provider_total(store: Store | InlineStore, provider: str) -> Decimal:
    rows = await store.cost_buckets(TODAY - days(40), TODAY)
    return sum((b.cost_usd for b in rows if b.provider == provider and b.source == "provider"), Decimal(0))


# ---- windows -------------------------------------------------------------------------------


def test_poll_window_backfills_first_then_repolls_trailing_days() -> None:
    def window(last: dt.date | None) -> tuple[dt.date, dt.date]:
        return poll_window(TODAY, last, backfill_days=31, repoll_days=3)

    tomorrow = TODAY + days(1)
    assert window(None) == (TODAY - days(30), tomorrow)  # 31 days, today included
    assert window(TODAY) == (TODAY - days(2), tomorrow)  # 3 days
    assert window(TODAY - days(1)) == (TODAY - days(3), tomorrow)  # just after midnight
    assert window(TODAY - days(10)) == (TODAY - days(12), tomorrow)  # after an outage: the gap too
    assert window(TODAY - days(100)) == (TODAY - days(30), tomorrow)  # ...but never beyond the backfill


async def test_first_poll_backfills_later_polls_repoll_and_a_restart_does_not_backfill(store: Store) -> None:
    data = [bill(TODAY - days(20), "3.00"), bill(TODAY - days(1), "1.50"), bill(TODAY, "0.25")]
    source = FakeSource("anthropic", [data])
    wall = ManualWall()
    first = poller(store, [source], now=wall)
    await first.load()
    assert first.source_statuses()[0].status == "pending"
    assert await first.poll_once(source)
    wall.value += dt.timedelta(hours=1)
    # The provider re-sends the days it is asked for; older days are not re-fetched.
    source.script = [[b for b in data if b.day >= TODAY - days(2)]]
    assert await first.poll_once(source)
    restarted = poller(store, [source], now=wall)
    await restarted.load()
    assert restarted.source_statuses()[0].status == "ok"
    assert await restarted.poll_once(source)
    windows = [(start, end) for _, start, end in source.calls]
    assert windows == [
        (TODAY - days(30), TODAY + days(1)),
        (TODAY - days(2), TODAY + days(1)),
        (TODAY - days(2), TODAY + days(1)),
    ]
    assert await provider_total(store, "anthropic") == Decimal("4.75")  # three polls, counted once


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
    assert p.readiness() == (
        "degraded: anthropic poll failing since 2026-03-10T13:00:00.000000Z: anthropic usage_report: "
        "HTTP 500 after 5 attempts (next try at 2026-03-10T14:00:00.000000Z)"
    )
    assert await provider_total(store, "anthropic") == Decimal("2.00")  # the earlier data stays
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
    # The window after the failure still starts from the last *successful* poll.
    assert source.calls[2][1] == TODAY - days(2)
    scrape = metrics.render().decode()
    assert 'hal_o_swarm_cost_polls_total{outcome="error",provider="anthropic"} 1.0' in scrape
    assert 'hal_o_swarm_cost_polls_total{outcome="ok",provider="anthropic"} 2.0' in scrape


async def test_buckets_a_source_should_not_have_sent_are_dropped(store: Store) -> None:
    stray = [bill(TODAY, "1.00"), bill(TODAY + days(5), "99"), bill(TODAY, "99", provider="openai")]
    source = FakeSource("anthropic", [stray])
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
    config = CostConfig(poll_interval_minutes=60, estimate_interval_seconds=600, backfill_days=31, repoll_days=3)
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
        assert p.readiness().startswith("degraded: anthropic poll failing since 2026-03-10T12:00:00.000000Z")
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


# ---- estimates and budgets -----------------------------------------------------------------


def sim(sid: str, cost: float, project: str = "alpha") -> Session:
    return Session(id=sid, node_id="n", project=project, model="anthropic/claude-sonnet-4", cost_usd=cost)


async def test_estimates_and_budget_events_once_per_day_and_not_after_a_restart(store: Store) -> None:
    budgets = BudgetsConfig(daily_usd=10.0, projects={"alpha": 4.0}, warn_percent=80.0)
    live = [sim("a", 1.0), sim("b", 1.0, project="beta")]
    wall = ManualWall()
    emitted = Emitted()
    metrics = Metrics()

    async def tick(p: CostPoller, *costs: float) -> None:
        for i, cost in enumerate(costs):
            live[i] = attrs.evolve(live[i], cost_usd=cost)
        await p.estimate_once()

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
    assert 'hal_o_swarm_cost_today_usd{provider="anthropic"} 12.0' in metrics.render().decode()

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
