"""systemd's notify protocol: datagrams on a real AF_UNIX socket; the watchdog's pacing on MockClock."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from halswarm.sdnotify import Notifier, ServiceMonitor, watchdog_period
from tests.notify_recorder import Recorder

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def received(sock: socket.socket) -> list[dict[str, str]]:
    """Every datagram waiting on *sock*, each as its ``KEY=value`` lines."""
    messages: list[dict[str, str]] = []
    while True:
        try:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return messages
        lines = data.decode().split("\n")
        messages.append(dict(line.split("=", 1) for line in lines))


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to a path (short: AF_UNIX paths are limited to 107 bytes), as systemd's."""
    with tempfile.TemporaryDirectory(prefix="sd-") as where, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = os.path.join(where, "notify")
        sock.bind(path)
        yield path, sock


def test_ready_status_reloading_stopping_and_watchdog_arrive_as_datagrams(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("2 of 3 nodes online")
    assert notifier.reloading("reloading the configuration")
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.status("line one\nline two")
    assert notifier.stopping()
    ready, reloading, ready_again, ping, status, stopping = received(sock)
    assert ready == {"READY": "1", "STATUS": "2 of 3 nodes online"}
    assert reloading.keys() == {"RELOADING", "MONOTONIC_USEC", "STATUS"}
    assert reloading["MONOTONIC_USEC"].isdigit()
    assert ready_again == {"READY": "1"}
    assert ping == {"WATCHDOG": "1"}
    assert status == {"STATUS": "line one line two"}  # a newline would start a new key
    assert stopping == {"STOPPING": "1"}
    assert notifier.sent == 6


def test_an_abstract_socket_name_is_used_as_such() -> None:
    name = f"halswarm-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier("@" + name).ready()
        assert received(sock) == [{"READY": "1"}]


def test_without_notify_socket_everything_is_a_no_op() -> None:
    environ: dict[str, str] = {}
    notifier = Notifier.from_environ(environ)
    assert not notifier.enabled
    assert notifier.watchdog_period is None
    assert not notifier.ready("x")
    assert not notifier.watchdog()


def test_from_environ_reads_then_removes_the_variables(notify_socket: tuple[str, socket.socket]) -> None:
    path, _sock = notify_socket
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid()), "HOME": "/x"}
    notifier = Notifier.from_environ(environ)
    assert notifier.address == path
    assert notifier.watchdog_period == 30.0
    assert environ == {"HOME": "/x"}  # children (opencode) must not inherit them


def test_a_failed_send_never_raises_and_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    for _ in range(3):
        assert not notifier.watchdog()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot send a notification" in warnings[0].getMessage()


def test_an_unsupported_address_disables_notifications(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier("vsock:2:1234", watchdog=30.0)
    assert not notifier.enabled
    assert notifier.watchdog_period is None
    assert not notifier.ready()
    assert "not a path or @name" in caplog.text


def test_a_long_status_is_cut_to_one_line(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    Notifier(path).status("x" * 500)
    [message] = received(sock)
    assert len(message["STATUS"]) == 300
    assert message["STATUS"].endswith("…")


@pytest.mark.parametrize(
    ("environ", "period"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_period(environ: dict[str, str], period: float | None) -> None:
    assert watchdog_period(environ, pid=4242) == period


# ---- the watchdog task on trio's MockClock --------------------------------------------------


async def test_pings_every_half_period_only_while_healthy_then_resumes(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Recorder(watchdog=30.0)
    problem: list[str] = []
    monitor = ServiceMonitor(notifier, health=lambda: problem[0] if problem else None, status=lambda: "fine")
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(monitor.run)
        await trio.sleep(40)  # pings at 0, 15, 30
        problem.append("the database writer has been inside one call for 31s")
        await trio.sleep(45)  # slots at 45, 60, 75: nothing
        problem.clear()
        await trio.sleep(25)  # 90, 105 (never a tie with the test's own wake-ups)
        nursery.cancel_scope.cancel()
    assert [at - start for at in notifier.pings()] == [0, 15, 30, 90, 105]
    assert "not pinging while unhealthy" in caplog.text
    assert "the database writer has been inside one call" in caplog.text
    assert "healthy again, pinging resumed" in caplog.text
    # While pings were held back, `systemctl status` said why.
    assert "watchdog withheld: the database writer has been inside one call for 31s; fine" in notifier.statuses()


async def test_a_late_wake_up_skips_the_missed_pings_instead_of_bursting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Recorder(watchdog=30.0)
    monitor = ServiceMonitor(notifier, health=lambda: None, status=lambda: "fine")
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(monitor.run)
            await trio.sleep(20)  # pings at 0, 15
            autojump_clock.jump(32)  # the process was stopped (SIGSTOP) from 20 to 52
            await trio.sleep(20)  # until 72
            nursery.cancel_scope.cancel()
    # The ping due at 30 is sent at 52; 45 is skipped, not sent at 52 as well.
    assert [at - start for at in notifier.pings()] == [0, 15, 52, 60]


async def test_a_failing_health_check_counts_as_unhealthy(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str | None:
        raise RuntimeError("bug")

    notifier = Recorder(watchdog=10.0)
    monitor = ServiceMonitor(notifier, health=broken, status=lambda: "x")
    with trio.move_on_after(30):
        await monitor.run()
    assert notifier.pings() == []
    assert monitor.withheld == "health check failed: RuntimeError('bug')"


async def test_status_is_sent_when_it_changes(autojump_clock: trio.testing.MockClock) -> None:
    notifier = Recorder(watchdog=None)
    text = ["starting"]
    monitor = ServiceMonitor(notifier, health=lambda: None, status=lambda: text[0], status_interval=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(12)
        text[0] = "1 of 1 nodes online"
        await trio.sleep(12)
        nursery.cancel_scope.cancel()
    assert notifier.statuses() == ["starting", "1 of 1 nodes online"]
    assert notifier.pings() == []  # no WATCHDOG_USEC: no pings


async def test_a_disabled_notifier_makes_the_monitor_return_at_once() -> None:
    monitor = ServiceMonitor(Notifier(None, watchdog=30.0), health=lambda: None, status=lambda: "x")
    with trio.fail_after(1):
        await monitor.run()
    assert monitor.pings == 0
