"""``halctl cost [today|week|month] [--by project|model|provider|day] [--from D --to D]``.

One ``GET /api/v1/cost`` answers a :class:`~halswarm.cost.model.CostReport`, the one
report schema the API, halctl and Discord share (issue 5). halctl parses it with the
strict converter, so a field the server renamed fails loudly (exit 1, naming the key)
instead of printing zeros, the original's bug. The table output is:

* a header: period and days, total, daily average; how the total splits into the
  providers' bill and opencode's estimate where no bill counts, all of opencode's
  estimate, and the gap between the total and it;
* the groups of ``--by`` with cost, estimate, share and tokens, and their total;
* every provider with its models (the product spec's layout);
* a bar per day, scaled to the costliest day; days without spend show as ``$0.00``;
* providers whose last poll failed or that were never polled, and today's budgets
  (80 % and 100 % highlighted, and said in words for terminals without colour).

``-o json`` prints the report exactly as the API sent it.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Final

import asyncclick as click
import attrs
import cattrs
from rich import box
from rich.console import Group, NewLine
from rich.table import Table
from rich.text import Text

from halswarm.cli.client import ApiError
from halswarm.cli.context import app_of, output_option
from halswarm.cli.render import ago, status_text, usd
from halswarm.convert import converter, describe_errors
from halswarm.cost.model import COST_GROUPINGS, COST_PERIODS, CostGrouping, CostPeriod, CostReport, DayLine

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

    from halswarm.cli.client import ApiClient
    from halswarm.cost.model import BudgetStatus, SourceStatus, TokenCounts
    from halswarm.jsontypes import JSONObject

__all__ = [
    "COST_PATH",
    "CostQuery",
    "DayChart",
    "budgets_table",
    "cost",
    "cost_header",
    "cost_query",
    "cost_view",
    "every_day",
    "fetch_cost",
    "groups_table",
    "providers_table",
]

COST_PATH: Final = "/api/v1/cost"
DEFAULT_PERIOD: Final[CostPeriod] = "today"
DEFAULT_GROUPING: Final[CostGrouping] = "project"

_DATE_FORMAT: Final = "%Y-%m-%d"
_KEY_HEADERS: Final[dict[CostGrouping, str]] = {
    "project": "PROJECT",
    "model": "MODEL",
    "provider": "PROVIDER",
    "day": "DAY",
}
_KEY_MIN_WIDTH: Final = 8
_TOKENS_FROM_WIDTH: Final = 64  # narrower terminals leave the token columns out
_BAR_MAX: Final = 60  # cells; wider bars read no better
_BAR_EIGHTHS: Final = " ▏▎▍▌▋▊▉"
_BUDGET_OVER: Final = 100.0


# ---- the request --------------------------------------------------------------------------


@attrs.frozen
class CostQuery:
    """What ``GET /api/v1/cost`` is asked: a period, or whole UTC days ``start..end``."""

    group_by: CostGrouping
    period: CostPeriod | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    def params(self) -> dict[str, str | int | float]:
        """The query string: ``period`` or ``from``/``to``, and ``group_by``."""
        params: dict[str, str | int | float] = {}
        if self.period is not None:
            params["period"] = self.period
        if self.start is not None and self.end is not None:
            params["from"] = self.start.isoformat()
            params["to"] = self.end.isoformat()
        params["group_by"] = self.group_by
        return params


def cost_query(
    ctx: click.Context,
    *,
    period: str | None,
    group_by: str,
    start: dt.date | None,
    end: dt.date | None,
    today: dt.date,
) -> CostQuery:
    """Check the options and turn them into a :class:`CostQuery`.

    Without a period or range the period is ``today``; ``--to`` defaults to *today*.

    Raises:
        click.UsageError: (exit 2) a period mixed with ``--from``/``--to``, ``--to``
            without ``--from``, a range that ends before it starts, or (without
            ``--to``) one that starts after today; the message names the option.
    """
    grouping = next(g for g in COST_GROUPINGS if g == group_by)
    if period is not None and (start is not None or end is not None):
        given = "/".join(name for name, value in (("--from", start), ("--to", end)) if value is not None)
        raise click.UsageError(f"{given} cannot be combined with a period ({period}); give one or the other", ctx)
    if start is None:
        if end is not None:
            raise click.UsageError("--to needs --from (the first day of the range)", ctx)
        chosen = next(p for p in COST_PERIODS if p == (period or DEFAULT_PERIOD))
        return CostQuery(grouping, period=chosen)
    if end is None:
        if start > today:
            raise click.BadParameter(
                f"{start} is after today ({today}, UTC); give --to as well", ctx, param_hint="'--from'"
            )
        end = today
    if end < start:
        raise click.BadParameter(f"{end} is before --from {start}", ctx, param_hint="'--to'")
    return CostQuery(grouping, start=start, end=end)


async def fetch_cost(api: ApiClient, query: CostQuery) -> tuple[JSONObject, CostReport]:
    """``GET /api/v1/cost``: the body exactly as sent, and the report it holds.

    Raises:
        ApiError: ``invalid_response`` when the body is not a :class:`CostReport`
            (each problem named by its key path); and whatever the client raises for
            the request itself (unreachable, 401, 404, other errors).
    """
    body = await api.cost(query.params())
    try:
        # Lenient like every other halctl read: a newer supervisor may add fields.
        report = converter.structure(body, CostReport)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        problems = "; ".join(describe_errors(exc, "$"))
        raise ApiError(200, "invalid_response", f"unexpected answer from the supervisor: {problems}") from None
    return body, report


# ---- rendering (pure) ---------------------------------------------------------------------


def _count(n: int) -> str:
    """Token counts short enough for a column: ``9,999``, ``54.0k``, ``180k``, ``2.4M``."""
    if n < 10_000:
        return f"{n:,}"
    for size, unit in ((1e3, "k"), (1e6, "M"), (1e9, "B")):
        value = n / size
        if value < 99.95:
            return f"{value:.1f}{unit}"
        if value < 999.5:
            return f"{value:.0f}{unit}"
    return f"{n / 1e12:.1f}T"


def _share(cost_usd: float, total_usd: float) -> str:
    return f"{cost_usd / total_usd * 100:.1f}%" if total_usd > 0 else "-"


def _key(key: str, indent: str = "") -> Text:
    return Text(indent + key) if key else Text(f"{indent}(none)", style="dim")


def _amount_table(title: str, headers: list[str], footer: list[str] | None = None) -> Table:
    """A left key column that gives way (ellipsis) and right-aligned figures that never do."""
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE,
        pad_edge=False,
        show_edge=False,
        show_footer=footer is not None,
    )
    footers = footer or [""] * len(headers)
    table.add_column(headers[0], footer=footers[0], overflow="ellipsis", min_width=_KEY_MIN_WIDTH)
    for header, foot in zip(headers[1:], footers[1:], strict=True):
        table.add_column(header, footer=foot, justify="right", no_wrap=True)
    return table


def _token_headers(shown: bool) -> list[str]:
    return ["IN", "OUT", "CACHE"] if shown else []


def _token_cells(tokens: TokenCounts, shown: bool) -> list[str]:
    if not shown:
        return []
    return [_count(tokens.input), _count(tokens.output), _count(tokens.cache_read + tokens.cache_write)]


def cost_header(report: CostReport) -> Text:
    """Two lines: period, days, total and daily average; the bill in the total, estimate and gap.

    The second line splits the total truthfully: ``bill_usd`` is the providers' own data
    in it, the rest is opencode's estimate for providers and days no bill covers. A
    supervisor too old to send ``bill_usd`` gets the estimate and gap only.
    """
    span = report.start if report.start == report.end else f"{report.start}..{report.end}"
    period = f"{report.period} " if report.period else ""
    days = f"{report.days} day{'' if report.days == 1 else 's'}"
    text = Text(f"cost {period}{span} ({days}): ", style="bold")
    text.append("total ")
    text.append(usd(report.total_usd), style="bold")
    text.append(", daily average ")
    text.append(usd(report.daily_average_usd), style="bold")
    text.append("\n")
    if report.bill_usd is not None:
        unbilled = max(0.0, report.total_usd - report.bill_usd)
        text.append(f"provider bill {usd(report.bill_usd)} + estimated {usd(unbilled)}; ")
    text.append(f"opencode estimate {usd(report.estimate_usd)}, gap {usd(report.gap_usd)}")
    return text


def groups_table(report: CostReport, width: int = 120) -> Table:
    """One row per group of ``--by`` with cost, estimate, share and tokens, and a total.

    Below 64 columns the token columns are left out; long keys end in an ellipsis.
    """
    tokens = width >= _TOKENS_FROM_WIDTH
    key = _KEY_HEADERS[report.group_by]
    headers = [key, "COST", "ESTIMATE", "SHARE", *_token_headers(tokens)]
    total = [
        "total",
        usd(report.total_usd),
        usd(report.estimate_usd),
        _share(report.total_usd, report.total_usd),
        *_token_cells(report.tokens, tokens),
    ]
    table = _amount_table(f"by {report.group_by}", headers, total)
    for line in report.groups:
        table.add_row(
            _key(line.key),
            usd(line.cost_usd),
            usd(line.estimate_usd),
            _share(line.cost_usd, report.total_usd),
            *_token_cells(line.tokens, tokens),
        )
    return table


def providers_table(report: CostReport, width: int = 120) -> Table:
    """Each provider (bold) followed by its models, with cost, share and tokens."""
    tokens = width >= _TOKENS_FROM_WIDTH
    table = _amount_table("by provider and model", ["PROVIDER / MODEL", "COST", "SHARE", *_token_headers(tokens)])
    for provider in report.providers:
        share = _share(provider.cost_usd, report.total_usd)
        cells = [usd(provider.cost_usd), share, *_token_cells(provider.tokens, tokens)]
        table.add_row(_key(provider.provider), *cells, style="bold")
        for model in provider.models:
            share = _share(model.cost_usd, report.total_usd)
            table.add_row(_key(model.model, "  "), usd(model.cost_usd), share, *_token_cells(model.tokens, tokens))
    return table


def every_day(report: CostReport) -> list[DayLine]:
    """The report's days from ``start`` to ``end``, a $0.00 line for any day it left out."""
    try:
        first, last = dt.date.fromisoformat(report.start), dt.date.fromisoformat(report.end)
    except ValueError:
        return report.daily
    span = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    days = {day.isoformat(): DayLine(day.isoformat(), 0.0, 0.0) for day in span}
    days.update((line.date, line) for line in report.daily)
    return [days[date] for date in sorted(days)]


