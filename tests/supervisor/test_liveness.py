"""The supervisor's systemd watchdog: pings stop when the database writer is wedged, not when
the disk is full (a restart would not help there), and resume by themselves."""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, Final

import attrs
import pytest
import trio

from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from halswarm.supervisor.liveness import supervisor_problem
from halswarm.testing import agent_config, open_sim_agent, supervisor_config, wait_until
from tests.notify_recorder import Recorder
from tests.sqlite_faults import disk_full

if TYPE_CHECKING:
    import sqlite3
    from pathlib import Path

PERIOD: Final = 0.4  # the watchdog timeout systemd would pass (WATCHDOG_USEC), scaled down


@attrs.frozen
class Stuck:
    writer: float = 0.0
    attempt: float = 0.0

    def writer_stuck_for(self) -> float:
        return self.writer

    def attempt_stuck_for(self) -> float:
        return self.attempt


@pytest.mark.parametrize(
    ("stuck", "problem"),
    [
        (Stuck(), None),
        (Stuck(writer=30.0, attempt=30.0), None),  # at the limit, not beyond
        (Stuck(writer=31.0), "the database writer has been inside one call for 31.0s (limit 30s)"),
        (Stuck(attempt=45.0), "storing a batch of events has taken 45.0s so far (limit 30s)"),
    ],
)
def test_supervisor_problem(stuck: Stuck, problem: str | None) -> None:
    assert supervisor_problem(stuck, stuck, 30.0) == problem


async def test_pings_stop_while_the_writer_is_wedged_but_not_on_a_full_disk(tmp_path: Path) -> None:
    notifier = Recorder(watchdog=PERIOD)
    config = supervisor_config(tmp_path / "sup.db")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            shutdown = trio.Event()
            sup: SupervisorHandle = await nursery.start(
                partial(run_supervisor, config, shutdown=shutdown, notifier=notifier)
            )
            monitor = sup.monitor
            await wait_until(lambda: monitor.pings >= 3, what="pings")
            agent = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-1")
            async with open_sim_agent(agent, sessions=3, rate=200.0):
                await wait_until(lambda: sup.registry.online_count() == 1, what="the agent online")

                # A full disk: every write fails at once; the supervisor is degraded, not wedged.
                async with disk_full(sup.store._writer, sup.store._write_gate):
                    await wait_until(lambda: sup.pipeline.stalled_since is not None, what="the pipeline stalled")
                    pings = monitor.pings
                    await wait_until(lambda: monitor.pings >= pings + 6, what="pings during the full disk")
                    assert monitor.withheld is None
                await wait_until(lambda: sup.pipeline.stalled_since is None, within=20, what="storage recovered")

                # A write that never returns (a hung disk): the pings stop until it does.
                release = threading.Event()

                def hang(conn: sqlite3.Connection) -> None:
                    del conn
                    release.wait(30)

                async def wedge() -> None:
                    await sup.store._write(hang)

                nursery.start_soon(wedge)
                await wait_until(lambda: monitor.withheld is not None, what="pings withheld")
                pings = monitor.pings
                withheld = str(monitor.withheld)
                await trio.sleep(3 * PERIOD)
                assert monitor.pings == pings
                release.set()
                await wait_until(lambda: monitor.pings > pings, what="pings resumed")
                assert monitor.withheld is None
            shutdown.set()
    assert withheld.startswith(("the database writer has been inside one call", "storing a batch of events"))
    assert any("watchdog withheld" in status for status in notifier.statuses())
    assert notifier.lifecycle() == ["READY", "STOPPING"]
