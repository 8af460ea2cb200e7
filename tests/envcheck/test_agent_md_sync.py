"""``POST /api/v1/agent-md/sync`` and ``halctl agent-md sync`` across several nodes: every
node's outcome is reported, whether its command ran, failed (offline), was not sent (an
agent without env checks) or gave no answer; all of them within one shared ``wait``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from halswarm.agent.connector import open_ws
from halswarm.http.api_env import wait_for_all
from halswarm.models import Command, Project
from halswarm.proto import ENV_CAPABILITY, Hello, Welcome, decode, encode
from halswarm.testing import TEST_TOKEN, open_sim_agent, open_supervisor, wait_until
from halswarm.testing.halctl import run_halctl
from tests.envcheck.conftest import env_supervisor_config, workspace_agent_config
from tests.envcheck.test_env_wiring import MANIFEST

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from trio_websocket import WebSocketConnection

    from halswarm.supervisor.app import SupervisorHandle
    from tests.envcheck.conftest import Workspace


@asynccontextmanager
async def _raw_node(
    sup: SupervisorHandle, node_id: str, *, env_checks: bool = True
) -> AsyncGenerator[WebSocketConnection, None]:
    """A node played by the test, hosting ``app``: it says hello and never answers a command."""
    headers = [(b"Authorization", f"Bearer {TEST_TOKEN}".encode())]
    async with open_ws(
        f"ws://127.0.0.1:{sup.ws_port}/ws", headers, connect_timeout=5, close_timeout=2, max_message_size=1 << 20
    ) as ws:
        hello = Hello(
            node_id=node_id,
            instance_key=f"key-{node_id}",
            hostname="h",
            version="t",
            projects=[Project("app", f"/srv/{node_id}")],
            capabilities=[ENV_CAPABILITY] if env_checks else [],
        )
        await ws.send_message(encode(hello))
        assert isinstance(decode(await ws.get_message()), Welcome)
        yield ws


async def test_sync_reports_every_node_when_some_cannot_run_it(tmp_path: Path, workspace: Workspace) -> None:
    """Guards: one offline node made the API answer only its 409, hiding the commands already
    sent to the other nodes (which rewrote AGENT.md unseen); nodes were waited for one after
    the other, each for the full --wait, so halctl gave up with a transport error."""
    config = env_supervisor_config(tmp_path, MANIFEST)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with trio.fail_after(60):
        async with open_supervisor(config) as sup:
            agent = workspace_agent_config(sup.ws_port, tmp_path / "agent", workspace)
            async with _raw_node(sup, "n2"):  # known, then offline
                await wait_until(lambda: sup.registry.online_count() == 1, what="n2 online")
            await wait_until(lambda: sup.registry.online_count() == 0, what="n2 offline")
            async with (
                open_sim_agent(agent, sessions=1, rate=0),
                _raw_node(sup, "n3", env_checks=False),
                _raw_node(sup, "n4"),  # gets its command and never answers
            ):
                await wait_until(lambda: sup.registry.online_count() == 3, what="n1, n3, n4 online")
                env = {"HOME": str(cwd), "HALCTL_URL": f"http://127.0.0.1:{sup.http_port}", "HALCTL_TOKEN": TEST_TOKEN}
                synced = await run_halctl(["agent-md", "sync", "--project", "app", "--wait", "5"], env=env, cwd=cwd)

                assert synced.exit_code == 1, synced
                agent_md = workspace.directory / "AGENT.md"
                assert synced.stdout.strip() == f"n1/app: rewrote {agent_md}", synced
                assert agent_md.read_text() == "# app\nScope: the app\n"
                problems = synced.stderr.splitlines()
                assert "env_provision on n2: failed — node 'n2' is offline" in problems, synced
                assert any(
                    line.startswith("n3/app: not sent (not_supported) — node 'n3' runs an agent without")
                    for line in problems
                ), synced
                pending = [line for line in problems if line.startswith("env_provision on n4: no outcome within 5s")]
                assert len(pending) == 1, synced
                assert "check with: halctl commands get " in pending[0]
                assert len(problems) == 3, synced

                as_json = await run_halctl(
                    ["agent-md", "sync", "--project", "app", "--dry-run", "--wait", "0", "-o", "json"],
                    env=env,
                    cwd=cwd,
                )
                assert as_json.exit_code == 1, as_json
                body = as_json.json()
                assert isinstance(body["commands"], list)
                assert sorted(str(c["target"]) for c in body["commands"] if isinstance(c, dict)) == ["n1", "n2", "n4"]
                assert body["refused"] == [
                    {
                        "node_id": "n3",
                        "project": "app",
                        "code": "not_supported",
                        "message": "node 'n3' runs an agent without environment checks (env_provision); upgrade it",
                    }
                ]


def _command(command_id: str) -> Command:
    return Command(id=command_id, type="env_provision", target=command_id)


async def test_commands_are_waited_for_against_one_shared_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """Guards: each node's command got the full wait, so N silent nodes took N times the wait."""
    given: list[tuple[str, float]] = []

    async def answers(command_id: str, max_wait: float) -> Command | None:
        given.append((command_id, max_wait))
        if command_id == "fast":
            await trio.sleep(10)
            return attrs.evolve(_command(command_id), status="succeeded")
        await trio.sleep(max_wait)  # never answers: waited for as long as allowed
        return None

    start = trio.current_time()
    commands = [_command("fast"), _command("silent-1"), _command("silent-2")]
    finals = await wait_for_all(answers, commands, start + 120)

    assert trio.current_time() - start == 120
    assert given == [("fast", 120), ("silent-1", 110), ("silent-2", 0)]
    assert [c.status for c in finals] == ["succeeded", "pending", "pending"]
