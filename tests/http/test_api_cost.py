"""``GET /api/v1/cost`` on a real supervisor: periods, from/to, groupings, the totals rule
with a polled provider, clear 400s; a failing provider makes ``/readyz`` degraded (not
down); and simulated sessions' estimates growing per session and per project."""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from halswarm.config.supervisor import BudgetsConfig, CostConfig, OpenAIProvider, ProvidersConfig
from halswarm.convert import structure_strict
from halswarm.cost.estimates import SessionCost
from halswarm.cost.model import (
    BudgetStatus,
    CostBucket,
    CostLine,
    CostReport,
    ProviderError,
    SourceStatus,
    TokenCounts,
)
from halswarm.cost.money import report_usd
from halswarm.models import Project, Session
from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from halswarm.testing import (
    agent_config,
    api_client,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)
from tests.cost.support import bucket

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    import httpx

    from halswarm.config import SupervisorConfig
    from halswarm.cost.model import CostSource

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
STAMP = "2026-03-10T12:00:00.000000Z"


def fixed_now() -> dt.datetime:
    return NOW


def ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


# The bill (Anthropic is polled) and opencode's estimates (Anthropic's and unpolled OpenAI's).
BILL = [
    bucket(ago(0), "2.00", input_tokens=2000),
    bucket(ago(1), "5.00", input_tokens=5000),
    bucket(ago(3), "1.25", model="claude-haiku-4", project="beta", input_tokens=900),
    bucket(ago(20), "10.00", input_tokens=10000),  # in the month, not the week
]
ESTIMATES = [
    bucket(ago(0), "1.50", source="estimate", input_tokens=1500),
    bucket(ago(1), "4.50", source="estimate", input_tokens=4500),
    bucket(ago(2), "0.75", provider="openai", model="gpt-5", project="beta", source="estimate", input_tokens=700),
]


@attrs.define
class FakeSource:
    name: str
    buckets: list[CostBucket] | None  # None: the provider is down
    error: str = "HTTP 503 after 5 attempts"

    async def fetch(self, start: dt.date, end: dt.date) -> list[CostBucket]:
        if self.buckets is None:
            raise ProviderError(self.error)
        return [b for b in self.buckets if start <= b.day < end]


