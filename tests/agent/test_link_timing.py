"""The agent's reconnect loop on virtual time, against fake connectors (no sockets).

Checks the exact attempt times: jittered exponential backoff from the seeded random
source, no reset for a supervisor that accepts and drops us at once, a reset after a
connection stayed up ``stable_after_sec``, and the maximum delay (with a clear reason in
``status.last_error``) for a rejected token or a node-id conflict.

Determinism: the outbox is opened before the clock matters, and no connect attempt may
hop to a worker thread (the autojump clock would jump while the thread runs). The
``no_threads`` fixture turns any such hop into a test failure, which proves it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, NoReturn, cast

import attrs
import pytest
import trio
import trio.testing
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, WebSocketConnection

from halswarm.agent.backend import AlwaysHealthy, EventSink
from halswarm.agent.backoff import Backoff
from halswarm.agent.executor import Executor
from halswarm.agent.link import AgentLink
from halswarm.agent.outbox import open_outbox
from halswarm.config.agent import AgentConfig, LinkConfig
from halswarm.models import Resources
from halswarm.proto import CloseCode, Hello, decode
from halswarm.sync import Signal

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import TracebackType

    from halswarm.agent.link import _Connection
    from halswarm.jsontypes import JSONObject
    from halswarm.proto import AgentProtocol
    from halswarm.proto.messages import CommandMsg

SEED: Final = 1234
INITIAL: Final = 1.0
MAXIMUM: Final = 20.0
STABLE: Final = 30.0
URL: Final = "ws://supervisor.invalid:8420"
TOKEN: Final = "agent-token-0000000000"
LINK: Final = LinkConfig(
    connect_timeout_sec=60.0,  # above STABLE: a fake connection may stay up that long before its welcome
    backoff_initial_sec=INITIAL,
    backoff_max_sec=MAXIMUM,
    stable_after_sec=STABLE,
    close_timeout_sec=1.0,
)


class NullBackend(AlwaysHealthy):
    """A backend with no sessions; these tests never run a command."""

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def execute(self, command: CommandMsg) -> JSONObject:
        raise AssertionError("no commands in these tests")


class FakeWebSocket:
    """An accepted WebSocket whose supervisor never welcomes us and closes after *hold* s."""

    def __init__(self, hold: float, code: int, reason: str) -> None:
        self.hold = hold
        self.code = code
        self.reason = reason
        self.sent: list[str] = []

    async def send_message(self, message: str) -> None:
        self.sent.append(message)

    async def get_message(self) -> str:
        await trio.sleep(self.hold)
        raise ConnectionClosed(CloseReason(self.code, self.reason))

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        return None


class _Attempt(AbstractAsyncContextManager[WebSocketConnection]):
    def __init__(self, outcome: BaseException | FakeWebSocket) -> None:
        self.outcome = outcome

    async def __aenter__(self) -> WebSocketConnection:
        if isinstance(self.outcome, FakeWebSocket):
            # Only the three methods above are used by the link.
            return cast("WebSocketConnection", self.outcome)
        raise self.outcome

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


@attrs.define
class FakeConnector:
    """Records the virtual time and headers of every attempt; *outcome* makes each one fail."""

    outcome: Callable[[], BaseException | FakeWebSocket]
    wanted: int
    times: list[float] = attrs.field(factory=list)
    headers: list[list[tuple[bytes, bytes]]] = attrs.field(factory=list)
    sockets: list[FakeWebSocket] = attrs.field(factory=list)
    enough: trio.Event = attrs.field(factory=trio.Event)

    def __call__(
        self, url: str, headers: list[tuple[bytes, bytes]]
    ) -> AbstractAsyncContextManager[WebSocketConnection]:
        assert url == f"{URL}/ws"
        self.times.append(trio.current_time())
        self.headers.append(headers)
        if len(self.times) >= self.wanted:
            self.enough.set()
        outcome = self.outcome()
        if isinstance(outcome, FakeWebSocket):
            self.sockets.append(outcome)
        return _Attempt(outcome)


def _fixed_now() -> datetime:
    raise AssertionError("no timestamps are made while never connected")


@pytest.fixture
def thread_hops() -> list[str]:
    """Filled by the ``no_threads`` guard; must stay empty."""
    return []


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch, thread_hops: list[str]) -> Iterator[Callable[[], None]]:
    """Returns a function that, once called, makes every worker-thread hop fail the test."""

    def arm() -> None:
        async def refuse(fn: object, *args: object, **kwargs: object) -> NoReturn:
            thread_hops.append(getattr(fn, "__qualname__", repr(fn)))
            raise AssertionError(f"worker thread used on virtual time: {fn!r}")

        monkeypatch.setattr(trio.to_thread, "run_sync", refuse)

    yield arm
    assert thread_hops == []


def advance(t: float, delay: float) -> float:
    """Where the autojump clock lands after ``sleep(delay)`` at *t* (it jumps by deadline - now)."""
    return t + ((t + delay) - t)


def expected_times(start: float, holds: list[float], delays: list[float]) -> list[float]:
    """Attempt k+1 starts after attempt k's connection time plus its backoff delay."""
    times = [start]
    for hold, delay in zip(holds, delays, strict=True):
        times.append(advance(advance(times[-1], hold), delay))
    return times


