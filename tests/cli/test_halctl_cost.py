"""``halctl cost`` against a loopback stand-in for ``GET /api/v1/cost``.

The stand-in (quart-trio on hypercorn, 127.0.0.1 port 0) answers a :class:`CostReport`
built here from the model classes, unstructured the way the API does, and records every
request it gets: the query parameters halctl sends per option are checked as well as
what the operator reads.
"""

from __future__ import annotations

import io
import re
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs
import orjson
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from rich.console import Console

from halswarm.cli.cost import cost_view
from halswarm.convert import unstructure
from halswarm.cost.model import (
    BudgetStatus,
    CostLine,
    CostReport,
    DayLine,
    ModelLine,
    ProviderLine,
    SourceStatus,
    TokenCounts,
)
from halswarm.jsontypes import JSONValue
from halswarm.testing import TEST_TOKEN, free_port
from halswarm.testing.halctl import plain_console, run_halctl

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    from halswarm.jsontypes import JSONObject
    from halswarm.testing.halctl import Result

_GRACE: Final = 2.0
NOW: Final = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DAYS: Final = [
    ("2026-11-18", 12.5),
    ("2026-11-19", 0.0),
    ("2026-11-20", 30.25),  # the costliest day
    ("2026-11-21", 0.0004),  # tiny, not zero
    ("2026-11-22", 8.0),
    ("2026-11-23", 0.0),
    ("2026-11-24", 2.0),
]
REPORT: Final = CostReport(
    period="week",
    start="2026-11-18",
    end="2026-11-24",
    days=7,
    group_by="project",
    total_usd=52.7504,
    estimate_usd=50.1,
    gap_usd=2.6504,
    daily_average_usd=7.535771,
    tokens=TokenCounts(3_456_789, 234_567, 12_345_678, 456_789),
    groups=[
        CostLine("payments-api", 40.25, 38.0, TokenCounts(2_400_000, 180_000, 9_000_000, 400_000)),
        CostLine("web", 12.5, 12.1, TokenCounts(1_056_000, 54_000, 3_345_678, 56_789)),
        CostLine("", 0.0004, 0.0, TokenCounts(789, 567)),
    ],
    daily=[DayLine(date, cost, cost * 0.95) for date, cost in DAYS],
    providers=[
        ProviderLine(
            "anthropic",
            44.75,
            TokenCounts(3_000_000, 200_000, 12_000_000, 400_000),
            [
                ModelLine("claude-sonnet-4-5", 40.0, TokenCounts(2_500_000, 150_000, 10_000_000, 300_000)),
                ModelLine("claude-haiku-4-5", 4.75, TokenCounts(500_000, 50_000, 2_000_000, 100_000)),
            ],
        ),
        ProviderLine(
            "openai",
            8.0004,
            TokenCounts(456_789, 34_567, 345_678, 56_789),
            [
                ModelLine("gpt-5", 8.0, TokenCounts(456_000, 34_000, 345_678, 56_789)),
                ModelLine("gpt-5-mini", 0.0004, TokenCounts(789, 567)),
            ],
        ),
    ],
    sources=[
        SourceStatus("anthropic", "pending"),
        SourceStatus(
            "openai", "error", "2026-11-24T09:00:00.000000Z", "HTTP 500 from organization/costs", "2026-11-24"
        ),
    ],
    budgets=[
        BudgetStatus("fleet", 50.0, 42.5, 85.0),
        BudgetStatus("payments-api", 30.0, 36.0, 120.0),
        BudgetStatus("web", 20.0, 2.0, 10.0),
        BudgetStatus("docs", 10.0, 7.5, 75.0, warn_percent=70.0),
    ],
    bill_usd=8.0004,  # openai's bill up to its last good poll; anthropic (pending) counts estimates
)
CHART_ROW = re.compile(r"^(\d{4}-\d\d-\d\d)  (.*?) +(\$[0-9.,]+)$")


# ---- the stand-in API ---------------------------------------------------------------------


@attrs.frozen
class Received:
    """One request the stand-in got."""

    path: str
    query: dict[str, str]
    authorization: str | None


