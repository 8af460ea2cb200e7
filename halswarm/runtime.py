"""Process plumbing shared by the daemons: signals become the shutdown event."""

from __future__ import annotations

import logging
import signal

import trio

__all__ = ["exception_leaves", "listen_error", "watch_signals"]

log = logging.getLogger(__name__)


async def watch_signals(shutdown: trio.Event, cancel_scope: trio.CancelScope) -> None:
    """First SIGINT/SIGTERM sets *shutdown* (graceful); a second cancels *cancel_scope*.

    Cancellation: ends the watch; the signal handlers are restored on exit.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not shutdown.is_set():
                log.info("%s received: shutting down gracefully (send again to stop at once)", name)
                shutdown.set()
            else:
                log.warning("%s received again: stopping now", name)
                cancel_scope.cancel()


def exception_leaves(error: BaseException) -> list[BaseException]:
    """The individual exceptions inside (possibly nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in exception_leaves(inner)]
    return [error]


def listen_error(group: BaseExceptionGroup[OSError], where: str) -> OSError:
    """A bind failure that names the address and the listener, not just an errno."""
    first = exception_leaves(group)[0]
    errno = first.errno if isinstance(first, OSError) else None
    return OSError(errno, f"cannot listen on {where}: {first}")
