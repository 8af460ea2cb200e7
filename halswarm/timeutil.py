"""Wall-clock helpers. Persisted times are RFC 3339 UTC strings in one fixed format.

One format (microseconds, ``Z`` suffix, always 27 characters) means timestamps sort
correctly as text in SQLite and compare equal across components.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeGuard

__all__ = ["Clock", "format_ts", "is_ts", "parse_ts", "system_now"]

Clock = Callable[[], datetime]
"""An injected wall clock: returns an aware UTC datetime."""

# The canonical stored format of format_ts: fixed width, so stored times sort as text.
_TS_RE = re.compile(r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\.[0-9]{6}Z")


def system_now() -> datetime:
    """The real wall clock (UTC). Injected where persisted timestamps are made."""
    return datetime.now(UTC)


def format_ts(dt: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any offset, or ``Z``) into an aware UTC datetime.

    Raises:
        ValueError: the text is not an RFC 3339 timestamp with a zone.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone (expected e.g. 2026-01-01T00:00:00Z)")
    return value.astimezone(UTC)


def is_ts(text: object) -> TypeGuard[str]:
    """True when *text* is in the canonical stored format (checked for every ingested event)."""
    return type(text) is str and _TS_RE.fullmatch(text) is not None