def _bar(value: float, peak: float, width: int, *, ascii_only: bool) -> str:
    """*width* cells for *peak*; any spend gets at least a sliver, none gets nothing."""
    if value <= 0 or peak <= 0:
        return ""
    if ascii_only:
        return "#" * max(1, round(value / peak * width))
    full, part = divmod(max(1, round(value / peak * width * 8)), 8)
    return "█" * full + (_BAR_EIGHTHS[part] if part else "")


@attrs.frozen
class DayChart:
    """One row per day: the date, a bar scaled to the costliest day, the amount.

    Drawn at render time to fit the console (bars at most 60 cells), with ``#`` bars
    where the console cannot print block characters; colour is optional.
    """

    days: list[DayLine]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Yield one line per day, each exactly as wide as the chart."""
        amounts = [usd(day.cost_usd) for day in self.days]
        amount_w = max(map(len, amounts), default=0)
        date_w = max((len(day.date) for day in self.days), default=0)
        bar_w = max(1, min(_BAR_MAX, options.max_width - date_w - amount_w - 3))
        peak = max((day.cost_usd for day in self.days), default=0.0)
        for day, amount in zip(self.days, amounts, strict=True):
            line = Text(day.date.ljust(date_w) + "  ")
            line.append(_bar(day.cost_usd, peak, bar_w, ascii_only=options.ascii_only).ljust(bar_w), style="cyan")
            line.append(" " + amount.rjust(amount_w), style="bold" if day.cost_usd == peak > 0 else "")
            yield line


def _source_line(source: SourceStatus, now: dt.datetime) -> Text:
    line = Text(f"{source.provider}: ")
    line.append_text(status_text(source.status))
    if source.status == "pending":
        line.append(", not polled yet")
    elif source.last_success:
        line.append(f", last good poll {ago(source.last_success, now)}")
    else:
        line.append(", never polled successfully")
    if source.billed_through:
        line.append(f": its bill counts through {source.billed_through}, opencode's estimate after")
    else:
        line.append(": its figures are opencode's estimate")
    if source.last_error:
        line.append(f" ({source.last_error})")
    return line


def _budget_row(budget: BudgetStatus) -> tuple[list[str], str]:
    percent = f"{math.floor(budget.percent)}%"
    cells = [budget.scope, f"{usd(budget.spent_usd)} of {usd(budget.limit_usd)}", percent]
    if budget.percent >= _BUDGET_OVER:
        return [*cells, "exceeded"], "bold red"
    if budget.percent >= budget.warn_percent:
        return [*cells, f"above {budget.warn_percent:g}%"], "yellow"
    return [*cells, ""], ""


def budgets_table(budgets: list[BudgetStatus]) -> Table:
    """Today's spend per budget; from its warning level in yellow, 100 % and more in bold red."""
    table = Table.grid(padding=(0, 2))
    table.title = "budgets today"
    table.title_justify = "left"
    table.title_style = "bold"
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    for budget in budgets:
        cells, style = _budget_row(budget)
        table.add_row(*cells, style=style)
    return table