@attrs.define
class FakeCostApi:
    """Answers ``GET /api/v1/cost`` with ``status`` and ``body``; records every request."""

    url: str = ""
    status: int = 200
    body: JSONValue = attrs.field(factory=lambda: unstructure(REPORT))
    received: list[Received] = attrs.field(factory=list)

    def env(self) -> dict[str, str]:
        """What halctl needs to reach it."""
        return {"HALCTL_URL": self.url, "HALCTL_TOKEN": TEST_TOKEN}

    @property
    def query(self) -> dict[str, str]:
        """The query parameters of the one request halctl made."""
        assert len(self.received) == 1, self.received
        return self.received[0].query


def _app(fake: FakeCostApi) -> QuartTrio:
    app = QuartTrio("fake-cost-api")

    @app.get("/api/v1/cost")
    async def cost() -> Response:
        fake.received.append(Received(request.path, dict(request.args), request.headers.get("Authorization")))
        return Response(orjson.dumps(fake.body), status=fake.status, content_type="application/json")

    return app


@asynccontextmanager
async def open_fake_cost_api() -> AsyncGenerator[FakeCostApi]:
    """Serve a :class:`FakeCostApi` on ``127.0.0.1:0`` for the ``async with`` block.

    Resource handling: hypercorn runs in a nursery owned by this block and is stopped by
    its shutdown trigger, then cancelled after a short grace.
    """
    fake = FakeCostApi()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = _GRACE
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, _app(fake), config, shutdown_trigger=shutdown.wait))
        fake.url = f"http://127.0.0.1:{urlsplit(binds[0]).port}"
        try:
            yield fake
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + _GRACE + 1.0


@pytest.fixture
async def api() -> AsyncIterator[FakeCostApi]:
    """The stand-in, with a hang guard."""
    with trio.fail_after(30):
        async with open_fake_cost_api() as fake:
            yield fake


async def halctl(api: FakeCostApi, tmp_path: Path, *args: str) -> Result:
    """``halctl ARGS`` pointed at the stand-in, from an empty directory with its own HOME."""
    return await run_halctl(list(args), env={"HOME": str(tmp_path), **api.env()}, cwd=tmp_path)


def section(stdout: str, title: str) -> str:
    """The lines from *title* (a section's title line) to the next blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip() == title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def chart(stdout: str) -> dict[str, tuple[str, str]]:
    """The per-day chart's rows: date -> (bar, amount)."""
    rows = {}
    for line in section(stdout, "per day (UTC)").splitlines():
        match = CHART_ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3))
    return rows


def row(stdout: str, key: str) -> list[str]:
    """The cells of the first table row whose first cell is *key*."""
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == key:
            return cells
    raise AssertionError(f"no row {key!r} in:\n{stdout}")


# ---- what is asked ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "query"),
    [
        ([], {"period": "today", "group_by": "project"}),
        (["week"], {"period": "week", "group_by": "project"}),
        (["today", "--by", "model"], {"period": "today", "group_by": "model"}),
        (["month", "--by", "provider"], {"period": "month", "group_by": "provider"}),
        (["--by", "day", "week"], {"period": "week", "group_by": "day"}),
        (
            ["--from", "2026-11-01", "--to", "2026-11-24"],
            {"from": "2026-11-01", "to": "2026-11-24", "group_by": "project"},
        ),
        (
            ["--from", "2026-11-24", "--to", "2026-11-24", "--by", "day"],
            {"from": "2026-11-24", "to": "2026-11-24", "group_by": "day"},
        ),
    ],
)
async def test_each_option_asks_the_api_for_it(
    api: FakeCostApi, tmp_path: Path, args: list[str], query: dict[str, str]
) -> None:
    result = await halctl(api, tmp_path, "cost", *args)
    assert result.exit_code == 0, result.stderr
    assert api.query == query
    assert api.received[0].authorization == f"Bearer {TEST_TOKEN}"


