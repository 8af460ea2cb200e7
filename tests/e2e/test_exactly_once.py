"""Exactly-once delivery under crashes, with real processes on loopback.

Ten ``hal-agent --simulate`` processes stream 10,000 events each while the supervisor is
SIGKILLed and restarted twice and one agent is SIGKILLed and restarted. Afterwards the
store holds seqs 1..10,000 of every node exactly once, and every outbox is empty.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.testing import (
    Daemon,
    agent_json,
    free_port,
    start_daemon,
    stored_seqs,
    supervisor_json,
    wait_supervisor_ready,
    wait_until,
    write_json,
)

if TYPE_CHECKING:
    from pathlib import Path

AGENTS = 10
EVENTS_PER_AGENT = 10_000
RATE_PER_AGENT = 1_000  # events/s: streaming lasts ~10 s, long enough to crash things mid-flow
TOKEN = "chaos-token-0123456789abcdef"

pytestmark = pytest.mark.slow


def _node(i: int) -> str:
    return f"node-{i:02d}"


def _outbox_rows(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "outbox.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


async def test_every_event_stored_exactly_once_across_crashes(tmp_path: Path) -> None:
    ws_port, http_port = free_port(), free_port()
    db = tmp_path / "supervisor.db"
    sup_config = write_json(
        tmp_path / "supervisor.json", supervisor_json(token=TOKEN, ws_port=ws_port, http_port=http_port, db=db)
    )
    agent_dirs = [tmp_path / f"agent-{i}" for i in range(AGENTS)]
    agent_configs = [
        write_json(
            tmp_path / f"agent-{i}.json",
            {
                **agent_json(token=TOKEN, ws_port=ws_port, node_id=_node(i), data_dir=agent_dirs[i]),
                "link": {
                    "backoff_initial_sec": 0.1,
                    "backoff_max_sec": 1.0,
                    "stable_after_sec": 2,
                    "connect_timeout_sec": 1.5,
                },
            },
        )
        for i in range(AGENTS)
    ]
    agent_args = ["--simulate", "3", "--rate", str(RATE_PER_AGENT), "--max-events", str(EVENTS_PER_AGENT)]
    logs = tmp_path / "logs"

    async def start_supervisor() -> Daemon:
        daemon = await start_daemon(
            "supervisor", ["--config", str(sup_config), "--log-format", "text"], logs / "sup.log"
        )
        await wait_supervisor_ready(http_port, within=20)
        return daemon

    async def start_agent(i: int) -> Daemon:
        args = ["--config", str(agent_configs[i]), "--log-format", "text", *agent_args]
        return await start_daemon("agent", args, logs / f"agent-{i}.log")

    with trio.fail_after(240):
        supervisor = await start_supervisor()
        agents = [await start_agent(i) for i in range(AGENTS)]
        try:
            start = trio.current_time()
            await trio.sleep_until(start + 3)
            supervisor.kill()  # crash 1: mid-stream, no goodbye
            await supervisor.process.wait()
            supervisor = await start_supervisor()

            await trio.sleep_until(start + 5)
            agents[3].kill()  # an agent crashes with unacked events in its outbox
            await agents[3].process.wait()
            agents[3] = await start_agent(3)

            await trio.sleep_until(start + 7)
            supervisor.kill()  # crash 2
            await supervisor.process.wait()
            supervisor = await start_supervisor()

            def all_stored() -> bool:
                counts = stored_seqs(db)
                return len(counts) == AGENTS and all(c[0] >= EVENTS_PER_AGENT for c in counts.values())

            async def stored() -> bool:
                return await trio.to_thread.run_sync(all_stored)

            await wait_until(stored, within=120, interval=0.5, what="every agent's events stored")
            counts = await trio.to_thread.run_sync(stored_seqs, db)
            for i in range(AGENTS):
                rows, distinct, low, high = counts[_node(i)]
                # None lost (1..N all present), none duplicated (rows == distinct == N).
                assert (rows, distinct, low, high) == (EVENTS_PER_AGENT, EVENTS_PER_AGENT, 1, EVENTS_PER_AGENT), _node(
                    i
                )
            for i, agent in enumerate(agents):
                assert agent.process.returncode is None, f"agent {i} died:\n{agent.log_text()[-2000:]}"
        finally:
            with trio.move_on_after(60, shield=True):
                codes = [await a.stop() for a in agents]
                sup_code = await supervisor.stop()
        assert codes == [0] * AGENTS
        assert sup_code == 0
        # Every event was acknowledged, so every outbox is empty.
        assert [_outbox_rows(d) for d in agent_dirs] == [0] * AGENTS
        for log in logs.iterdir():
            assert "Traceback" not in log.read_text(errors="replace"), log.name
