"""Cost tracking end to end: a real supervisor polls fake Anthropic and OpenAI admin APIs
over loopback HTTP (the real provider clients, the documented shapes), stores daily
buckets, and answers the same report to the API and to ``halctl cost``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
import httpx
import pytest
import trio

from halswarm.config.supervisor import AnthropicProvider, CostConfig, OpenAIProvider, ProvidersConfig
from halswarm.convert import structure_strict
from halswarm.cost.model import CostReport
from halswarm.supervisor.app import SupervisorHandle
from halswarm.testing import TEST_TOKEN, api_client, open_supervisor, supervisor_config, wait_until
from halswarm.testing.halctl import run_halctl
from tests.cost.fake_providers import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODELS,
    ANTHROPIC_WORKSPACES,
    OPENAI_KEY,
    OPENAI_MODELS,
    OPENAI_PROJECTS,
    Dataset,
    FakeAnthropic,
    FakeOpenAI,
    FakeServer,
    open_fake_anthropic,
    open_fake_openai,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

pytestmark = pytest.mark.slow

TODAY = dt.date(2026, 3, 10)
FIRST = TODAY - dt.timedelta(days=9)  # ten days of bills, the first poll's backfill
EMPTY_DAY = 3  # offset of a day with no usage at all (empty buckets)
WORKSPACES = {"wrkspc_01alpha": "alpha", "wrkspc_01beta": "beta"}
PROJECTS = {"proj_alpha": "alpha"}
MICRO = Decimal("0.000001")


def fixed_now() -> dt.datetime:
    return dt.datetime(TODAY.year, TODAY.month, TODAY.day, 12, 0, tzinfo=dt.UTC)


ANTHROPIC_BILL = Dataset.seeded(
    start=FIRST, days=10, models=ANTHROPIC_MODELS, scopes=ANTHROPIC_WORKSPACES, seed=1, empty_days=[EMPTY_DAY]
)
OPENAI_BILL = Dataset.seeded(
    start=FIRST, days=10, models=OPENAI_MODELS, scopes=OPENAI_PROJECTS, seed=2, empty_days=[EMPTY_DAY]
)


@attrs.frozen
class Fleet:
    supervisor: SupervisorHandle
    client: httpx.AsyncClient
    anthropic: FakeServer[FakeAnthropic]
    openai: FakeServer[FakeOpenAI]


@asynccontextmanager
async def polling_fleet(tmp_path: Path, *, openai_key: str = OPENAI_KEY) -> AsyncGenerator[Fleet, None]:
    """A supervisor whose cost poller reads both fakes every 1.2 s, first poll of each done.

    With a wrong *openai_key* that first poll fails (the fake answers 401).
    """
    async with open_fake_anthropic(ANTHROPIC_BILL) as anthropic, open_fake_openai(OPENAI_BILL) as openai:
        providers = ProvidersConfig(
            anthropic=AnthropicProvider(
                admin_api_key=ANTHROPIC_KEY, base_url=anthropic.base_url, workspaces=WORKSPACES
            ),
            openai=OpenAIProvider(org_api_key=openai_key, base_url=openai.base_url, projects=PROJECTS),
        )
        cost = CostConfig(
            poll_interval_minutes=0.02, providers=providers, backfill_days=10, repoll_days=3, max_attempts=1
        )
        config = attrs.evolve(supervisor_config(tmp_path / "s.db"), cost=cost)
        async with open_supervisor(config, now=fixed_now) as sup, api_client(sup) as client:
            fleet = Fleet(sup, client, anthropic, openai)

            async def polled() -> bool:
                return all(s.status != "pending" for s in (await report(fleet, period="today")).sources)

            await wait_until(polled, within=30, what="the first poll of both providers")
            yield fleet


async def report(fleet: Fleet, **params: str) -> CostReport:
    response = await fleet.client.get("/api/v1/cost", params=params)
    assert response.status_code == 200, response.text
    return structure_strict(response.json(), CostReport)


def usd(value: Decimal) -> float:
    return float(value.quantize(MICRO))


def expected_by(key: str) -> dict[str, Decimal]:
    """The fakes' bills over the ten days, summed by ``day`` or ``project``."""
    totals: dict[str, Decimal] = {}
    for provider, dataset, names in (("anthropic", ANTHROPIC_BILL, WORKSPACES), ("openai", OPENAI_BILL, PROJECTS)):
        for bucket in dataset.expected_buckets(provider, names):  # type: ignore[arg-type]
            group = bucket.day.isoformat() if key == "day" else bucket.project
            totals[group] = totals.get(group, Decimal(0)) + bucket.cost_usd
    return totals


