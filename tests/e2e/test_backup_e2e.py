"""An online backup taken while events stream in holds every event acknowledged before it.

A real ``hal-supervisor`` and four ``hal-agent --simulate`` processes stream thousands of
events per second. Just before the backup starts, the test reads what the supervisor has
committed: the supervisor acknowledges a batch only after committing it, so the
committed events are (a superset of) the acknowledged ones. ``hal-supervisor db backup``
then runs as its own process while the stream goes on. The backup must pass its
integrity check and hold, for every node, seqs 1..N with none missing and none twice,
with N at least the seq recorded before it started.
"""

from __future__ import annotations

import sys
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
from tests.db_rows import file_rows

if TYPE_CHECKING:
    from pathlib import Path

AGENTS = 4
RATE_PER_AGENT = 2_000  # events/s each: the stream outlasts the backup by far
MIN_EVENTS_BEFORE = 4_000  # per node: a database of ~5 MiB
STEP_PAGES = 64  # so the backup copies it in ~20 steps from one snapshot while writes go on
TOKEN = "backup-token-0123456789abcdef"

pytestmark = pytest.mark.slow


def _node(i: int) -> str:
    return f"node-{i}"


def _integrity(db: Path) -> list[tuple[object, ...]]:
    return file_rows(db, "PRAGMA integrity_check", read_only=True)


async def test_a_backup_during_writes_holds_every_event_acked_before_it(tmp_path: Path) -> None:
    ws_port, http_port = free_port(), free_port()
    db = tmp_path / "supervisor.db"
    config = write_json(
        tmp_path / "supervisor.json", supervisor_json(token=TOKEN, ws_port=ws_port, http_port=http_port, db=db)
    )
    logs = tmp_path / "logs"
    agents: list[Daemon] = []
    with trio.fail_after(120):
        supervisor = await start_daemon(
            "supervisor", ["--config", str(config), "--log-format", "text"], logs / "sup.log"
        )
        try:
            await wait_supervisor_ready(http_port, within=20)
            for i in range(AGENTS):
                agent_config = write_json(
                    tmp_path / f"agent-{i}.json",
                    agent_json(token=TOKEN, ws_port=ws_port, node_id=_node(i), data_dir=tmp_path / f"agent-{i}"),
                )
                args = ["--config", str(agent_config), "--log-format", "text", "--simulate", "3"]
                args += ["--rate", str(RATE_PER_AGENT), "--max-events", "10000000"]
                agents.append(await start_daemon("agent", args, logs / f"agent-{i}.log"))

            def enough() -> bool:
                counts = stored_seqs(db)
                return len(counts) == AGENTS and all(c[0] >= MIN_EVENTS_BEFORE for c in counts.values())

            async def streaming() -> bool:
                return await trio.to_thread.run_sync(enough)

            await wait_until(streaming, within=60, interval=0.2, what="every agent streaming")

            # The acked set: committed before the backup process starts.
            acked = await trio.to_thread.run_sync(stored_seqs, db)
            for node, (rows, distinct, low, high) in acked.items():
                assert (rows, distinct, low) == (high, high, 1), f"{node} has gaps before the backup"
            target = tmp_path / "backups" / "supervisor-backup.db"
            target.parent.mkdir()
            backup = await trio.run_process(
                [
                    sys.executable,
                    "-c",
                    "import halswarm.supervisor.main as m; m.main()",
                    "db",
                    "backup",
                    str(target),
                    "--config",
                    str(config),
                    "--step-pages",
                    str(STEP_PAGES),
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            after = await trio.to_thread.run_sync(stored_seqs, db)
            assert backup.returncode == 0, backup.stderr.decode()
            assert b"integrity check: ok" in backup.stdout
            assert b"  copied " in backup.stderr  # progress, step by step
            for i, agent in enumerate(agents):
                assert agent.process.returncode is None, f"agent {i} died:\n{agent.log_text()[-2000:]}"
        finally:
            with trio.move_on_after(30, shield=True):
                agent_codes = [await agent.stop() for agent in agents]
                supervisor_code = await supervisor.stop()

    saved = await trio.to_thread.run_sync(stored_seqs, target)
    assert await trio.to_thread.run_sync(_integrity, target) == [("ok",)]
    assert sorted(saved) == sorted(acked) == [_node(i) for i in range(AGENTS)]
    for node, (_, _, _, acked_high) in acked.items():
        rows, distinct, low, high = saved[node]
        # 1..N, none missing, none twice, and nothing acked before the backup is absent.
        assert (rows, distinct, low) == (high, high, 1), node
        assert high >= acked_high, node
    # The stream went on while the backup ran: the live database moved past the backup.
    assert sum(c[0] for c in after.values()) > sum(c[0] for c in saved.values())
    assert agent_codes == [0] * AGENTS
    assert supervisor_code == 0
    for log in logs.iterdir():
        assert "Traceback" not in log.read_text(errors="replace"), log.name
