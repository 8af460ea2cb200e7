"""Slowing down repeated authentication failures from one address (HTTP API and agent hub).

After ``free`` failures from one address within ``window`` seconds, each further failed
attempt is answered only after a delay that doubles per failure up to ``max_delay``:
guessing tokens gets slow, while a mistyped token in halctl costs nothing noticeable.
A success does *not* clear the record (a caller holding one valid token could otherwise
guess others at full speed); the window expires it. Only the answer to each failure is
delayed, not concurrent attempts. Memory is bounded: at most ``max_addresses``
addresses are remembered (the stalest go first).

Pure bookkeeping on an injected monotonic ``now`` (``trio.current_time()``), so tests run
on MockClock; the caller sleeps.
"""

from __future__ import annotations

import collections
from typing import Final

import attrs

__all__ = ["FailureThrottle"]

_FREE: Final = 5
_WINDOW_S: Final = 60.0
_BASE_S: Final = 0.25
_MAX_DELAY_S: Final = 5.0
_MAX_ADDRESSES: Final = 10_000


@attrs.define
class _Record:
    failures: int
    first: float
    last: float


class FailureThrottle:
    """Per-address failure counts and the delay owed before answering the next failure."""

    def __init__(
        self,
        *,
        free: int = _FREE,
        window: float = _WINDOW_S,
        base_delay: float = _BASE_S,
        max_delay: float = _MAX_DELAY_S,
        max_addresses: int = _MAX_ADDRESSES,
    ) -> None:
        self.free = free
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_addresses = max_addresses
        self._records: collections.OrderedDict[str, _Record] = collections.OrderedDict()

    def failed(self, address: str, now: float) -> float:
        """Record a failure from *address*; returns seconds to wait before answering it."""
        record = self._records.get(address)
        if record is None or now - record.first > self.window:
            record = _Record(0, now, now)
        record.failures += 1
        record.last = now
        self._records[address] = record
        self._records.move_to_end(address)
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        over = record.failures - self.free
        if over <= 0:
            return 0.0
        # The exponent is capped: the count has no bound (a flood keeps failing), and
        # 2 ** 1029 as a float overflows.
        return min(self.max_delay, self.base_delay * 2.0 ** min(over - 1, 32))

    def failures(self, address: str, now: float) -> int:
        """Failures from *address* in the current window."""
        record = self._records.get(address)
        if record is None or now - record.first > self.window:
            return 0
        return record.failures

    def __len__(self) -> int:
        return len(self._records)
