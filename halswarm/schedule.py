"""Fixed-rate schedules on trio's clock: the one place periodic loops get their next deadline.

A :class:`Ticks` schedule has ticks at ``start + k * interval``. Deadlines are computed
from ``start``, never by adding up sleeps, so a loop does not drift. A step that
overruns skips the ticks it missed instead of running once for each (no burst), and a
step that ends exactly on a tick (a poll that used its whole deadline) runs again at
once. An interval changed while the loop runs (a config reload) takes effect after the
tick that is due: the new schedule starts when the loop asks for its next deadline.

The loops that use it: the cost poller's polls and estimates, the policy engine's
ticks, the router's re-check tick, systemd watchdog pings, the agent's heartbeats and
its environment checks. Loops that catch up on every missed tick instead (the retention
job, the simulated agent's pacing) count ``start + k * interval`` themselves.
"""

from __future__ import annotations

import math
from typing import Final

import attrs
import trio

__all__ = ["Ticks"]

# (elapsed / interval) of a step that ended exactly on a tick may come out a hair above
# the whole number in floating point; without this margin that tick would be skipped.
_EPSILON: Final = 1e-9


def _positive(_instance: object, _attribute: object, value: float) -> None:
    if not value > 0:  # also refuses NaN
        raise ValueError(f"a schedule's interval must be greater than 0 seconds, got {value!r}")


@attrs.define
class Ticks:
    """A drift-free schedule ``start + k * interval`` (seconds of trio's clock).

    Tick 0 is ``start``: a loop that acts at once acts first, then waits for
    :meth:`advance`; a loop whose first step is one interval in waits for
    :meth:`advance` first. Create it inside trio (``start`` defaults to now).

    Args:
        interval: seconds between ticks (greater than 0).
        start: the time of tick 0 (default: ``trio.current_time()``).
        k: the tick last used (default 0: ``start``).

    Raises:
        ValueError: *interval* is not greater than 0.
    """

    interval: float = attrs.field(validator=_positive)
    start: float = attrs.field(factory=trio.current_time)
    k: int = 0

    def next_at(self) -> float:
        """The time of the tick :meth:`advance` would move to now; moves nothing.

        That is the first tick at or after now that comes after the one last used: ticks
        already past are skipped.
        """
        due = math.ceil((trio.current_time() - self.start) / self.interval - _EPSILON)
        return self.start + max(self.k + 1, due) * self.interval

    def next_after_now(self) -> float:
        """The first tick strictly after now, whichever ticks were used; moves nothing.

        For loops that also act between ticks (an extra heartbeat when health changes, a
        check when a new manifest arrives): acting uses up no tick, so such a loop never
        calls :meth:`advance`; a step that ran past ticks skips them.
        """
        passed = math.floor((trio.current_time() - self.start) / self.interval + _EPSILON)
        return self.start + (passed + 1) * self.interval

    def advance(self, interval: float | None = None) -> float:
        """Move to the next tick and return its time (it may be due already: a step ended on it).

        Args:
            interval: the interval from here on (default: unchanged). A different one
                starts a new schedule now, so its first tick is one new interval away.

        Raises:
            ValueError: *interval* is not greater than 0.
        """
        if interval is not None and interval != self.interval:
            # Set first: attrs validates it, so a bad one changes nothing.
            self.interval = interval
            self.start, self.k = trio.current_time(), 0
        at = self.next_at()
        self.k = round((at - self.start) / self.interval)
        return at

    async def wait(self, interval: float | None = None) -> None:
        """Sleep until the next tick (:meth:`advance`).

        Cancellation: safe; the tick waited for counts as used.
        """
        await trio.sleep_until(self.advance(interval))
