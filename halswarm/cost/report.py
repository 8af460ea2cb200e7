"""Cost reports from daily buckets (pure): periods, the totals rule, groupings (issue 5).

**The totals rule.** Per provider and UTC day: on the days the provider's successful
polls cover (:class:`~halswarm.cost.model.Coverage`), its ``source="provider"`` rows
count (the bill); on every other day (not configured, never polled successfully, failing
since, or today before the first poll of the day) its ``source="estimate"`` rows
(opencode's own figures) count. ``estimate_usd`` always sums every estimate row, so
``gap_usd = total_usd - estimate_usd`` shows how far opencode's figures are from the
bill; ``bill_usd`` is the part of the total that is the providers' own data. Provider rows
outside their provider's coverage count nowhere.

**Periods** are whole UTC days, both ends inclusive: ``today``; ``week`` = the 7 days
ending today; ``month`` = the 30 days ending today; or explicit ``from``/``to`` dates
(``from <= to``, at most :data:`MAX_DAYS` days).

Money is summed in :class:`~decimal.Decimal` and rounded to micro-dollars only when the
report is built.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs

from halswarm.cost.model import (
    COST_PERIODS,
    BudgetStatus,
    CostBucket,
    CostGrouping,
    CostLine,
    CostPeriod,
    CostReport,
    DayLine,
    ModelLine,
    ProviderLine,
    SourceStatus,
    TokenCounts,
)
from halswarm.cost.money import report_usd

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from halswarm.cost.model import Coverage
    from halswarm.timeutil import Clock

__all__ = [
    "MAX_DAYS",
    "PERIOD_DAYS",
    "CostWindow",
    "PeriodError",
    "build_report",
    "counts_toward_total",
    "parse_window",
    "period_window",
    "provider_totals",
    "utc_today",
]

#: Longest explicit from/to range, in days.
MAX_DAYS: Final = 366
#: Days covered by each named period (ending today).
PERIOD_DAYS: Final[dict[CostPeriod, int]] = {"today": 1, "week": 7, "month": 30}

_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class PeriodError(ValueError):
    """A period request that cannot be answered; ``param`` names the parameter at fault."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@attrs.frozen
class CostWindow:
    """Whole UTC days ``first..last`` (both inclusive), and the named period if any."""

    first: dt.date
    last: dt.date
    period: CostPeriod | None = None

    @property
    def days(self) -> int:
        """Number of days in the window."""
        return (self.last - self.first).days + 1

    def dates(self) -> list[dt.date]:
        """Every day of the window, in order."""
        return [self.first + dt.timedelta(days=i) for i in range(self.days)]


def utc_today(now: Clock) -> dt.date:
    """The current UTC day of the injected wall clock *now*."""
    return now().astimezone(dt.UTC).date()


def period_window(period: CostPeriod, today: dt.date) -> CostWindow:
    """The window of a named period ending *today* (UTC)."""
    return CostWindow(today - dt.timedelta(days=PERIOD_DAYS[period] - 1), today, period)


def _parse_date(param: str, text: str) -> dt.date:
    if not _DATE_RE.fullmatch(text):
        raise PeriodError(param, f"{param} must be a date like 2026-01-31, got {text!r}")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise PeriodError(param, f"{param} is not a valid date: {text!r}") from None


def parse_window(period: str | None, from_: str | None, to: str | None, today: dt.date) -> CostWindow:
    """The window a request asks for: a named *period*, or *from_*/*to* dates.

    Nothing given means ``today``.

    Raises:
        PeriodError: naming the parameter: an unknown period, a malformed date, only
            one of from/to, both a period and dates, ``from`` after ``to``, or a range
            longer than :data:`MAX_DAYS` days.
    """
    if from_ is None and to is None:
        name = period or "today"
        for known in COST_PERIODS:
            if name == known:
                return period_window(known, today)
        raise PeriodError("period", f"period must be one of {', '.join(COST_PERIODS)}, got {name!r}")
    if period is not None:
        raise PeriodError("period", "give either period or from/to, not both")
    if from_ is None:
        raise PeriodError("from", "from is required with to (both YYYY-MM-DD, inclusive)")
    if to is None:
        raise PeriodError("to", "to is required with from (both YYYY-MM-DD, inclusive)")
    first, last = _parse_date("from", from_), _parse_date("to", to)
    if first > last:
        raise PeriodError("from", f"from ({first}) must not be after to ({last})")
    window = CostWindow(first, last)
    if window.days > MAX_DAYS:
        raise PeriodError("to", f"from/to may span at most {MAX_DAYS} days, got {window.days}")
    return window