async def run_link(
    tmp_path: Path, connector: FakeConnector, arm: Callable[[], None], *, pending: int = 0
) -> tuple[AgentLink, float, float]:
    """Run a link until the connector saw enough attempts; returns it with its start and stop times."""
    config = AgentConfig(supervisor_url=URL, auth_token=TOKEN, node_id="node-t", data_dir=str(tmp_path), link=LINK)
    # Opened (and written) before the clock matters: this is the only thread use.
    async with open_outbox(tmp_path / "agent") as outbox:
        if pending:
            await outbox.append([b"{}"] * pending)
        arm()
        shutdown = trio.Event()
        sink = EventSink(outbox, now=_fixed_now)
        link = AgentLink(
            config,
            outbox=outbox,
            sink=sink,
            executor=Executor(NullBackend(), outbox),
            shutdown=shutdown,
            now=_fixed_now,
            rng=random.Random(SEED),
            resources=Resources,
            health=lambda: {"backend": "ok"},
            connector=connector,
        )
        with trio.fail_after(10_000):  # virtual seconds: a hang guard that cannot fire by accident
            async with trio.open_nursery() as nursery:
                start = trio.current_time()
                await nursery.start(link.run)
                await connector.enough.wait()
                shutdown.set()
                await link.stopped.wait()
                stopped = trio.current_time()
    return link, start, stopped


def seeded_delays(attempts: list[int]) -> list[float]:
    backoff = Backoff(INITIAL, MAXIMUM)
    rng = random.Random(SEED)
    return [backoff.delay(a, rng) for a in attempts]


async def test_unreachable_supervisor_is_retried_on_the_backoff_schedule(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None]
) -> None:
    connector = FakeConnector(lambda: OSError(111, "Connection refused"), wanted=9)
    link, start, stopped = await run_link(tmp_path, connector, no_threads)
    delays = seeded_delays(list(range(8)))
    assert connector.times == expected_times(start, [0.0] * 8, delays)
    # Delays grow and reach the cap: attempt 6 would be 64 s, capped at 20.
    assert delays[5] > delays[0] * 8
    assert all(MAXIMUM / 2 <= d <= MAXIMUM for d in delays[5:])
    # Shutdown interrupts the wait at once.
    assert stopped == connector.times[-1]
    assert link.status.connected is False
    assert link.status.connections == 0
    assert link.status.last_error is not None
    assert link.status.last_error.startswith(f"cannot reach supervisor at {URL}: ")
    assert "Connection refused" in link.status.last_error
    assert connector.headers[0] == [(b"Authorization", f"Bearer {TOKEN}".encode())]


async def test_accept_then_drop_does_not_reset_the_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None]
) -> None:
    # The supervisor accepts the WebSocket and drops it 2 s later, before any welcome.
    connector = FakeConnector(lambda: FakeWebSocket(2.0, 1011, "internal error"), wanted=6)
    link, start, _ = await run_link(tmp_path, connector, no_threads, pending=3)
    assert connector.times == expected_times(start, [2.0] * 5, seeded_delays([0, 1, 2, 3, 4]))
    # Each connection said hello first, with the outbox position.
    hello = decode(connector.sockets[0].sent[0])
    assert isinstance(hello, Hello)
    assert (hello.node_id, hello.last_seq) == ("node-t", 3)
    assert link.status.last_error == "supervisor closed the connection (code 1011: internal error)"


