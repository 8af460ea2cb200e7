"""systemd's notify protocol (``sd_notify(3)``) without a dependency: readiness, status, watchdog.

Under a unit with ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or an
abstract name written with a leading ``@``); the daemon sends newline-separated
``KEY=value`` lines as one datagram: ``READY=1`` once it serves, ``STATUS=...`` for
``systemctl status``, ``RELOADING=1`` … ``READY=1`` around a reload, ``STOPPING=1``
when its graceful shutdown starts. With ``WatchdogSec=`` systemd also passes
``WATCHDOG_USEC`` (and ``WATCHDOG_PID``): unless ``WATCHDOG=1`` arrives at least that
often, it kills and (with ``Restart=on-failure``) restarts the service.

Without ``NOTIFY_SOCKET`` (run by hand, in tests) every call is a no-op. A failed send
is logged once and never raised: losing a status line must not take the daemon down.

:class:`ServiceMonitor` is the task that pings the watchdog every half period, but only
while the daemon's own health check passes: systemd then restarts a daemon that is
wedged, not merely one whose event loop still turns. It also keeps ``STATUS=`` current.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Final

import attrs
import trio

from halswarm.schedule import Ticks

__all__ = ["NOTIFY_ENV", "Notifier", "ServiceMonitor", "watchdog_period"]

log = logging.getLogger(__name__)

#: The variables systemd sets for the notify protocol (taken out of the environment by
#: :meth:`Notifier.from_environ` so that child processes never inherit them).
NOTIFY_ENV: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

_MAX_STATUS: Final = 300  # one line in `systemctl status`; longer text is cut


def watchdog_period(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds systemd asked for, or None (no watchdog for this process).

    ``WATCHDOG_USEC`` must be a positive integer; when ``WATCHDOG_PID`` is set it must
    be *pid* (default: ours): the variables may have leaked from a parent that is
    watched itself. A malformed value is logged and ignored.
    """
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        if not owner.isdigit():
            log.warning("systemd: ignoring WATCHDOG_PID=%r (not a process id)", owner)
            return None
        if int(owner) != (os.getpid() if pid is None else pid):
            return None  # meant for another process
    if not raw.isdigit() or int(raw) == 0:
        log.warning("systemd: ignoring WATCHDOG_USEC=%r (not a positive number of microseconds)", raw)
        return None
    return int(raw) / 1_000_000


def _socket_address(value: str) -> str | None:
    """``NOTIFY_SOCKET`` as :func:`socket.sendto` takes it: a path or ``\\0``-prefixed abstract name."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # vsock:… (systemd 254+) and other forms: not supported


class Notifier:
    """Sends notify messages to systemd. A no-op when ``address`` is None.

    Args:
        address: ``NOTIFY_SOCKET`` as systemd set it (``/run/systemd/notify`` or
            ``@name``); None: not run by systemd.
        watchdog: the watchdog timeout in seconds (:func:`watchdog_period`), or None.
    """

    def __init__(self, address: str | None, *, watchdog: float | None = None) -> None:
        self.address = address
        self._target = _socket_address(address) if address else None
        self.watchdog_period = watchdog if self._target is not None else None
        self._failed = False
        #: Messages sent (tests, health): successful sends only.
        self.sent = 0
        if address and self._target is None:
            log.warning("systemd: NOTIFY_SOCKET=%r is not a path or @name; not notifying", address)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """The notifier systemd's environment asks for (a no-op one outside systemd).

        With *unset* (the default) the variables are removed from *environ* (default
        ``os.environ``), as ``sd_notify(unset_environment=1)`` does: a child process
        (opencode) must not inherit them, since systemd takes messages from the main
        process only (``NotifyAccess=main``) and the watchdog is ours.
        """
        env = os.environ if environ is None else environ
        notifier = cls(env.get("NOTIFY_SOCKET") or None, watchdog=watchdog_period(env))
        if unset:
            for name in NOTIFY_ENV:
                env.pop(name, None)
        return notifier

    def enable_fault_dumps(self) -> None:
        """Under a watchdog, dump every thread's stack to stderr (the journal) on SIGABRT.

        systemd's ``WatchdogSignal=`` is SIGABRT by default: the dump shows where the
        wedged call was stuck (file, line and function names only, no values).
        """
        if self.watchdog_period is not None and not faulthandler.is_enabled():
            faulthandler.enable()

    @property
    def enabled(self) -> bool:
        """True when messages go somewhere."""
        return self._target is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` *lines* as one datagram; True when sent.

        Never raises: a failure is logged once (WARNING), later ones at DEBUG. The
        socket is non-blocking, so a stuck systemd cannot stall the event loop.
        """
        if self._target is None or not lines:
            return False
        data = "\n".join(lines).encode("utf-8", errors="replace")
        try:
            self._deliver(data)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "systemd: cannot send a notification to %s (further failures logged at debug): %s",
                    self.address,
                    exc,
                )
            else:
                log.debug("systemd: notification not sent: %s", exc)
            return False
        self.sent += 1
        return True

    def _deliver(self, data: bytes) -> None:
        """One datagram to the notify socket. Raises OSError."""
        assert self._target is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(data, self._target)

    # ---- the messages ---------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (startup finished, or a reload did), with an optional status line."""
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1``: a reload started; :meth:`ready` ends it.

        ``MONOTONIC_USEC`` is systemd's ``CLOCK_MONOTONIC`` (not trio's clock, whose
        origin is arbitrary): ``Type=notify-reload`` (systemd 253+) matches the
        reload to the signal with it; older versions ignore it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the graceful shutdown started."""
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """``STATUS=<text>``: one line for ``systemctl status``."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: this process is alive and well."""
        return self.notify("WATCHDOG=1")


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    line = " ".join(text.split())  # one line: a newline would start a new key
    if len(line) > _MAX_STATUS:
        line = line[: _MAX_STATUS - 1] + "…"
    return (f"STATUS={line}",)


