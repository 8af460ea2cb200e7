"""Small trio synchronisation helpers."""

from __future__ import annotations

import trio

__all__ = ["Signal", "wait_any"]


class Signal:
    """A level-free wake-up: take ``waiter()`` before checking, then await it.

    Any ``fire()`` after the waiter was taken wakes it, so no wake-up is lost between
    the check and the wait.
    """

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        """Wake every current waiter."""
        self._event.set()
        self._event = trio.Event()

    def waiter(self) -> trio.Event:
        """The event the next ``fire()`` sets."""
        return self._event


async def wait_any(*events: trio.Event) -> None:
    """Return as soon as any of *events* is set."""
    async with trio.open_nursery() as nursery:

        async def waiter(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(waiter, event)