async def test_from_alone_runs_to_today(api: FakeCostApi, tmp_path: Path) -> None:
    before = datetime.now(UTC).date().isoformat()
    result = await halctl(api, tmp_path, "cost", "--from", "2020-01-01")
    after = datetime.now(UTC).date().isoformat()
    assert result.exit_code == 0, result.stderr
    assert api.query["from"] == "2020-01-01"
    assert api.query["to"] in {before, after}
    assert "period" not in api.query


# ---- what the operator reads --------------------------------------------------------------


async def test_header_groups_providers_and_budgets(api: FakeCostApi, tmp_path: Path) -> None:
    result = await halctl(api, tmp_path, "cost", "week")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    head = out.splitlines()[:2]
    assert head[0] == "cost week 2026-11-18..2026-11-24 (7 days): total $52.75, daily average $7.54"
    # The total split truthfully: the providers' own data, and estimates where none counts.
    assert head[1] == "provider bill $8.00 + estimated $44.75; opencode estimate $50.10, gap $2.65"

    # Groups: cost, estimate, share, tokens in/out/cache; the total as a footer.
    groups = section(out, "by project")
    assert row(groups, "PROJECT") == ["PROJECT", "COST", "ESTIMATE", "SHARE", "IN", "OUT", "CACHE"]
    assert row(groups, "payments-api") == ["payments-api", "$40.25", "$38.00", "76.3%", "2.4M", "180k", "9.4M"]
    assert row(groups, "web") == ["web", "$12.50", "$12.10", "23.7%", "1.1M", "54.0k", "3.4M"]
    assert row(groups, "(none)") == ["(none)", "$0.0004", "$0.00", "0.0%", "789", "567", "0"]
    assert row(groups, "total") == ["total", "$52.75", "$50.10", "100.0%", "3.5M", "235k", "12.8M"]

    # Every provider, then its models (indented).
    providers = section(out, "by provider and model")
    lines = providers.splitlines()[2:]  # after the header and its rule
    assert [(line.startswith("  "), line.split()[0]) for line in lines] == [
        (False, "anthropic"),
        (True, "claude-sonnet-4-5"),
        (True, "claude-haiku-4-5"),
        (False, "openai"),
        (True, "gpt-5"),
        (True, "gpt-5-mini"),
    ]
    assert row(providers, "anthropic")[1:3] == ["$44.75", "84.8%"]
    assert row(providers, "claude-haiku-4-5")[1:3] == ["$4.75", "9.0%"]
    assert row(providers, "gpt-5-mini")[1] == "$0.0004"  # a tiny spend never reads as $0.00

    # Providers not (yet) polled, and budgets with 80 % / 100 % said in words.
    flat = " ".join(out.split())
    assert "anthropic: pending, not polled yet: its figures are opencode's estimate" in flat
    assert "openai: error, last good poll" in flat  # ...N h ago: the real clock
    assert "ago: its bill counts through 2026-11-24, opencode's estimate after" in flat
    assert "(HTTP 500 from organization/costs)" in flat
    budgets = section(out, "budgets today")
    assert row(budgets, "fleet") == ["fleet", "$42.50", "of", "$50.00", "85%", "above", "80%"]
    assert row(budgets, "payments-api") == ["payments-api", "$36.00", "of", "$30.00", "120%", "exceeded"]
    assert row(budgets, "web") == ["web", "$2.00", "of", "$20.00", "10%"]
    # The warning level is the configured one (budgets.warn_percent), not a fixed 80 %.
    assert row(budgets, "docs") == ["docs", "$7.50", "of", "$10.00", "75%", "above", "70%"]


