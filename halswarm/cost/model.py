"""Cost value objects shared by the poller, the store, the API, halctl and channels.

One report schema for every consumer (the original's CLI read field names its server
never sent). Money inside halswarm is :class:`~decimal.Decimal`; reports carry floats
rounded to micro-dollars because JSON has no decimal type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from typing import Final, Literal, Protocol, get_args

import attrs

__all__ = [
    "COST_GROUPINGS",
    "COST_PERIODS",
    "COST_SOURCES",
    "BudgetStatus",
    "CostBucket",
    "CostGrouping",
    "CostLine",
    "CostPeriod",
    "CostReport",
    "CostSource",
    "CostSourceKind",
    "Coverage",
    "DayLine",
    "ModelLine",
    "ProviderError",
    "ProviderLine",
    "SourceStatus",
    "Span",
    "TokenCounts",
]

CostSourceKind = Literal["provider", "estimate"]
COST_SOURCES: Final[tuple[CostSourceKind, ...]] = get_args(CostSourceKind)

CostPeriod = Literal["today", "week", "month"]
COST_PERIODS: Final[tuple[CostPeriod, ...]] = get_args(CostPeriod)

CostGrouping = Literal["provider", "model", "project", "day"]
COST_GROUPINGS: Final[tuple[CostGrouping, ...]] = get_args(CostGrouping)


@attrs.frozen
class CostBucket:
    """One day's usage and spend for one (provider, model, project, source).

    ``source`` is ``provider`` for the providers' admin APIs (the bill) and ``estimate``
    for opencode's own per-session costs. Re-fetching a day replaces its rows.
    """

    day: dt.date  # UTC
    provider: str  # "anthropic", "openai", or the provider part of an opencode model id
    model: str  # "" when the source does not say
    project: str  # halswarm project name; a provider id when unmapped; "" when none
    source: CostSourceKind
    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class ProviderError(Exception):
    """A provider API failed after its retries; the message is safe to log (no key)."""


class CostSource(Protocol):
    """A provider admin API, as the poller sees it."""

    #: "anthropic" or "openai"; also the ``provider`` of the buckets it returns.
    name: str

    async def fetch(self, start: dt.date, end: dt.date) -> list[CostBucket]:
        """Every ``source="provider"`` bucket for UTC days ``start <= day < end``.

        Follows pagination to the end, retries transient failures (honouring 429
        ``retry-after``) and merges usage (tokens) and cost reports into one bucket per
        (day, model, project). Days with no usage yield no buckets.

        Raises:
            ProviderError: the provider could not be read (after retries).
        """
        ...


#: UTC days ``(first, last)``, both inclusive.
Span = tuple[dt.date, dt.date]


class Coverage(Collection[str]):
    """The configured providers, and the days on which each one's own data is the bill.

    The totals rule (:mod:`halswarm.cost.report`) counts a provider's ``provider`` rows
    only on days its successful polls fetched, and opencode's estimates everywhere else:
    a provider whose polls fail (a bad key, an outage) keeps its estimates counting for
    the days it has not billed. Poll windows are contiguous (a backfill, then windows
    that start inside or right after what is covered), so one span per provider is
    enough: ``None`` until a poll succeeds.

    As a ``Collection[str]`` it holds the configured provider names (in configuration
    order). Built over a dict its owner keeps updating (the poller's), it is a live view.
    """

    __slots__ = ("_spans",)

    def __init__(self, spans: Mapping[str, Span | None] | None = None) -> None:
        self._spans: Mapping[str, Span | None] = spans if spans is not None else {}

    def span(self, provider: str) -> Span | None:
        """The days *provider*'s own data covers (None: none, or not configured)."""
        return self._spans.get(provider)

    def covers(self, provider: str, day: dt.date) -> bool:
        """True when *provider*'s own rows are the bill for *day*."""
        span = self._spans.get(provider)
        return span is not None and span[0] <= day <= span[1]

    def __contains__(self, provider: object) -> bool:
        return provider in self._spans

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._spans))

    def __len__(self) -> int:
        return len(self._spans)

    def __repr__(self) -> str:
        spans = {name: (f"{s[0]}..{s[1]}" if s else None) for name, s in self._spans.items()}
        return f"Coverage({spans})"


# ---- reports (GET /api/v1/cost, halctl cost, Discord /cost) ------------------------------


@attrs.frozen
class TokenCounts:
    """Token totals of a report line."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@attrs.frozen
class CostLine:
    """One group of a report (a provider, model, project or day)."""

    key: str
    cost_usd: float  # the provider's bill on the days it covers, else the estimate
    estimate_usd: float  # opencode's own figure for the same group
    tokens: TokenCounts


@attrs.frozen
class ModelLine:
    """A model's share of one provider."""

    model: str
    cost_usd: float
    tokens: TokenCounts


@attrs.frozen
class ProviderLine:
    """A provider with its model lines (the product spec's cost report layout)."""

    provider: str
    cost_usd: float
    tokens: TokenCounts
    models: list[ModelLine]


@attrs.frozen
class DayLine:
    """One day of the period, for the per-day chart."""

    date: str  # YYYY-MM-DD, UTC
    cost_usd: float
    estimate_usd: float


@attrs.frozen
class SourceStatus:
    """How a provider poll went."""

    provider: str
    status: Literal["ok", "error", "pending"]  # pending: no poll completed yet
    last_success: str | None = None  # RFC 3339
    last_error: str | None = None  # configured secrets redacted
    #: The last UTC day (YYYY-MM-DD) its own data counts for; opencode's estimate counts
    #: after it, and for every day when None (nothing stored yet).
    billed_through: str | None = None


@attrs.frozen
class BudgetStatus:
    """Today's spend against one budget."""

    scope: str  # "fleet" or a project name
    limit_usd: float
    spent_usd: float
    percent: float
    warn_percent: float = 80.0  # budgets.warn_percent: where cost.budget_warning fires


@attrs.frozen
class CostReport:
    """A cost report over whole UTC days ``start``..``end`` (both inclusive).

    ``total_usd`` counts, per provider and day, the provider's own data on the days its
    successful polls cover and opencode's estimate on every other day; ``bill_usd`` is
    the part of the total that is the providers' own data (the rest is estimates), and
    ``gap_usd = total_usd - estimate_usd``.
    """

    period: CostPeriod | None  # None when asked by from/to
    start: str  # YYYY-MM-DD
    end: str  # YYYY-MM-DD
    days: int
    group_by: CostGrouping
    total_usd: float
    estimate_usd: float
    gap_usd: float
    daily_average_usd: float
    tokens: TokenCounts
    groups: list[CostLine]
    daily: list[DayLine]
    providers: list[ProviderLine]
    sources: list[SourceStatus]
    budgets: list[BudgetStatus]
    #: The providers' own data inside ``total_usd``; None in answers of older supervisors.
    bill_usd: float | None = None
