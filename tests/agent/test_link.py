"""The agent link against a real supervisor on loopback sockets (no virtual time).

A wrong token is retried and reported without leaking sockets; a second agent claiming
a live node id is refused while the first stays online; an agent whose data dir was
wiped continues after the supervisor's position (nothing dropped as a duplicate, also
when it built up a backlog offline before its first connection); an agent keeps its
backlog across a supervisor restart and delivers every event once.
"""

from __future__ import annotations

import gc
import random
import shutil
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import orjson
import pytest
import trio

from halswarm.agent.app import run_agent
from halswarm.agent.backend import AlwaysHealthy, CommandFailedError, EventSink, OutEvent
from halswarm.config.agent import LinkConfig
from halswarm.jsontypes import is_json_object
from halswarm.store import EventQuery
from halswarm.testing import (
    TEST_TOKEN,
    agent_config,
    free_port,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from halswarm.agent.app import AgentHandle
    from halswarm.config import AgentConfig, SupervisorConfig
    from halswarm.jsontypes import JSONObject
    from halswarm.proto.messages import CommandMsg
    from halswarm.supervisor.app import SupervisorHandle

FAST: Final = LinkConfig(backoff_initial_sec=0.05, backoff_max_sec=0.3, stable_after_sec=2.0, close_timeout_sec=2.0)


def auth_failures(supervisor: SupervisorHandle) -> float:
    value = supervisor.metrics.registry.get_sample_value("hal_o_swarm_auth_failures_total", {"listener": "ws"})
    return value or 0.0


def is_online(supervisor: SupervisorHandle, agent: AgentHandle) -> bool:
    entry = supervisor.registry.get(agent.node_id)
    return (
        entry is not None
        and entry.status() == "online"
        and entry.record.instance_key == agent.outbox.instance_key
        and agent.status.connected
    )


def is_online_id(supervisor: SupervisorHandle, node_id: str) -> bool:
    entry = supervisor.registry.get(node_id)
    return entry is not None and entry.status() == "online"


async def hold_supervisor(
    config: SupervisorConfig, stop: trio.Event, *, task_status: trio.TaskStatus[SupervisorHandle]
) -> None:
    """Run a supervisor until *stop* is set (so it can end inside an agent's lifetime)."""
    async with open_supervisor(config) as sup:
        task_status.started(sup)
        await stop.wait()


async def stored_seqs(supervisor: SupervisorHandle, node_id: str, *, limit: int = 10_000) -> list[int]:
    events = await supervisor.store.query_events(EventQuery(node_id=node_id, limit=limit))
    return [e.seq for e in events]


async def outbox_events(agent: AgentHandle) -> list[tuple[str, str | None]]:
    """(type, session_id) of the events waiting in the agent's outbox, in seq order."""
    rows = await agent.outbox.read_after(0, limit=10_000, max_bytes=1 << 30)
    out: list[tuple[str, str | None]] = []
    for _, body in rows:
        value = orjson.loads(body)
        assert is_json_object(value)
        kind, session_id = value["type"], value["session_id"]
        assert isinstance(kind, str)
        assert session_id is None or isinstance(session_id, str)
        out.append((kind, session_id))
    return out


async def test_a_wrong_token_is_retried_and_reported(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_supervisor(supervisor_config(tmp_path / "s.db")) as sup:
            cfg = agent_config(
                sup.ws_port, tmp_path / "agent", node_id="node-w", token="wrong-token-0000000000", link=FAST
            )
            async with open_sim_agent(cfg, sessions=1, rate=0, max_events=5) as agent:
                await wait_until(lambda: auth_failures(sup) >= 3, what="three rejected attempts")
                assert agent.status.last_error == "supervisor rejected our token (HTTP 401): check auth_token"
                assert agent.status.connections == 0
                assert not agent.status.connected
                assert sup.registry.get("node-w") is None
                # Events wait in the outbox; nothing was accepted.
                assert agent.outbox.pending == 5
            # Rejected sockets were closed by us, not left to the garbage collector:
            # a leaked one would raise ResourceWarning here (warnings are errors).
            gc.collect()


NODE_TOKEN: Final = "node-w-own-token-00000000"


@pytest.mark.parametrize(
    ("node_id", "token", "words"),
    [
        # node-w has its own token: the shared one is refused for it.
        ("node-w", TEST_TOKEN, "node node-w has its own token (server.node_tokens); the shared token is refused"),
        # node-v has none: node-w's token is not valid for it.
        ("node-v", NODE_TOKEN, "this token belongs to another node (server.node_tokens), not to node-v"),
    ],
)
async def test_a_token_not_valid_for_the_node_is_retried_and_reported(
    tmp_path: Path, node_id: str, token: str, words: str
) -> None:
    config = supervisor_config(tmp_path / "s.db", node_tokens={"node-w": NODE_TOKEN})
    with trio.fail_after(20):
        async with open_supervisor(config) as sup:
            cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id=node_id, token=token, link=FAST)
            async with open_sim_agent(cfg, sessions=1, rate=0, max_events=3) as agent:
                await wait_until(lambda: auth_failures(sup) >= 2, what="two refused attempts")
                assert agent.status.last_error == (
                    f"supervisor refused our token for node {node_id} (code 4401: {words}): check auth_token"
                )
                assert agent.status.connections == 0
                assert sup.registry.get(node_id) is None
                assert agent.outbox.pending == 3


async def test_the_right_node_token_connects(tmp_path: Path) -> None:
    config = supervisor_config(tmp_path / "s.db", node_tokens={"node-w": NODE_TOKEN})
    with trio.fail_after(20):
        async with open_supervisor(config) as sup:
            cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-w", token=NODE_TOKEN, link=FAST)
            async with open_sim_agent(cfg, sessions=1, rate=0, max_events=3) as agent:
                await wait_until(lambda: is_online(sup, agent), what="node-w online with its own token")
                await wait_until(lambda: sup.pipeline.last_seq("node-w") == 3, what="its events")
            assert auth_failures(sup) == 0


async def test_a_second_agent_cannot_take_a_live_node_id(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_supervisor(supervisor_config(tmp_path / "s.db")) as sup:
            first_cfg = agent_config(sup.ws_port, tmp_path / "first", node_id="node-x", link=FAST)
            second_cfg = agent_config(sup.ws_port, tmp_path / "second", node_id="node-x", link=FAST)
            async with open_sim_agent(first_cfg, sessions=1, rate=0, max_events=5) as first:
                await wait_until(lambda: is_online(sup, first), what="first agent online")
                async with open_sim_agent(second_cfg, sessions=1, rate=0, max_events=5, seed=1) as second:
                    await wait_until(lambda: second.status.last_error is not None, what="second agent refused")
                    error = second.status.last_error
                    assert error is not None
                    assert "4409" in error
                    assert "node_id 'node-x' is in use by another agent instance" in error
                    assert second.status.connections == 0
                    # The first agent was never replaced or disturbed.
                    assert is_online(sup, first)
                    assert first.status.connections == 1
                    await wait_until(lambda: sup.pipeline.last_seq("node-x") == 5, what="first agent's events")
                    assert second.outbox.pending == 5
                assert is_online(sup, first)
            assert await stored_seqs(sup, "node-x") == [1, 2, 3, 4, 5]


async def test_an_agent_with_a_wiped_data_dir_continues_after_the_supervisor(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    with trio.fail_after(30):
        async with open_supervisor(supervisor_config(tmp_path / "s.db")) as sup:
            cfg = agent_config(sup.ws_port, data_dir, node_id="node-r", link=FAST)
            # First life: 60 events, all stored and acknowledged.
            async with open_sim_agent(cfg, sessions=2, rate=0, max_events=60) as agent:
                await wait_until(lambda: agent.outbox.acked_seq == 60, what="first life acked")
                old_key = agent.outbox.instance_key
                old_sessions = {s.id for s in sup.tracker.sessions(node_id="node-r")}
            await wait_until(lambda: not is_online_id(sup, "node-r"), what="node offline after clean close")
            await trio.to_thread.run_sync(shutil.rmtree, data_dir)

            # Second life: a fresh outbox numbers from 1 again, slowly (20 events/s), so it
            # connects long before it reaches the supervisor's position (60).
            async with open_sim_agent(cfg, sessions=2, rate=20, seed=1) as agent:
                assert agent.outbox.instance_key != old_key
                await wait_until(lambda: sup.pipeline.last_seq("node-r") >= 70, what="new events past 60")
                await wait_until(lambda: agent.outbox.pending == 0, what="backlog drained")
            events = await sup.store.query_events(EventQuery(node_id="node-r", limit=10_000))
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    created = [(e.seq, e.session_id) for e in events if e.type == "session.created"]
    assert [seq for seq, _ in created[:2]] == [1, 2]
    # The new life's first events (its sessions) were renumbered past 60 and stored.
    new_created = [(seq, sid) for seq, sid in created if seq > 60]
    assert [seq for seq, _ in new_created] == [61, 62]
    assert not {sid for _, sid in new_created} & old_sessions


async def test_a_wiped_agent_that_built_a_backlog_offline_loses_no_events(tmp_path: Path) -> None:
    """Guards: a wiped agent's offline backlog past the supervisor's position lost its first seqs as duplicates."""
    data_dir = tmp_path / "agent"
    config = supervisor_config(tmp_path / "s.db", port=free_port(), http_port=free_port())
    with trio.fail_after(30):
        async with open_supervisor(config) as sup:
            cfg = agent_config(sup.ws_port, data_dir, node_id="node-o", link=FAST)
            # First life: 20 events, all stored and acknowledged.
            async with open_sim_agent(cfg, sessions=2, rate=0, max_events=20) as agent:
                await wait_until(lambda: agent.outbox.acked_seq == 20, what="first life acked")
        await trio.to_thread.run_sync(shutil.rmtree, data_dir)

        # Second life, while the supervisor is down: a fresh outbox numbers 1..50, past the
        # supervisor's position (20), before it ever connects.
        async with open_sim_agent(cfg, sessions=2, rate=0, max_events=50, seed=1) as agent:
            await wait_until(lambda: agent.outbox.last_seq == 50, what="offline backlog")
            assert agent.status.connections == 0
            backlog = await outbox_events(agent)
            async with open_supervisor(config) as sup:
                await wait_until(
                    lambda: agent.status.connected and agent.outbox.pending == 0, what="backlog acknowledged"
                )
                events = await sup.store.query_events(EventQuery(node_id="node-o", limit=10_000))
    assert len(backlog) == 50
    assert [e.seq for e in events] == list(range(1, 71))
    # Every event of the second life was stored, in order, after the first life's 20.
    assert [(e.type, e.session_id) for e in events[20:]] == backlog


async def test_the_backlog_survives_a_supervisor_restart(tmp_path: Path) -> None:
    total = 150
    config = supervisor_config(tmp_path / "s.db", port=free_port(), http_port=free_port())
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            stop_first = trio.Event()
            sup: SupervisorHandle = await nursery.start(hold_supervisor, config, stop_first)
            cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-b", link=FAST)
            async with open_sim_agent(cfg, sessions=3, rate=150, max_events=total) as agent:
                await wait_until(lambda: sup.pipeline.last_seq("node-b") >= 20, what="some events stored")
                stop_first.set()
                await wait_until(lambda: not agent.status.connected, what="agent disconnected")
                stored_before = agent.outbox.acked_seq
                assert stored_before < total
                # The supervisor is down: the agent keeps producing into its outbox.
                await wait_until(lambda: agent.outbox.last_seq == total, what="all events produced")
                assert not agent.status.connected
                assert agent.outbox.pending == total - stored_before
                assert agent.status.last_error is not None
                assert agent.status.last_error.startswith("cannot reach supervisor at ws://127.0.0.1:")

                async with open_supervisor(config) as second:
                    assert second.ws_port == sup.ws_port
                    await wait_until(lambda: second.pipeline.last_seq("node-b") == total, what="backlog delivered")
                    await wait_until(lambda: agent.outbox.pending == 0, what="backlog acknowledged")
                    assert agent.status.connections == 2
                    assert await stored_seqs(second, "node-b") == list(range(1, total + 1))


@attrs.define
class ManualBackend(AlwaysHealthy):
    """A session backend that emits exactly what the test asks for, when it asks."""

    sink: EventSink | None = None

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.sink = sink
        task_status.started()
        await trio.sleep_forever()

    async def execute(self, command: CommandMsg) -> JSONObject:
        raise CommandFailedError("no commands in this test")

    async def emit(self, kind: str, count: int) -> None:
        assert self.sink is not None
        await self.sink.emit([OutEvent(kind, data={"i": i}) for i in range(count)])


async def _run_manual_agent(
    config: AgentConfig, backend: ManualBackend, shutdown: trio.Event, *, task_status: trio.TaskStatus[AgentHandle]
) -> None:
    await run_agent(config, lambda _: backend, shutdown=shutdown, rng=random.Random(0), task_status=task_status)


@asynccontextmanager
async def open_manual_agent(config: AgentConfig, backend: ManualBackend) -> AsyncGenerator[AgentHandle, None]:
    """Run an agent on *backend* for the duration of the block; clean shutdown on exit."""
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        handle: AgentHandle = await nursery.start(_run_manual_agent, config, backend, shutdown)
        try:
            yield handle
        finally:
            shutdown.set()


async def test_events_appended_while_dialling_survive_an_outbox_rollback(tmp_path: Path) -> None:
    """Guards: after an outbox rollback, events appended while dialling were taken for stored ones and lost."""
    data_dir = tmp_path / "agent"
    backup = tmp_path / "backup"
    with trio.fail_after(30):
        async with open_supervisor(supervisor_config(tmp_path / "s.db")) as sup:
            cfg = agent_config(sup.ws_port, data_dir, node_id="node-p", link=FAST)
            backend = ManualBackend()
            async with open_manual_agent(cfg, backend) as agent:
                await backend.emit("old", 90)
                await wait_until(lambda: agent.outbox.acked_seq == 90, what="90 events acked")
            await wait_until(lambda: not is_online_id(sup, "node-p"), what="node offline after clean close")
            await trio.to_thread.run_sync(shutil.copytree, data_dir, backup)
            backend = ManualBackend()
            async with open_manual_agent(cfg, backend) as agent:
                await backend.emit("old", 10)
                await wait_until(lambda: agent.outbox.acked_seq == 100, what="100 events acked")
            await wait_until(lambda: not is_online_id(sup, "node-p"), what="node offline after clean close")
            assert sup.pipeline.last_seq("node-p") == 100

            # Power loss: the data dir comes back as it was at seq 90; the supervisor holds 100.
            await trio.to_thread.run_sync(shutil.rmtree, data_dir)
            await trio.to_thread.run_sync(shutil.copytree, backup, data_dir)
            # The supervisor's writer is busy (we hold it), so the welcome waits after the
            # agent's hello (last_seq 90) arrived: the backend emits 20 events meanwhile.
            gate = sup.store._write_gate
            await gate.acquire()
            held = True
            try:
                backend = ManualBackend()
                async with open_manual_agent(cfg, backend) as agent:
                    assert agent.outbox.last_seq == 90
                    await wait_until(lambda: is_online_id(sup, "node-p"), what="hello received")
                    await backend.emit("new", 20)
                    assert agent.outbox.last_seq == 110
                    gate.release()
                    held = False
                    await wait_until(lambda: agent.status.connected and agent.outbox.pending == 0, what="all acked")
                    new = await sup.store.query_events(EventQuery(node_id="node-p", type="new", limit=100))
            finally:
                if held:
                    gate.release()
    # Every event of the dial-time burst was stored, in order, after the supervisor's 100.
    assert [e.data["i"] for e in new] == list(range(20))
    assert all(e.seq > 100 for e in new)