async def test_chart_has_every_day_scaled_to_the_biggest(api: FakeCostApi, tmp_path: Path) -> None:
    result = await halctl(api, tmp_path, "cost", "week")
    assert result.exit_code == 0, result.stderr
    rows = chart(result.stdout)
    assert list(rows) == [date for date, _ in DAYS]
    assert {date: amount for date, (_, amount) in rows.items()} == {
        "2026-11-18": "$12.50",
        "2026-11-19": "$0.00",
        "2026-11-20": "$30.25",
        "2026-11-21": "$0.0004",
        "2026-11-22": "$8.00",
        "2026-11-23": "$0.00",
        "2026-11-24": "$2.00",
    }
    bars = {date: len(bar) for date, (bar, _) in rows.items()}
    longest = max(bars.values())
    assert [date for date, n in bars.items() if n == longest] == ["2026-11-20"]
    assert bars["2026-11-19"] == bars["2026-11-23"] == 0  # no spend, no bar
    assert bars["2026-11-21"] == 1  # a sliver, not nothing
    assert bars["2026-11-18"] > bars["2026-11-22"] > bars["2026-11-24"] > 0
    assert abs(bars["2026-11-18"] / longest - 12.5 / 30.25) < 0.05
    assert all(len(line) <= 120 for line in result.stdout.splitlines())


async def test_json_is_the_report_as_served(api: FakeCostApi, tmp_path: Path) -> None:
    result = await halctl(api, tmp_path, "--output", "json", "cost", "week")
    assert result.exit_code == 0, result.stderr
    assert result.json() == unstructure(REPORT)
    again = await halctl(api, tmp_path, "cost", "--from", "2026-11-18", "--to", "2026-11-24", "-o", "json")
    assert again.json() == api.body


async def test_empty_period(api: FakeCostApi, tmp_path: Path) -> None:
    empty = attrs.evolve(
        REPORT,
        period="today",
        start="2026-11-24",
        end="2026-11-24",
        days=1,
        total_usd=0.0,
        estimate_usd=0.0,
        gap_usd=0.0,
        daily_average_usd=0.0,
        tokens=TokenCounts(),
        groups=[],
        daily=[DayLine("2026-11-24", 0.0, 0.0)],
        providers=[],
        sources=[SourceStatus("anthropic", "ok", "2026-11-24T11:00:00.000000Z")],
        budgets=[],
    )
    api.body = unstructure(empty)
    result = await halctl(api, tmp_path, "cost")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "cost today 2026-11-24 (1 day): total $0.00, daily average $0.00"
    assert "no spend recorded in this period" in result.stdout
    assert chart(result.stdout) == {"2026-11-24": ("", "$0.00")}
    for absent in ("PROVIDER / MODEL", "budgets", "anthropic"):
        assert absent not in result.stdout


# ---- rendering alone: widths, no colour, days the API left out ----------------------------


def render(report: CostReport, width: int, console: Console | None = None) -> str:
    buffer = io.StringIO()
    (console or plain_console(buffer, width)).print(cost_view(report, NOW, width))
    return buffer.getvalue()


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_fits_the_terminal(width: int) -> None:
    out = render(REPORT, width)
    assert all(len(line) <= width for line in out.splitlines())
    assert row(out, "payments-api")[1:4] == ["$40.25", "$38.00", "76.3%"]  # figures never cut
    assert ("CACHE" in out) == (width >= 64)
    rows = chart(out)
    assert list(rows) == [date for date, _ in DAYS]
    assert max(len(bar) for bar, _ in rows.values()) == min(60, width - 10 - 2 - 7 - 1)


def test_chart_without_block_characters() -> None:
    raw = io.BytesIO()
    ascii_file = io.TextIOWrapper(raw, encoding="ascii", errors="strict", write_through=True)
    console = Console(file=ascii_file, width=80, color_system=None)
    console.print(cost_view(attrs.evolve(REPORT, groups=[], providers=[]), NOW, 80))
    out = raw.getvalue().decode("ascii")
    bars = {date: bar for date, (bar, _) in chart(out).items()}
    assert set("".join(bars.values())) == {"#"}
    assert len(bars["2026-11-20"]) == 60
    assert bars["2026-11-19"] == ""
    assert bars["2026-11-21"] == "#"


def test_days_the_api_left_out_show_as_zero() -> None:
    sparse = attrs.evolve(REPORT, daily=[DayLine("2026-11-20", 30.25, 29.0), DayLine("2026-11-22", 8.0, 7.6)])
    rows = chart(render(sparse, 100))
    assert list(rows) == [date for date, _ in DAYS]
    assert rows["2026-11-18"] == ("", "$0.00")
    assert rows["2026-11-22"][1] == "$8.00"


