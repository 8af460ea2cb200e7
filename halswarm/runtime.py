"""Process plumbing shared by the daemons: signals become the shutdown event (and SIGHUP a
reload request); child processes are stopped politely, then firmly."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["exception_leaves", "listen_error", "terminate", "watch_signals"]

log = logging.getLogger(__name__)


async def watch_signals(
    shutdown: trio.Event, cancel_scope: trio.CancelScope, *, on_hangup: Callable[[], None] | None = None
) -> None:
    """First SIGINT/SIGTERM sets *shutdown* (graceful); a second cancels *cancel_scope*.

    SIGHUP is caught too (its default action would end the process): it calls
    *on_hangup* (the supervisor queues a config reload; it must not block), or without
    one says that there is nothing to reload.

    Cancellation: ends the watch; the signal handlers are restored on exit.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if on_hangup is not None:
                    on_hangup()
                else:
                    log.info("SIGHUP received: nothing to reload at runtime (restart to apply config changes)")
            elif not shutdown.is_set():
                log.info("%s received: shutting down gracefully (send again to stop at once)", name)
                shutdown.set()
            else:
                log.warning("%s received again: stopping now", name)
                cancel_scope.cancel()


async def terminate(process: trio.Process, grace: float, *, group: bool = False) -> None:
    """SIGTERM, wait up to *grace* seconds, then SIGKILL. Shielded: runs in cleanup.

    With *group*, the signals go to the process group the child leads (started with
    ``start_new_session=True``), so whatever it spawned goes too, even after it exited.
    """

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(process.pid, sig)
            elif process.returncode is None:
                process.send_signal(sig)

    with trio.CancelScope(shield=True):
        if process.returncode is None:
            send(signal.SIGTERM)
            with trio.move_on_after(grace):
                await process.wait()
            if process.returncode is None:
                log.warning("process %d ignored SIGTERM for %g s; killing it", process.pid, grace)
        send(signal.SIGKILL)
        with trio.move_on_after(grace):
            await process.wait()


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