HealthCheck = Callable[[], str | None]
"""Returns None while healthy, else why not (one line, logged and shown as the status)."""


@attrs.define
class ServiceMonitor:
    """Pings systemd's watchdog while *health* passes and keeps ``STATUS=`` current.

    Start with ``nursery.start(monitor.run)`` once the daemon is ready (systemd arms the
    watchdog when startup completes).

    Args:
        notifier: where messages go; with a disabled notifier :meth:`run` returns at once.
        health: the daemon's own liveness check, called before every ping (both
            daemons build theirs on :func:`halswarm.liveness.first_stall`).
        status: the status line (called every ``status_interval`` seconds; sent when it changed).
        status_interval: seconds between status refreshes.
    """

    notifier: Notifier
    health: HealthCheck
    status: Callable[[], str]
    status_interval: float = 5.0
    #: Pings sent (tests wait on it).
    pings: int = attrs.field(default=0, init=False)
    #: Why pings are held back (None: they are not).
    withheld: str | None = attrs.field(default=None, init=False)
    _last_status: str | None = attrs.field(default=None, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ping every half watchdog period and refresh the status, until cancelled.

        Cancellation: safe at any await; nothing to clean up.
        Error handling: a failing health or status callable is logged and counts as
        unhealthy (no ping) or keeps the last status; the loop goes on.
        """
        task_status.started()
        if not self.notifier.enabled:
            return
        async with trio.open_nursery() as nursery:
            period = self.notifier.watchdog_period
            if period is not None:
                nursery.start_soon(self._watchdog, period)
            nursery.start_soon(self._statuses)

    async def _watchdog(self, period: float) -> None:
        # Half the period, as sd_watchdog_enabled(3) recommends: one late ping is not fatal.
        interval = period / 2
        log.info("systemd watchdog: pinging every %gs while healthy (timeout %gs)", interval, period)
        ticks = Ticks(interval)
        while True:
            problem = self._check()
            if problem is None:
                if self.withheld is not None:
                    log.warning("systemd watchdog: healthy again, pinging resumed (was: %s)", self.withheld)
                    self.withheld = None
                    self.refresh_status()
                self.notifier.watchdog()
                self.pings += 1
            elif self.withheld is None:
                self.withheld = problem
                log.error(
                    "systemd watchdog: not pinging while unhealthy (systemd restarts the service after %gs): %s",
                    period,
                    problem,
                )
                self.refresh_status()  # say why at once, not at the next status refresh
            await ticks.wait()  # a late wake-up skips the missed slots instead of bursting

    def _check(self) -> str | None:
        try:
            return self.health()
        except Exception as exc:  # a bug in the check: say so, and stop vouching for the process
            log.exception("systemd watchdog: the health check failed")
            return f"health check failed: {exc!r}"

    async def _statuses(self) -> None:
        while True:
            self.refresh_status()
            await trio.sleep(self.status_interval)

    def refresh_status(self) -> None:
        """Send the status line now if it changed since the last one sent."""
        try:
            text = self.status()
        except Exception:
            log.exception("systemd: building the status line failed")
            return
        if self.withheld is not None:  # first: a long status is cut at the end
            text = f"watchdog withheld: {self.withheld}; {text}"
        if text != self._last_status and self.notifier.status(text):
            self._last_status = text