# ---- bad options and failing servers ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["year"], "'year' is not one of 'today', 'week', 'month'"),
        (["week", "--by", "team"], "'--by'"),
        (["--from", "2026-13-01"], "'--from'"),
        (["--from", "24/11/2026"], "'--from'"),
        (["--from", "2026-11-01", "--to", "soon"], "'--to'"),
        (["week", "--from", "2026-11-01"], "--from cannot be combined with a period (week)"),
        (["month", "--from", "2026-11-01", "--to", "2026-11-02"], "--from/--to cannot be combined"),
        (["--to", "2026-11-24"], "--to needs --from"),
        (["--from", "2026-11-24", "--to", "2026-11-01"], "Invalid value for '--to': 2026-11-01 is before --from"),
        (["--from", "2999-01-01"], "Invalid value for '--from': 2999-01-01 is after today"),
    ],
)
async def test_bad_options_exit_2_naming_the_option(
    api: FakeCostApi, tmp_path: Path, args: list[str], named: str
) -> None:
    result = await halctl(api, tmp_path, "cost", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert named in result.stderr
    assert api.received == []  # nothing was asked


async def test_unreachable_supervisor_is_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"HOME": str(tmp_path), "HALCTL_URL": url, "HALCTL_TOKEN": TEST_TOKEN}
    result = await run_halctl(["cost", "week"], env=env, cwd=tmp_path)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot reach the supervisor at {url} (connection refused)")


async def test_rejected_token_is_exit_4(api: FakeCostApi, tmp_path: Path) -> None:
    api.status = 401
    api.body = {"error": {"code": "unauthorized", "message": "missing or invalid bearer token"}}
    result = await halctl(api, tmp_path, "cost", "week")
    assert result.exit_code == 4
    assert result.stdout == ""
    assert "authentication failed: the supervisor rejected the API token (from HALCTL_TOKEN)" in result.stderr
    assert TEST_TOKEN not in result.stderr


async def test_refused_parameters_are_exit_1_with_the_servers_message(api: FakeCostApi, tmp_path: Path) -> None:
    api.status = 400
    api.body = {"error": {"code": "invalid_parameter", "message": "from/to may span at most 366 days"}}
    result = await halctl(api, tmp_path, "cost", "--from", "2020-01-01", "--to", "2026-01-01")
    assert result.exit_code == 1
    assert result.stdout == ""
    # The correlation id halctl sent finds the request in the supervisor's logs.
    assert re.fullmatch(
        r"error: from/to may span at most 366 days \(invalid_parameter, HTTP 400; correlation id [0-9a-f]{16}\)",
        result.stderr.strip(),
    ), result.stderr


async def test_an_answer_that_is_not_the_report_schema_is_exit_1(api: FakeCostApi, tmp_path: Path) -> None:
    body = unstructure(REPORT)
    assert isinstance(body, dict)
    drifted: JSONObject = {("total" if key == "total_usd" else key): value for key, value in body.items()}
    api.body = drifted
    result = await halctl(api, tmp_path, "cost", "week")
    assert result.exit_code == 1
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("error: unexpected answer from the supervisor:")
    assert "total_usd: required key is missing" in message


async def test_an_older_supervisor_without_bill_usd_still_reads(api: FakeCostApi, tmp_path: Path) -> None:
    body = unstructure(REPORT)
    assert isinstance(body, dict)
    api.body = {key: value for key, value in body.items() if key != "bill_usd"}
    result = await halctl(api, tmp_path, "cost", "week")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == "opencode estimate $50.10, gap $2.65"  # no split it cannot know


async def test_fields_a_newer_supervisor_adds_are_ignored(api: FakeCostApi, tmp_path: Path) -> None:
    body = unstructure(REPORT)
    assert isinstance(body, dict)
    api.body = {**body, "forecast_usd": 99.0}
    result = await halctl(api, tmp_path, "cost", "week")
    assert result.exit_code == 0, result.stderr
    assert "total $52.75" in result.stdout
