"""Cost value objects shared by the poller, the store, the API, halctl and channels.

One report schema for every consumer (the original's CLI read field names its server
never sent). Money inside halswarm is :class:`~decimal.Decimal`; reports carry floats
rounded to micro-dollars because JSON has no decimal type.
"""

from __future__ import annotations

import datetime as dt
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
    "DayLine",
    "ModelLine",
    "ProviderError",
    "ProviderLine",
    "SourceStatus",
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
    cost_usd: float  # authoritative where a provider is polled, else the estimate
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
    status: Literal["ok", "error", "pending"]  # pending: not polled yet
    last_success: str | None = None  # RFC 3339
    last_error: str | None = None


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

    ``total_usd`` counts, per provider, the provider's own data when that provider is
    polled and opencode's estimate otherwise; ``gap_usd = total_usd - estimate_usd``.
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
