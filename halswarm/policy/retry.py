"""Retry caps with reset windows: at most ``max_retries`` actions per window.

A window opens with the first action taken while no window is open and lasts
``reset_window_seconds``; when it has passed, the budget is whole again and the next
action opens a new window. (Anchored windows, not a sliding one: the operator-facing
"next reset" is a single, stable time.)

Invariants:

- ``used <= max_retries`` for every window :func:`spend` produced.
- ``started`` is None exactly when ``used`` is 0.
"""

from __future__ import annotations

import attrs

__all__ = ["RetryWindow", "current_window"]


@attrs.frozen
class RetryWindow:
    """Actions taken in the current window and when it opened (None: no window open)."""

    started: float | None = None
    used: int = 0

    def is_open(self, now: float, reset_window_seconds: float) -> bool:
        """A window is open and has not yet run its length at *now*."""
        return self.started is not None and now - self.started < reset_window_seconds

    def has_room(self, max_retries: int) -> bool:
        """Another action fits in this window."""
        return self.used < max_retries

    def spend(self, now: float) -> RetryWindow:
        """This window after one more action at *now* (opening it if needed)."""
        return RetryWindow(self.started if self.started is not None else now, self.used + 1)

    def next_reset(self, reset_window_seconds: float) -> float | None:
        """When the budget comes back (None: no window open)."""
        return None if self.started is None else self.started + reset_window_seconds


def current_window(window: RetryWindow | None, now: float, reset_window_seconds: float) -> RetryWindow:
    """The window in force at *now*: *window* while it lasts, else an empty one.

    At exactly ``started + reset_window_seconds`` the budget is restored.
    """
    if window is None or not window.is_open(now, reset_window_seconds):
        return RetryWindow()
    return window