@asynccontextmanager
async def running(config: SupervisorConfig, sources: list[CostSource]) -> AsyncGenerator[SupervisorHandle, None]:
    """``open_supervisor`` with cost sources and a fixed wall clock."""
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()

        async def run(*, task_status: trio.TaskStatus[SupervisorHandle]) -> None:
            await run_supervisor(
                config, shutdown=shutdown, now=fixed_now, cost_sources=sources, task_status=task_status
            )

        handle: SupervisorHandle = await nursery.start(run)
        try:
            yield handle
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + 15


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A supervisor polling a fake Anthropic, with estimates seeded in its store."""
    config = attrs.evolve(
        supervisor_config(tmp_path / "s.db"),
        budgets=BudgetsConfig(daily_usd=4.0, projects={"alpha": 1.0}),
    )
    source = FakeSource("anthropic", BILL)
    with trio.fail_after(30):
        async with running(config, [source]) as sup, api_client(sup) as c:
            await sup.store.add_cost_estimates(ESTIMATES, {"ses-x": SessionCost(1)}, STAMP)

            async def polled() -> bool:
                return (await get(c, period="month")).sources[0].status == "ok"

            await wait_until(polled, what="the first poll of the fake provider")
            yield c


async def get(client: httpx.AsyncClient, **params: str) -> CostReport:
    """The report, read with the one schema (strictly: no unknown keys), as halctl reads it."""
    response = await client.get("/api/v1/cost", params=params)
    assert response.status_code == 200, response.text
    return structure_strict(response.json(), CostReport)


def tokens(n: int) -> TokenCounts:
    return TokenCounts(input=n)


async def test_week_report_follows_the_totals_rule(client: httpx.AsyncClient) -> None:
    r = await get(client, period="week")
    assert (r.period, r.start, r.end, r.days, r.group_by) == ("week", "2026-03-04", "2026-03-10", 7, "project")
    # Anthropic is polled: its bill counts (8.25); OpenAI is not: its estimate counts (0.75).
    assert (r.total_usd, r.estimate_usd, r.gap_usd) == (9.0, 6.75, 2.25)
    assert r.daily_average_usd == report_usd(Decimal(9) / 7)  # rounded the way reports round
    assert r.tokens == tokens(8600)
    assert r.groups == [CostLine("alpha", 7.0, 6.0, tokens(7000)), CostLine("beta", 2.0, 0.75, tokens(1600))]
    assert [(d.date, d.cost_usd, d.estimate_usd) for d in r.daily] == [
        ("2026-03-04", 0.0, 0.0),
        ("2026-03-05", 0.0, 0.0),
        ("2026-03-06", 0.0, 0.0),
        ("2026-03-07", 1.25, 0.0),
        ("2026-03-08", 0.75, 0.75),
        ("2026-03-09", 5.0, 4.5),
        ("2026-03-10", 2.0, 1.5),
    ]
    providers = {p.provider: p for p in r.providers}
    assert providers["anthropic"].cost_usd == 8.25
    assert [(m.model, m.cost_usd) for m in providers["anthropic"].models] == [
        ("claude-sonnet-4", 7.0),
        ("claude-haiku-4", 1.25),
    ]
    assert [(m.model, m.cost_usd) for m in providers["openai"].models] == [("gpt-5", 0.75)]
    assert r.sources == [SourceStatus("anthropic", "ok", last_success=STAMP, billed_through="2026-03-10")]
    assert r.budgets == [BudgetStatus("fleet", 4.0, 2.0, 50.0), BudgetStatus("alpha", 1.0, 2.0, 200.0)]


async def test_the_body_is_the_report_itself(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/cost", params={"period": "today"})).json()
    assert set(body) == {
        "period", "start", "end", "days", "group_by", "total_usd", "estimate_usd", "gap_usd",
        "daily_average_usd", "tokens", "groups", "daily", "providers", "sources", "budgets", "bill_usd",
    }  # fmt: skip
    assert body["bill_usd"] == 2.0  # anthropic's bill for today: all of the total
    assert body["sources"] == [
        {"provider": "anthropic", "status": "ok", "last_success": STAMP, "last_error": None,
         "billed_through": "2026-03-10"}
    ]  # fmt: skip


async def test_today_month_and_from_to(client: httpx.AsyncClient) -> None:
    today = await get(client)  # no period: today
    assert (today.period, today.days, today.total_usd) == ("today", 1, 2.0)
    month = await get(client, period="month")
    assert (month.days, month.total_usd, len(month.daily)) == (30, 19.0, 30)
    explicit = await get(client, **{"from": "2026-03-08", "to": "2026-03-09"})
    assert (explicit.period, explicit.days, explicit.total_usd) == (None, 2, 5.75)
    outside = await get(client, **{"from": "2025-01-01", "to": "2025-01-31"})
    assert (outside.total_usd, outside.groups) == (0.0, [])
    assert outside.budgets[0].spent_usd == 2.0  # budgets always measure today


async def test_group_by_provider_model_and_day(client: httpx.AsyncClient) -> None:
    by_provider = await get(client, period="week", group_by="provider")
    assert [(g.key, g.cost_usd, g.estimate_usd) for g in by_provider.groups] == [
        ("anthropic", 8.25, 6.0),
        ("openai", 0.75, 0.75),
    ]
    by_model = await get(client, period="week", group_by="model")
    assert [(g.key, g.cost_usd) for g in by_model.groups] == [
        ("claude-sonnet-4", 7.0),
        ("claude-haiku-4", 1.25),
        ("gpt-5", 0.75),
    ]
    by_day = await get(client, period="week", group_by="day")
    assert [g.key for g in by_day.groups] == [d.date for d in by_day.daily]
    assert by_day.groups[-1] == CostLine("2026-03-10", 2.0, 1.5, tokens(2000))


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"period": "year"}, "period must be one of today, week, month, got 'year'"),
        ({"group_by": "node"}, "group_by must be one of provider, model, project, day, got 'node'"),
        ({"from": "2026-03-01"}, "to is required with from"),
        ({"to": "2026-03-01"}, "from is required with to"),
        ({"from": "03/01/2026", "to": "2026-03-02"}, "from must be a date like 2026-01-31, got '03/01/2026'"),
        ({"from": "2026-03-05", "to": "2026-03-01"}, "from (2026-03-05) must not be after to (2026-03-01)"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "from/to may span at most 366 days, got 732"),
        ({"period": "week", "from": "2026-03-01", "to": "2026-03-02"}, "either period or from/to, not both"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], words: str
) -> None:
    response = await client.get("/api/v1/cost", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert words in error["message"]


async def test_cost_needs_the_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/cost", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_a_provider_outage_is_a_degraded_cost_component_not_an_outage(tmp_path: Path) -> None:
    key = "sk-admin-openai-0123456789"
    providers = ProvidersConfig(openai=OpenAIProvider(org_api_key=key))  # its key is one of the config's secrets
    config = attrs.evolve(supervisor_config(tmp_path / "s.db"), cost=CostConfig(providers=providers))
    down = FakeSource("openai", None, error=f"openai costs: HTTP 401: Incorrect API key provided: {key}")
    sources: list[CostSource] = [FakeSource("anthropic", BILL), down]
    with trio.fail_after(30):
        async with running(config, sources) as sup, api_client(sup, token=None) as anonymous:
            await sup.store.add_cost_estimates(ESTIMATES, {"ses-x": SessionCost(1)}, STAMP)

            async def degraded() -> bool:
                return bool((await anonymous.get("/readyz")).json()["components"].get("cost", "ok") != "ok")

            await wait_until(degraded, what="the failed poll to show")
            ready = await anonymous.get("/readyz")
            async with api_client(sup) as c:

                async def anthropic_polled() -> bool:
                    return (await get(c, period="week")).sources[0].status == "ok"

                await wait_until(anthropic_polled, what="the other provider's backfill")
                raw = await c.get("/api/v1/cost", params={"period": "week"})
                report = await get(c, period="week")
    assert ready.status_code == 200  # agents and the API still work
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["components"]["database"] == "ok"
    # Short and without the reason: /readyz answers anyone. The reason is in the API.
    assert body["components"]["cost"] == f"degraded: openai poll failing since {STAMP}"
    assert report.sources == [
        SourceStatus("anthropic", "ok", last_success=STAMP, billed_through="2026-03-10"),  # unaffected
        SourceStatus("openai", "error", last_error="openai costs: HTTP 401: Incorrect API key provided: [REDACTED]"),
    ]
    assert key not in ready.text
    assert key not in raw.text
    # openai never billed anything: its estimates count (0.75), on top of anthropic's bill.
    assert (report.total_usd, report.bill_usd) == (9.0, 8.25)


async def test_project_budgets_a_provider_bill_cannot_reach_are_a_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    providers = ProvidersConfig(openai=OpenAIProvider(org_api_key="sk-admin-openai-0123456789"))
    config = attrs.evolve(
        supervisor_config(tmp_path / "s.db"),
        cost=CostConfig(providers=providers),
        budgets=BudgetsConfig(projects={"alpha": 5.0}),
    )
    caplog.set_level(logging.WARNING, logger="halswarm.supervisor.app")
    with trio.fail_after(30):
        async with running(config, []) as sup, api_client(sup) as c:
            assert (await c.get("/readyz")).status_code == 200  # a warning, not an error
    assert (
        "config: budgets.projects: no cost.providers.openai.projects entry maps to alpha; that budget counts "
        "opencode's estimate of openai spend, never openai's bill"
    ) in [r.getMessage() for r in caplog.records]


async def test_an_absurd_session_cost_does_not_crash_the_supervisor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = attrs.evolve(supervisor_config(tmp_path / "s.db"), cost=CostConfig(estimate_interval_seconds=0.05))
    absurd = Session(id="ses-absurd", node_id="n", project="alpha", model="anthropic/claude-x", cost_usd=1e10)
    fine = Session(id="ses-fine", node_id="n", project="alpha", model="anthropic/claude-x", cost_usd=1.25)
    caplog.set_level(logging.WARNING, logger="halswarm.cost")
    with trio.fail_after(30):
        async with running(config, []) as sup, api_client(sup) as c:
            sup.tracker.apply(1, absurd)
            sup.tracker.apply(1, fine)

            async def booked() -> bool:
                return (await get(c, period="today")).estimate_usd == 1.25

            # The tick that booked it also met the absurd session (once an OverflowError
            # that took the whole supervisor down, again after every restart).
            await wait_until(booked, what="the sane session's estimate")
            ready = (await c.get("/readyz")).json()
            report = await get(c, period="today")
    assert ready["status"] == "healthy"
    assert report.estimate_usd == 1.25
    warnings = [r.getMessage() for r in caplog.records if "impossible cost figure" in r.getMessage()]
    assert len(warnings) == 1
    assert "ses-absurd" in warnings[0]


# ---- estimates from simulated sessions, end to end -----------------------------------------


async def test_simulated_sessions_estimates_grow_per_session_and_per_project(tmp_path: Path) -> None:
    config = attrs.evolve(supervisor_config(tmp_path / "s.db"), cost=CostConfig(estimate_interval_seconds=0.2))
    projects = [Project("proj-a", str(tmp_path / "a")), Project("proj-b", str(tmp_path / "b"))]
    with trio.fail_after(60):
        async with open_supervisor(config) as sup, api_client(sup) as client:
            agent_cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-1", projects=projects)

            async def by_project() -> dict[str, float]:
                return {g.key: g.estimate_usd for g in (await get(client, period="today")).groups}

            async def session_costs() -> dict[str, float]:
                sessions = (await client.get("/api/v1/sessions")).json()["sessions"]
                return {str(s["id"]): float(s["cost_usd"]) for s in sessions}

            async with open_sim_agent(agent_cfg, sessions=4, rate=50.0):

                async def spending() -> bool:
                    estimates = await by_project()
                    return set(estimates) == {"proj-a", "proj-b"} and all(v > 0 for v in estimates.values())

                await wait_until(spending, within=30, what="estimates for both projects")
                first, first_sessions = await by_project(), await session_costs()

                async def grown() -> bool:
                    now = await by_project()
                    return all(now[p] > first[p] for p in first)

                await wait_until(grown, within=30, what="both projects' estimates to grow")
                later_sessions = await session_costs()
                assert any(later_sessions[sid] > cost for sid, cost in first_sessions.items())
                assert all(later_sessions[sid] >= cost for sid, cost in first_sessions.items())

            # The agent stopped: its sessions' costs are final. The next tick books the rest.
            def expected() -> dict[str, float]:
                final = sup.tracker.sessions()
                return {
                    p.name: report_usd(
                        sum((Decimal(repr(s.cost_usd)) for s in final if s.project == p.name), Decimal(0))
                    )
                    for p in projects
                }

            async def settled() -> bool:
                return await by_project() == expected()

            await wait_until(settled, within=10, what="estimates to equal the sessions' final costs")
            r = await get(client, period="today")
    assert r.total_usd == r.estimate_usd  # no provider polled: estimates are the total
    assert r.gap_usd == 0.0
    assert [(p.provider, [m.model for m in p.models]) for p in r.providers] == [("anthropic", ["claude-sonnet-4"])]
