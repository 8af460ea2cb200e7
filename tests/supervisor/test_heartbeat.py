"""Offline detection on virtual time: a silent node goes offline after exactly interval x count.

The registry, tracker and monitor are the real components; the connection is a stand-in
that records how it was closed (timing logic is tested without sockets, house-style
rule 22).
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from halswarm.models import Project, Session
from halswarm.proto.errors import CloseCode
from halswarm.proto.messages import CommandMsg, Heartbeat, Hello
from halswarm.supervisor.heartbeat import HeartbeatMonitor
from halswarm.supervisor.registry import NodeRegistry
from halswarm.supervisor.tracker import SessionTracker

INTERVAL = 30.0
COUNT = 3


@attrs.define
class RecordingLink:
    """Records close requests instead of closing a socket."""

    closed: list[tuple[CloseCode, str]] = attrs.field(factory=list)

    async def send_command(self, command: CommandMsg) -> None:
        raise AssertionError("no commands in this test")

    def close_soon(self, code: CloseCode, reason: str) -> None:
        self.closed.append((code, reason))


def _hello(instance_key: str = "key-1") -> Hello:
    return Hello(
        node_id="node-a", instance_key=instance_key, hostname="host-a", version="t", projects=[Project("p", "/p")]
    )


@attrs.define
class World:
    registry: NodeRegistry
    tracker: SessionTracker
    offline: list[tuple[float, str, str]]
    monitor: HeartbeatMonitor


def _world() -> World:
    tracker = SessionTracker()
    registry = NodeRegistry(on_reachability=tracker.set_node_reachable)
    offline: list[tuple[float, str, str]] = []

    def on_offline(node_id: str, reason: str) -> None:
        offline.append((trio.current_time(), node_id, reason))

    monitor = HeartbeatMonitor(registry, interval=INTERVAL, count=COUNT, on_offline=on_offline)
    return World(registry, tracker, offline, monitor)


async def test_silent_node_goes_offline_after_interval_times_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    w = _world()
    link = RecordingLink()
    start = trio.current_time()
    w.registry.attach(_hello(), link, now=start, wall="2026-01-01T00:00:00.000000Z")
    w.tracker.apply(1, Session(id="ses-1", node_id="node-a", project="p", status="busy"))
    async with trio.open_nursery() as nursery:
        await nursery.start(w.monitor.run)
        await trio.sleep_until(start + INTERVAL * COUNT - 0.001)
        entry = w.registry.get("node-a")
        assert entry is not None
        assert entry.status() == "online"
        busy = w.tracker.get("ses-1")
        assert busy is not None
        assert busy.status == "busy"

        await trio.sleep(0.002)
        assert entry.status() == "offline"
        [(at, node, reason)] = w.offline
        assert at == pytest.approx(start + INTERVAL * COUNT)
        assert (node, reason) == ("node-a", "no frame for 90s (3 missed heartbeats)")
        assert link.closed == [(CloseCode.HEARTBEAT_TIMEOUT, "no frame for 90s (3 missed heartbeats)")]
        session = w.tracker.get("ses-1")
        assert session is not None
        assert session.status == "unreachable"
        # The real status is kept, only hidden.
        assert w.tracker.real_status("ses-1") == "busy"
        nursery.cancel_scope.cancel()


async def test_frames_keep_a_node_online(autojump_clock: trio.testing.MockClock) -> None:
    w = _world()
    w.registry.attach(_hello(), RecordingLink(), now=trio.current_time(), wall="t")
    async with trio.open_nursery() as nursery:
        await nursery.start(w.monitor.run)
        for _ in range(10):  # 10 heartbeats, 30 s apart: 300 s of life
            await trio.sleep(INTERVAL)
            w.registry.touch("node-a", trio.current_time())
        entry = w.registry.get("node-a")
        assert entry is not None
        assert entry.status() == "online"
        assert w.offline == []
        nursery.cancel_scope.cancel()


async def test_offline_fires_once_per_episode_and_node_comes_back(autojump_clock: trio.testing.MockClock) -> None:
    w = _world()
    w.registry.attach(_hello(), RecordingLink(), now=trio.current_time(), wall="t")
    w.tracker.apply(5, Session(id="ses-1", node_id="node-a", project="p", status="waiting"))
    async with trio.open_nursery() as nursery:
        await nursery.start(w.monitor.run)
        await trio.sleep(INTERVAL * COUNT * 5)  # long silence: still only one offline transition
        assert len(w.offline) == 1

        # The agent reconnects (same instance): online again, sessions show their real status.
        _, came_online = w.registry.attach(_hello(), RecordingLink(), now=trio.current_time(), wall="t2")
        assert came_online
        session = w.tracker.get("ses-1")
        assert session is not None
        assert session.status == "waiting"
        await trio.sleep(INTERVAL * COUNT + 1)  # silent again: a second episode
        assert len(w.offline) == 2
        nursery.cancel_scope.cancel()


async def test_completed_sessions_stay_completed_when_offline(autojump_clock: trio.testing.MockClock) -> None:
    w = _world()
    w.registry.attach(_hello(), RecordingLink(), now=trio.current_time(), wall="t")
    w.tracker.apply(1, Session(id="done", node_id="node-a", project="p", status="completed"))
    w.registry.expire("node-a", "test")
    session = w.tracker.get("done")
    assert session is not None
    assert session.status == "completed"


async def test_detection_follows_each_nodes_own_deadline(autojump_clock: trio.testing.MockClock) -> None:
    w = _world()
    t0 = trio.current_time()
    w.registry.attach(_hello(), RecordingLink(), now=t0, wall="t")
    async with trio.open_nursery() as nursery:
        await nursery.start(w.monitor.run)
        await trio.sleep(40)
        second = Hello(node_id="node-b", instance_key="kb", hostname="hb", version="t")
        w.registry.attach(second, RecordingLink(), now=trio.current_time(), wall="t")
        await trio.sleep(INTERVAL * COUNT + 0.001)  # just past t0 + 130: both silent long enough
        times = {node: at for at, node, _ in w.offline}
        assert times == {"node-a": pytest.approx(t0 + 90), "node-b": pytest.approx(t0 + 130)}
        nursery.cancel_scope.cancel()


async def test_no_node_expires_while_the_pipeline_is_congested(autojump_clock: trio.testing.MockClock) -> None:
    """Guards: while the store stalled (the hub stops reading), every silent-looking node was marked offline."""
    w = _world()
    congested = True
    monitor = HeartbeatMonitor(
        w.registry, interval=INTERVAL, count=COUNT, on_offline=w.monitor.on_offline, congested=lambda: congested
    )
    link = RecordingLink()
    start = trio.current_time()
    w.registry.attach(_hello(), link, now=start, wall="t")
    entry = w.registry.get("node-a")
    assert entry is not None
    with trio.fail_after(10_000):  # virtual seconds
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            # Ten timeouts' worth of silence, all while congested: the node stays online.
            await trio.sleep_until(start + INTERVAL * COUNT * 10 + 0.5)
            assert entry.status() == "online"
            assert w.offline == []
            assert link.closed == []
            # Congestion ends: a full timeout from the monitor's last check while congested.
            congested = False
            await trio.sleep_until(start + INTERVAL * COUNT * 11 - 0.001)
            assert entry.status() == "online"
            await trio.sleep(0.002)
            assert entry.status() == "offline"
            [(at, node, _)] = w.offline
            assert at == pytest.approx(start + INTERVAL * COUNT * 11)
            assert node == "node-a"
            nursery.cancel_scope.cancel()


def test_a_reconnecting_node_shows_the_health_of_its_hello_not_the_old_one() -> None:
    w = _world()
    w.registry.attach(_hello(), RecordingLink(), now=0.0, wall="t")
    w.registry.heartbeat("node-a", Heartbeat(ts="t", health={"opencode": "ok"}), "t")
    entry = w.registry.get("node-a")
    assert entry is not None
    assert entry.status() == "online"
    restarted = attrs.evolve(_hello(), health={"opencode": "starting"}, facts={"opencode_mode": "spawn"})
    w.registry.attach(restarted, RecordingLink(), now=1.0, wall="t2")
    assert entry.status() == "degraded"
    assert w.registry.to_node(entry, 0).facts == {"opencode_mode": "spawn"}
