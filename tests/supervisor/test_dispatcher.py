"""The dispatcher when the store fails, over real loopback sockets and a real, full
SQLite database (see :mod:`tests.sqlite_faults`): a command it cannot record is refused
with 503 and never dispatched; an outcome it cannot record is still answered."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from halswarm.agent.connector import open_ws
from halswarm.models import Project
from halswarm.proto import ENV_CAPABILITY, CommandMsg, CommandResult, Hello, Welcome, decode, encode
from halswarm.testing import TEST_TOKEN, api_client, open_supervisor, supervisor_config, wait_until
from tests.sqlite_faults import disk_full

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from trio_websocket import WebSocketConnection

    from halswarm.supervisor.app import SupervisorHandle

NODE: Final = "node-d"
PROJECT: Final = "proj-d"
# Bigger than the free space left in any page: storing it needs new pages.
BIG: Final = "x" * 20_000


@asynccontextmanager
async def raw_agent(handle: SupervisorHandle) -> AsyncGenerator[WebSocketConnection, None]:
    """An agent played by the test: hello (hosting PROJECT), welcome, then whatever the test sends."""
    headers = [(b"Authorization", f"Bearer {TEST_TOKEN}".encode())]
    async with open_ws(
        f"ws://127.0.0.1:{handle.ws_port}/ws", headers, connect_timeout=5, close_timeout=2, max_message_size=1 << 20
    ) as ws:
        hello = Hello(
            node_id=NODE,
            instance_key="key-d",
            hostname="h",
            version="t",
            projects=[Project(PROJECT, "/srv/d")],
            capabilities=[ENV_CAPABILITY],  # it is sent env_check below
        )
        await ws.send_message(encode(hello))
        assert isinstance(decode(await ws.get_message()), Welcome)
        yield ws


async def next_command(ws: WebSocketConnection) -> CommandMsg:
    """The next command frame the supervisor sends (heartbeats skipped)."""
    while True:
        message = decode(await ws.get_message())
        if isinstance(message, CommandMsg):
            return message


async def test_a_command_the_store_cannot_record_is_refused_with_503(tmp_path: Path) -> None:
    """Guards: a StoreError while inserting a submitted command escaped as a 500 instead of a clear 503."""
    with trio.fail_after(30):
        async with (
            open_supervisor(supervisor_config(tmp_path / "s.db")) as sup,
            raw_agent(sup) as agent,
            api_client(sup) as client,
        ):
            big = {"type": "start_session", "target": PROJECT, "args": {"prompt": BIG}}
            async with disk_full(sup.store._writer, sup.store._write_gate):
                refused = await client.post("/api/v1/commands", params={"wait": 0}, json=big)
            assert refused.status_code == 503
            assert refused.json() == {
                "error": {"code": "storage_unavailable", "message": "the supervisor cannot store commands right now"}
            }
            # With room again the same request is accepted, and it is the first command the
            # agent ever sees: the refused one was never dispatched.
            accepted = await client.post("/api/v1/commands", params={"wait": 0}, json=big)
            assert accepted.status_code == 202, accepted.text
            command = await next_command(agent)
            assert command.command_id == accepted.json()["command"]["id"]


async def test_an_outcome_the_store_cannot_record_is_still_answered(tmp_path: Path) -> None:
    """Guards: a StoreError while recording a command's outcome crashed the supervisor and lost the outcome."""
    with trio.fail_after(30):
        async with (
            open_supervisor(supervisor_config(tmp_path / "s.db")) as sup,
            raw_agent(sup) as agent,
            api_client(sup) as client,
        ):
            submitted = await client.post(
                "/api/v1/commands", params={"wait": 0}, json={"type": "env_check", "target": NODE}
            )
            assert submitted.status_code == 202, submitted.text
            command_id = submitted.json()["command"]["id"]
            command = await next_command(agent)
            assert command.command_id == command_id
            async with disk_full(sup.store._writer, sup.store._write_gate):
                # The agent answers with a report too big for the pages left.
                await agent.send_message(encode(CommandResult(command_id, ok=True, result={"report": BIG})))
                await wait_until(lambda: not sup.store.healthy, what="the outcome's write failed")
                answered = await client.get(f"/api/v1/commands/{command_id}")
                assert answered.status_code == 200, answered.text
                outcome = answered.json()["command"]
                assert outcome["status"] == "succeeded"
                assert outcome["result"] == {"report": BIG}
                # The outcome really was not stored; the supervisor answers it from memory.
                stored = await sup.store.get_command(command_id)
                assert stored is not None
                assert stored.status != "succeeded"
                again = await client.get(f"/api/v1/commands/{command_id}")
                assert again.json()["command"] == outcome
            # The supervisor is still up and serving.
            assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_an_answered_command_is_not_reported_as_sent_while_its_outcome_is_being_stored(tmp_path: Path) -> None:
    """Guards: while the outcome's write waited for a busy store, GET answered the stale "sent" row."""
    with trio.fail_after(30):
        async with (
            open_supervisor(supervisor_config(tmp_path / "s.db")) as sup,
            raw_agent(sup) as agent,
            api_client(sup) as client,
        ):
            submitted = await client.post(
                "/api/v1/commands", params={"wait": 0}, json={"type": "env_check", "target": NODE}
            )
            command_id = submitted.json()["command"]["id"]
            command = await next_command(agent)

            async def sent_recorded() -> bool:
                stored = await sup.store.get_command(command_id)
                return stored is not None and stored.status == "sent"

            await wait_until(sent_recorded, what="'sent' recorded")
            # The store's writer is busy (we hold it) when the answer comes in.
            gate = sup.store._write_gate
            await gate.acquire()
            try:
                await agent.send_message(encode(CommandResult(command.command_id, ok=True, result={"ok": 1})))
                answered = await client.get(f"/api/v1/commands/{command_id}", params={"wait": 5})
            finally:
                gate.release()
            assert answered.status_code == 200, answered.text
            assert answered.json()["command"]["status"] == "succeeded"