def counts_toward_total(bucket: CostBucket, coverage: Coverage) -> bool:
    """The totals rule: a provider's own rows count on the days it covers, its estimates elsewhere."""
    return (bucket.source == "provider") == coverage.covers(bucket.provider, bucket.day)


def provider_totals(buckets: Iterable[CostBucket], coverage: Coverage) -> dict[str, Decimal]:
    """Spend per provider by the totals rule (every provider with a counted row)."""
    totals: dict[str, Decimal] = collections.defaultdict(Decimal)
    for b in buckets:
        if counts_toward_total(b, coverage):
            totals[b.provider] += b.cost_usd
    return dict(totals)


@attrs.define
class _Sum:
    cost: Decimal = Decimal(0)
    estimate: Decimal = Decimal(0)
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def add(self, b: CostBucket, counted: bool) -> None:
        if b.source == "estimate":
            self.estimate += b.cost_usd
        if counted:
            self.cost += b.cost_usd
            self.input += b.input_tokens
            self.output += b.output_tokens
            self.cache_read += b.cache_read_tokens
            self.cache_write += b.cache_write_tokens

    def tokens(self) -> TokenCounts:
        return TokenCounts(self.input, self.output, self.cache_read, self.cache_write)


_KEYS: Final[dict[CostGrouping, Callable[[CostBucket], str]]] = {
    "provider": lambda b: b.provider,
    "model": lambda b: b.model,
    "project": lambda b: b.project,
    "day": lambda b: b.day.isoformat(),
}


def _by_cost(items: Iterable[tuple[str, _Sum]]) -> list[tuple[str, _Sum]]:
    return sorted(items, key=lambda kv: (-kv[1].cost, -kv[1].estimate, kv[0]))


def build_report(
    buckets: Iterable[CostBucket],
    window: CostWindow,
    *,
    group_by: CostGrouping,
    coverage: Coverage,
    sources: list[SourceStatus],
    budgets: list[BudgetStatus],
) -> CostReport:
    """Aggregate *buckets* over *window* into the one report schema.

    Args:
        buckets: stored buckets (both sources); those outside the window are ignored.
        window: the days to report.
        group_by: the key of ``groups``; ``day`` lists every day of the window, others
            list each key with data, most expensive first.
        coverage: the configured providers and the days their own data covers (see the
            totals rule).
        sources: the poller's view of each provider.
        budgets: today's spend against each budget.
    """
    total = _Sum()
    bill = Decimal(0)
    groups: dict[str, _Sum] = collections.defaultdict(_Sum)
    days: dict[str, _Sum] = {d.isoformat(): _Sum() for d in window.dates()}
    providers: dict[str, _Sum] = {p: _Sum() for p in coverage}
    models: dict[str, dict[str, _Sum]] = collections.defaultdict(lambda: collections.defaultdict(_Sum))
    key_of = _KEYS[group_by]
    for b in buckets:
        if not window.first <= b.day <= window.last:
            continue
        counted = counts_toward_total(b, coverage)
        if b.source == "provider":
            if not counted:
                continue  # outside the provider's coverage (or no longer configured): nowhere
            bill += b.cost_usd
        total.add(b, counted)
        groups[key_of(b)].add(b, counted)
        days[b.day.isoformat()].add(b, counted)
        providers.setdefault(b.provider, _Sum()).add(b, counted)
        if counted:
            models[b.provider][b.model].add(b, counted)
    group_items = [(day, days[day]) for day in sorted(days)] if group_by == "day" else _by_cost(groups.items())
    average = total.cost / window.days
    return CostReport(
        period=window.period,
        start=window.first.isoformat(),
        end=window.last.isoformat(),
        days=window.days,
        group_by=group_by,
        total_usd=report_usd(total.cost),
        estimate_usd=report_usd(total.estimate),
        gap_usd=report_usd(total.cost - total.estimate),
        daily_average_usd=report_usd(average),
        tokens=total.tokens(),
        groups=[CostLine(key, report_usd(s.cost), report_usd(s.estimate), s.tokens()) for key, s in group_items],
        daily=[DayLine(day, report_usd(s.cost), report_usd(s.estimate)) for day, s in sorted(days.items())],
        providers=[
            ProviderLine(
                provider,
                report_usd(s.cost),
                s.tokens(),
                [ModelLine(model, report_usd(m.cost), m.tokens()) for model, m in _by_cost(models[provider].items())],
            )
            for provider, s in _by_cost(providers.items())
        ],
        sources=sources,
        budgets=budgets,
        bill_usd=report_usd(bill),
    )