def stored_rows(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM cost_daily ORDER BY 1, 2, 3, 4, 5").fetchall()
    finally:
        conn.close()


async def test_bills_are_stored_to_the_cent_and_polling_again_changes_nothing(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with polling_fleet(tmp_path) as fleet:
            dates = {"from": FIRST.isoformat(), "to": TODAY.isoformat()}
            by_provider = await report(fleet, group_by="provider", **dates)
            by_project = await report(fleet, group_by="project", **dates)
            by_day = await report(fleet, group_by="day", **dates)
            rows = await trio.to_thread.run_sync(stored_rows, tmp_path / "s.db")
            requests_before = fleet.anthropic.fake.count() + fleet.openai.fake.count()

            async def polled_again() -> bool:
                requests = fleet.anthropic.fake.count() + fleet.openai.fake.count()
                return requests >= requests_before + 4 and all(
                    s.status == "ok" for s in (await report(fleet, period="today")).sources
                )

            await wait_until(polled_again, within=30, what="a second poll of both providers")
            assert await trio.to_thread.run_sync(stored_rows, tmp_path / "s.db") == rows
            assert await report(fleet, group_by="project", **dates) == by_project

    bill = ANTHROPIC_BILL.total_usd() + OPENAI_BILL.total_usd()
    assert by_provider.total_usd == usd(bill)
    assert {g.key: g.cost_usd for g in by_provider.groups} == {
        "anthropic": usd(ANTHROPIC_BILL.total_usd()),
        "openai": usd(OPENAI_BILL.total_usd()),
    }
    # Workspaces and projects mapped to halswarm projects; the default workspace is "".
    assert {g.key: g.cost_usd for g in by_project.groups} == {k: usd(v) for k, v in expected_by("project").items()}
    assert {"alpha", "beta", ""} <= {g.key for g in by_project.groups}
    # Every day is in the chart, the empty one at zero.
    daily = {d.date: d.cost_usd for d in by_day.daily}
    assert len(daily) == 10
    assert daily[(FIRST + dt.timedelta(days=EMPTY_DAY)).isoformat()] == 0.0
    assert daily == {day: usd(expected_by("day").get(day, Decimal(0))) for day in daily}
    assert by_day.daily_average_usd == usd(bill / 10)
    # No opencode sessions ran: the whole bill is the gap.
    assert (by_provider.estimate_usd, by_provider.gap_usd) == (0.0, by_provider.total_usd)


async def test_a_provider_outage_keeps_its_data_and_shows_degraded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        async with polling_fleet(tmp_path) as fleet, api_client(fleet.supervisor, token=None) as anonymous:
            before = await report(fleet, period="week", group_by="provider")
            fleet.openai.fake.fail_next(10_000, status=500)

            async def degraded() -> bool:
                return bool("openai" in (await anonymous.get("/readyz")).json()["components"].get("cost", ""))

            await wait_until(degraded, within=30, what="the failing poll to show in /readyz")
            ready = await anonymous.get("/readyz")
            during = await report(fleet, period="week", group_by="provider")
    assert ready.status_code == 200  # a provider outage does not take the supervisor out of service
    assert ready.json()["status"] == "degraded"
    assert ready.json()["components"]["cost"].startswith("degraded: openai poll failing since")
    # The earlier data stays; the report says which provider is stale and why.
    assert during.total_usd == before.total_usd
    assert [(s.provider, s.status) for s in during.sources] == [("anthropic", "ok"), ("openai", "error")]
    openai = during.sources[1]
    assert openai.last_error is not None
    assert "HTTP 500" in openai.last_error
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cost poll of openai failed")]
    assert failures
    assert "earlier data is kept" in failures[0]
    assert "next try in" in failures[0]
    assert all(OPENAI_KEY not in r.getMessage() for r in caplog.records)


async def test_a_rejected_key_is_an_error_that_never_shows_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-admin-wrong-0123456789abcdefghij"  # the fake quotes a wrong key back in its 401
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(60):
        async with (
            polling_fleet(tmp_path, openai_key=wrong) as fleet,
            api_client(fleet.supervisor, token=None) as anonymous,
        ):
            ready = await anonymous.get("/readyz")
            raw = await fleet.client.get("/api/v1/cost", params={"period": "week", "group_by": "provider"})
            week = structure_strict(raw.json(), CostReport)
            requests = fleet.openai.fake.count()
    assert requests >= 1
    assert set(fleet.openai.fake.statuses) == {401}  # not retried: a bad key stays bad
    openai = week.sources[1]
    assert (openai.provider, openai.status, openai.last_success) == ("openai", "error", None)
    assert openai.last_error is not None
    assert "HTTP 401 authentication failed (check the admin API key)" in openai.last_error
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["components"]["cost"].startswith("degraded: openai poll failing since ")
    # The key is in no answer and no log line (message, context fields or traceback).
    assert wrong not in ready.text
    assert wrong not in raw.text
    for record in caplog.records:
        assert wrong not in record.getMessage()
        assert wrong not in repr(getattr(record, "ctx", ""))
        assert wrong not in (record.exc_text or "")
    # openai never billed: its figures are opencode's estimate (none here), not its stale rows.
    assert {g.key: g.cost_usd for g in week.groups}.get("openai", 0.0) == 0.0


async def test_halctl_cost_week_and_the_api_agree(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with polling_fleet(tmp_path) as fleet:
            api = (await fleet.client.get("/api/v1/cost", params={"period": "week", "group_by": "model"})).json()
            env = {"HALCTL_URL": f"http://127.0.0.1:{fleet.supervisor.http_port}", "HALCTL_TOKEN": TEST_TOKEN}
            as_json = await run_halctl(["-o", "json", "cost", "week", "--by", "model"], env=env, cwd=tmp_path)
            table = await run_halctl(["cost", "week", "--by", "model"], env=env, cwd=tmp_path)
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == api
    assert table.exit_code == 0, table.stderr
    week = structure_strict(api, CostReport)
    assert f"total ${week.total_usd:,.2f}" in table.stdout
    for group in week.groups:
        assert group.key in table.stdout
    assert table.stdout.count("2026-03-") >= 7  # one chart row per day of the week
