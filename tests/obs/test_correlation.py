"""A correlation id travels HTTP -> command -> agent -> result and back (issue 8).

An operator who sends ``X-Correlation-ID: abc123...`` finds that id on the supervisor's
accept line, the agent's execution line, the outcome line, the command record and its
audit rows: one ``grep`` reconstructs the whole story.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import orjson
import trio

from halswarm.obs.logging import CorrelationFilter, JsonFormatter
from halswarm.testing import agent_config, api_client, open_sim_agent, open_supervisor, supervisor_config, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from halswarm.jsontypes import JSONObject

CID: Final = "abc123def4567890"


async def test_a_correlation_id_is_on_every_line_and_row_of_its_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # The stamping filter sits on the daemons' handler; put it on caplog's the same way.
    caplog.handler.addFilter(CorrelationFilter())
    with trio.fail_after(30):
        async with open_supervisor(supervisor_config(tmp_path / "s.db")) as sup:
            cfg = agent_config(sup.ws_port, tmp_path / "agent", node_id="node-c")
            async with open_sim_agent(cfg, sessions=1, rate=5.0), api_client(sup) as client:
                await wait_until(lambda: sup.registry.online_count() == 1, what="agent online")
                reply = await client.post(
                    "/api/v1/commands",
                    params={"wait": 10},
                    json={"type": "start_session", "target": "sim-project-1", "args": {"prompt": "hi"}},
                    headers={"X-Correlation-ID": CID},
                )
                assert reply.status_code == 200, reply.text
                assert reply.headers["X-Correlation-ID"] == CID
                command = reply.json()["command"]
                command_id = command["id"]
                assert command["status"] == "succeeded", command
                assert command["correlation_id"] == CID
                stored = (await client.get(f"/api/v1/commands/{command_id}")).json()["command"]
                assert stored["correlation_id"] == CID
                rows: list[JSONObject] = []

                async def both_rows() -> bool:
                    # The outcome's row is stored just after the waiter is answered.
                    query = {"action": "command.start_session"}
                    audit = (await client.get("/api/v1/audit", params=query)).json()["audit"]
                    rows[:] = [row for row in audit if row.get("detail", {}).get("command_id") == command_id]
                    return {row["outcome"] for row in rows} >= {"accepted", "succeeded"}

                await wait_until(both_rows, what="the accepted and succeeded audit rows")
    assert all(row["correlation_id"] == CID for row in rows)

    lines = [
        line
        for line in (orjson.loads(JsonFormatter().format(r)) for r in caplog.records)
        if line.get("command_id") == command_id
    ]
    by_msg = {str(line["msg"]): line for line in lines}
    accepted = by_msg["command accepted"]
    assert accepted["logger"] == "halswarm.supervisor.dispatcher"
    running = by_msg["running command"]
    assert running["logger"] == "halswarm.agent.executor"
    outcome = by_msg["command succeeded"]
    for line in (accepted, running, outcome):
        assert line["correlation_id"] == CID, line
    # And every line the agent logged while running it, fields or not, carries it too.
    agent_lines = [
        r for r in caplog.records if r.name.startswith("halswarm.agent") and getattr(r, "correlation_id", None) == CID
    ]
    assert agent_lines