def cost_view(report: CostReport, now: dt.datetime, width: int = 120) -> RenderableType:
    """Everything ``halctl cost`` prints for *report*, fitted to *width* columns."""
    parts: list[RenderableType] = [cost_header(report), NewLine()]
    if report.groups:
        parts += [groups_table(report, width), NewLine()]
    else:
        parts += [Text("no spend recorded in this period"), NewLine()]
    if report.providers:
        parts += [providers_table(report, width), NewLine()]
    parts += [Text("per day (UTC)", style="bold"), DayChart(every_day(report))]
    troubled = [_source_line(s, now) for s in report.sources if s.status != "ok"]
    if troubled:
        parts += [NewLine(), *troubled]
    if report.budgets:
        parts += [NewLine(), budgets_table(report.budgets)]
    return Group(*parts)


# ---- the command --------------------------------------------------------------------------


def _day(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value is not None else None


@output_option
@click.command("cost")
@click.argument("period", required=False, type=click.Choice(COST_PERIODS), metavar="[today|week|month]")
@click.option(
    "--by",
    "group_by",
    type=click.Choice(COST_GROUPINGS),
    default=DEFAULT_GROUPING,
    show_default=True,
    help="What the table groups by.",
)
@click.option(
    "--from",
    "start",
    type=click.DateTime([_DATE_FORMAT]),
    metavar="YYYY-MM-DD",
    help="First day (UTC) of a range, instead of a period.",
)
@click.option(
    "--to",
    "end",
    type=click.DateTime([_DATE_FORMAT]),
    metavar="YYYY-MM-DD",
    help="Last day (UTC) of the range, inclusive [default: today].",
)
@click.pass_context
async def cost(
    ctx: click.Context, period: str | None, group_by: str, start: dt.datetime | None, end: dt.datetime | None
) -> None:
    """Spend and tokens over a period, grouped, per provider and model, and per day.

    The period is today (the default), week or month; or give whole UTC days with
    --from/--to. Totals are the providers' bills on the days their polls cover and
    opencode's own estimate elsewhere; the header shows both and the gap.
    """
    app = app_of(ctx)
    today = app.io.now().astimezone(dt.UTC).date()
    query = cost_query(ctx, period=period, group_by=group_by, start=_day(start), end=_day(end), today=today)
    async with app.open_api() as api:
        body, report = await fetch_cost(api, query)
    app.show(body, cost_view(report, app.io.now(), width=app.io.console.width))
