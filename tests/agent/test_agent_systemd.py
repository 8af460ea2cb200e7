"""The agent under systemd: READY without waiting for the supervisor, a useful status, and
watchdog pings that stop while its outbox is wedged (in-process, real time)."""

from __future__ import annotations

import random
import threading
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from halswarm.agent.app import AgentHandle, run_agent
from halswarm.agent.simulate import default_projects, simulated_factory
from halswarm.testing import agent_config, free_port, wait_until
from tests.notify_recorder import Recorder

if TYPE_CHECKING:
    import sqlite3
    from pathlib import Path

PERIOD: Final = 0.4


async def test_ready_while_the_supervisor_is_down_and_pings_stop_while_the_outbox_is_wedged(tmp_path: Path) -> None:
    notifier = Recorder(watchdog=PERIOD)
    config = agent_config(free_port(), tmp_path / "agent", node_id="node-1")  # nobody listens there
    projects = default_projects("node-1", 2)
    factory = simulated_factory(node_id="node-1", projects=projects, sessions=2, rate=20.0, seed=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            shutdown = trio.Event()
            run = partial(
                run_agent,
                config,
                factory,
                shutdown=shutdown,
                projects=projects,
                rng=random.Random(0),
                notifier=notifier,
            )
            agent: AgentHandle = await nursery.start(run)
            assert notifier.lifecycle() == ["READY"]
            assert not agent.status.connected
            await wait_until(lambda: len(notifier.pings()) >= 3, what="pings")
            await wait_until(
                lambda: any(s.startswith("not connected to the supervisor (cannot reach") for s in notifier.statuses()),
                what="a status naming the problem",
            )

            release = threading.Event()

            def hang(conn: sqlite3.Connection) -> None:
                del conn
                release.wait(30)

            nursery.start_soon(agent.outbox._run, hang)
            await wait_until(lambda: any("watchdog withheld" in s for s in notifier.statuses()), what="withheld")
            pings = len(notifier.pings())
            await trio.sleep(3 * PERIOD)
            assert len(notifier.pings()) == pings
            release.set()
            await wait_until(lambda: len(notifier.pings()) > pings, what="pings resumed")
            shutdown.set()
    assert notifier.lifecycle() == ["READY", "STOPPING"]
    assert any("the outbox database has been inside one call" in s for s in notifier.statuses())
