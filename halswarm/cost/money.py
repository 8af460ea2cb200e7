"""Money arithmetic for cost tracking: Decimal in memory, integer nano-dollars on disk.

Why nano-dollars (1e-9 USD) in SQLite: integers are exact, SQL can add them in place
(the estimate upserts add deltas without a read-modify-write), and a nano-dollar is a
thousand times finer than the micro-dollars reports show. Provider amounts with more
decimals than that (Anthropic's cents strings can carry any number) are rounded half
to even, once, when stored: at most half a nano-dollar per stored row.

**Range.** SQLite integers are 64-bit (about 9.2e18). Every amount stored is at most
:data:`MAX_USD` ($1e9, 1e18 nano-dollars) and every token count at most
:data:`MAX_TOKENS`, leaving room for the in-place additions; :func:`to_nanos` refuses
anything larger (``ValueError``) instead of letting SQLite raise ``OverflowError`` deep in
a write. The edges (opencode sessions, provider answers) reject absurd figures earlier,
with a message naming where they came from.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

__all__ = [
    "MAX_NANOS",
    "MAX_TOKENS",
    "MAX_USD",
    "NANOS_PER_USD",
    "from_nanos",
    "percent_of",
    "report_usd",
    "to_nanos",
    "usd_from_float",
]

NANOS_PER_USD: Final = 10**9
#: Largest amount (either sign) one stored row may hold: one billion dollars.
MAX_USD: Final = Decimal(10**9)
MAX_NANOS: Final = 10**18
#: Largest token count one stored row may hold (a thousand trillion).
MAX_TOKENS: Final = 10**15
_MICRO: Final = Decimal("0.000001")
_HUNDRED: Final = Decimal(100)


def to_nanos(usd: Decimal) -> int:
    """Dollars to integer nano-dollars (half to even).

    Raises:
        ValueError: the amount is not finite or beyond :data:`MAX_USD` either way.
    """
    if not usd.is_finite() or abs(usd) > MAX_USD:
        raise ValueError(f"amount ${usd} is out of range (at most ${MAX_USD:,} per row)")
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    """Integer nano-dollars to exact Decimal dollars."""
    return Decimal(nanos).scaleb(-9)


def usd_from_float(value: float) -> Decimal:
    """A float dollar figure (opencode's session cost) as the Decimal it was written as.

    ``Decimal(repr(x))`` keeps what the sender meant (``0.1`` stays 0.1, not
    0.1000000000000000055...). Negative, NaN and infinite values count as zero: a cost
    can only be spent, and a corrupt figure must not poison a day's sum.
    """
    if not math.isfinite(value) or value <= 0:
        return Decimal(0)
    return Decimal(repr(value))


def report_usd(usd: Decimal) -> float:
    """Round to micro-dollars for a report (JSON has no decimal type). Only at the end."""
    return float(usd.quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def percent_of(spent: Decimal, limit: Decimal) -> Decimal:
    """*spent* as a percentage of *limit* (a budget; callers pass ``limit > 0``)."""
    return spent * _HUNDRED / limit
