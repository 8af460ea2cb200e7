"""What a supervisor restart keeps: sessions and nodes rebuilt from the store, shown
unreachable/offline until their agent reconnects; commands it was waiting on are failed
with an honest reason instead of staying 'sent' forever."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from halswarm.agent.connector import open_ws
from halswarm.models import Session
from halswarm.proto import CommandMsg, Hello, SessionSnapshot, Welcome, decode, encode
from halswarm.testing import api_client, open_supervisor, supervisor_config, wait_until

if TYPE_CHECKING:
    from pathlib import Path


async def _read_until_closed(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def test_restart_rebuilds_state_and_fails_orphaned_commands(tmp_path: Path) -> None:
    config = supervisor_config(tmp_path / "s.db")
    session = Session(id="ses-kept", node_id="node-k", project="proj-k", status="busy", title="kept")
    hello = encode(
        Hello(node_id="node-k", instance_key="kk", hostname="hk", version="t", sessions=[SessionSnapshot(7, session)])
    )
    with trio.fail_after(30):
        async with open_supervisor(config) as first:
            url = f"ws://127.0.0.1:{first.ws_port}/ws"
            headers = [(b"Authorization", f"Bearer {config.server.auth_token}".encode())]
            async with open_ws(url, headers, connect_timeout=5, close_timeout=2, max_message_size=1 << 20) as ws:
                await ws.send_message(hello)
                assert isinstance(decode(await ws.get_message()), Welcome)
                await wait_until(lambda: first.tracker.get("ses-kept") is not None, what="session tracked")
                async with api_client(first) as client:
                    response = await client.post(
                        "/api/v1/commands", params={"wait": 0}, json={"type": "abort_session", "target": "ses-kept"}
                    )
                    assert response.status_code == 202
                    command_id = response.json()["command"]["id"]
                # The "agent" receives the command and never answers; the supervisor stops meanwhile.
                while not isinstance(decode(await ws.get_message()), CommandMsg):
                    pass
                first.shutdown.set()
                with pytest.raises(ConnectionClosed):
                    await _read_until_closed(ws)

        async with open_supervisor(config) as second, api_client(second) as client:
            command = (await client.get(f"/api/v1/commands/{command_id}")).json()["command"]
            assert command["status"] == "failed"
            assert "supervisor restarted before the command finished" in command["error"]
            kept = (await client.get("/api/v1/sessions/ses-kept")).json()["session"]
            assert kept["title"] == "kept"
            assert kept["status"] == "unreachable"  # its node has not reconnected yet
            node = (await client.get("/api/v1/nodes/node-k")).json()["node"]
            assert node["status"] == "offline"
            assert node["hostname"] == "hk"
