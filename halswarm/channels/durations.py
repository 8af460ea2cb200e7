"""Durations as config and match expressions write them: ``30s``, ``5m``, ``1h30m``, ``2d``.

One parser for both places, so ``throttle: "5m"`` and ``idle_for > 5m`` mean the same.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

__all__ = ["DURATION_UNITS", "DurationError", "format_duration", "format_number", "parse_duration", "seconds_of"]

#: Unit suffix -> seconds.
DURATION_UNITS: Final[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]+)", re.ASCII)
_WHOLE: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[a-z]+)+", re.ASCII)


class DurationError(ValueError):
    """Text that is not a duration; the message says what is wrong."""


def parse_duration(text: str) -> float:
    """Seconds of a duration written as one or more ``<number><unit>`` parts.

    Units are ``s``, ``m``, ``h`` and ``d``; parts add up (``1h30m`` is 5400). Numbers may
    have a fraction (``1.5h``) but no sign or exponent.

    Raises:
        DurationError: not of that form, an unknown unit, or not finite.
    """
    if not _WHOLE.fullmatch(text):
        raise DurationError(f"{text!r} is not a duration (write a number and a unit: 30s, 5m, 2h, 1d)")
    total = 0.0
    for number, unit in _PART.findall(text):
        if unit not in DURATION_UNITS:
            units = ", ".join(DURATION_UNITS)
            raise DurationError(f"unknown duration unit {unit!r} in {text!r} (units: {units})")
        total += float(number) * DURATION_UNITS[unit]
    if not math.isfinite(total):
        raise DurationError(f"{text!r} is too large")
    return total


def format_number(value: float) -> str:
    """A finite float without an exponent, as few digits as round-trip (``20``, ``0.00001``)."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def format_duration(seconds: float) -> str:
    """The canonical spelling of a non-negative duration: the largest unit that divides it.

    ``300`` -> ``5m``, ``90`` -> ``90s``, ``86400`` -> ``1d``, ``0.5`` -> ``0.5s``.
    ``parse_duration(format_duration(s)) == s`` for every finite ``s >= 0``.
    """
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if size > 1 and seconds >= size and (seconds / size).is_integer() and (seconds / size) * size == seconds:
            return f"{format_number(seconds / size)}{unit}"
    return f"{format_number(seconds)}s"


def seconds_of(value: float | str | None) -> float:
    """A config duration in seconds: a number of seconds, a duration string, or None (0).

    Raises:
        DurationError: a bad duration string, or a negative or non-finite number.
    """
    if value is None:
        return 0.0
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not math.isfinite(value):
        raise DurationError(f"{value!r} is not a duration")
    if value < 0:
        raise DurationError(f"must not be negative, got {value}")
    return float(value)