async def test_a_connection_that_stayed_up_resets_the_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None]
) -> None:
    hold = STABLE + 0.5
    connector = FakeConnector(lambda: FakeWebSocket(hold, 1001, "supervisor shutting down"), wanted=6)
    _, start, _ = await run_link(tmp_path, connector, no_threads)
    # Every wait is drawn for attempt 0 again (the rng still advances).
    assert connector.times == expected_times(start, [hold] * 5, seeded_delays([0] * 5))


async def test_just_under_stable_after_does_not_reset(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None]
) -> None:
    hold = STABLE - 0.5
    connector = FakeConnector(lambda: FakeWebSocket(hold, 1001, "supervisor shutting down"), wanted=5)
    _, start, _ = await run_link(tmp_path, connector, no_threads)
    assert connector.times == expected_times(start, [hold] * 4, seeded_delays([0, 1, 2, 3]))


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_token_waits_the_maximum_and_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None], status: int
) -> None:
    def rejected() -> ConnectionRejected:
        return ConnectionRejected(status, ((b"content-type", b"application/json"),), b"{}")

    connector = FakeConnector(rejected, wanted=4)
    link, start, _ = await run_link(tmp_path, connector, no_threads)
    assert connector.times == expected_times(start, [0.0] * 3, [MAXIMUM] * 3)
    assert link.status.last_error == f"supervisor rejected our token (HTTP {status}): check auth_token"


async def test_other_rejections_use_the_normal_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None]
) -> None:
    connector = FakeConnector(lambda: ConnectionRejected(503, (), b"busy"), wanted=4)
    link, start, _ = await run_link(tmp_path, connector, no_threads)
    assert connector.times == expected_times(start, [0.0] * 3, seeded_delays([0, 1, 2]))
    assert link.status.last_error == "supervisor refused the connection (HTTP 503)"


async def test_a_node_id_conflict_waits_the_maximum_and_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, no_threads: Callable[[], None]
) -> None:
    reason = "node_id 'node-t' is in use by another agent instance"
    connector = FakeConnector(lambda: FakeWebSocket(0.0, int(CloseCode.NODE_ID_CONFLICT), reason), wanted=4)
    link, start, _ = await run_link(tmp_path, connector, no_threads)
    assert connector.times == expected_times(start, [0.0] * 3, [MAXIMUM] * 3)
    assert link.status.last_error == f"supervisor closed the connection (code 4409: {reason})"


async def test_the_guard_notices_a_thread_hop(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    no_threads: Callable[[], None],
    thread_hops: list[str],
) -> None:
    # The determinism argument above rests on the guard: show that it trips.
    async with open_outbox(tmp_path / "agent") as outbox:
        no_threads()
        with pytest.raises(AssertionError, match="worker thread used on virtual time"):
            await outbox.count()
    assert len(thread_hops) == 1
    assert thread_hops[0].startswith("Outbox.count")
    thread_hops.clear()


class RecordingConnection:
    """Stands in for a live connection: records when each frame was sent."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def send(self, frame: str) -> None:
        self.times.append(trio.current_time())


class FrameMaker:
    def heartbeat_frame(self, heartbeat: object) -> str:
        return "heartbeat"


async def test_extra_heartbeats_on_health_changes_keep_the_regular_schedule(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    changed = Signal()
    config = AgentConfig(supervisor_url=URL, auth_token=TOKEN, node_id="node-h", data_dir=str(tmp_path), link=LINK)
    async with open_outbox(tmp_path / "agent") as outbox:
        link = AgentLink(
            config,
            outbox=outbox,
            sink=EventSink(outbox, now=_fixed_now),
            executor=Executor(NullBackend(), outbox),
            shutdown=trio.Event(),
            now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
            rng=random.Random(SEED),
            resources=Resources,
            health=lambda: {"backend": "ok"},
            health_changed=changed,
        )
        conn = RecordingConnection()
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            beats = link._heartbeats(cast("_Connection", conn), cast("AgentProtocol", FrameMaker()), 30.0)
            nursery.start_soon(lambda: beats)
            for at in (5.0, 6.0, 7.0):
                await trio.sleep_until(start + at)
                changed.fire()
            await trio.sleep_until(start + 95.0)
            nursery.cancel_scope.cancel()
    # One at once for each change, and the regular ones still every 30 s.
    assert [t - start for t in conn.times] == [0.0, 5.0, 6.0, 7.0, 30.0, 60.0, 90.0]
