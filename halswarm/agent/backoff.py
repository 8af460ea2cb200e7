"""Reconnect delays: exponential with jitter, from an injected random source."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import random

__all__ = ["Backoff"]


@attrs.frozen
class Backoff:
    """``initial * multiplier**attempt`` capped at ``maximum``, with "equal jitter".

    Half the delay is fixed and half random, so many agents that lost the same
    supervisor do not all return in the same instant.
    """

    initial: float
    maximum: float
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt number *attempt* (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base / 2 + rng.uniform(0, base / 2)
