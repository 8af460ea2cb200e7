"""Helpers shared by the cost tests: one way to write a bucket, and coverage."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from halswarm.cost.model import CostBucket, CostSourceKind, Coverage

__all__ = ["bucket", "covered", "days"]


def days(n: int) -> dt.timedelta:
    """*n* days, for ``TODAY - days(3)``."""
    return dt.timedelta(days=n)


def bucket(
    day: dt.date,
    usd: str,
    *,
    provider: str = "anthropic",
    model: str = "claude-sonnet-4",
    project: str = "alpha",
    source: CostSourceKind = "provider",
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> CostBucket:
    """A bucket of *usd* dollars (exact: a decimal string); the bill of Anthropic's Sonnet for alpha by default."""
    return CostBucket(
        day=day,
        provider=provider,
        model=model,
        project=project,
        source=source,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=Decimal(usd),
    )


def covered(first: dt.date, last: dt.date, *providers: str) -> Coverage:
    """*providers* configured, each with its own data covering ``first..last``."""
    return Coverage(dict.fromkeys(providers, (first, last)))
