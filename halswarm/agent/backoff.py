"""Reconnect delays: exponential with jitter, from an injected random source."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import random

__all__ = ["Backoff", "Retries"]


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


@attrs.define
class Retries:
    """The attempt count of one reconnect loop: delays grow while connections fail or
    drop soon after opening, and start over only once one stayed up ``stable_after``
    seconds (a peer that accepts and then drops us cannot cause a tight loop)."""

    backoff: Backoff
    stable_after: float
    attempt: int = 0

    def ended(self, lasted: float) -> None:
        """A connection (or run) ended after *lasted* seconds (0 when it never opened)."""
        if lasted >= self.stable_after:
            self.attempt = 0

    def next_delay(self, rng: random.Random) -> float:
        """Seconds to wait before the next attempt; counts the attempt."""
        delay = self.backoff.delay(self.attempt, rng)
        self.attempt += 1
        return delay
