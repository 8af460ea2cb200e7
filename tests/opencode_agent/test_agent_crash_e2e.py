"""A SIGKILLed hal-agent leaves its opencode behind; the next start replaces it and
picks up the same sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil
import pytest
import trio

from halswarm.convert import converter
from halswarm.models import Node, Session
from halswarm.testing import (
    TEST_TOKEN,
    api_client,
    free_port,
    open_supervisor,
    start_daemon,
    supervisor_config,
    wait_until,
    write_json,
)
from tests.opencode.realserver import make_project, opencode_binary, opencode_env
from tests.opencode.stub_llm import open_stub_llm

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

pytestmark = pytest.mark.slow


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def session_of(api: httpx.AsyncClient, session_id: str) -> Session | None:
    response = await api.get(f"/api/v1/sessions/{session_id}")
    return converter.structure(response.json()["session"], Session) if response.status_code == 200 else None


async def test_restarted_agent_replaces_the_orphaned_opencode_and_keeps_its_sessions(tmp_path: Path) -> None:
    binary = opencode_binary()
    with trio.fail_after(150):
        async with open_stub_llm() as stub:
            project = make_project(tmp_path / "projects", "app", stub.base_url)
            env = opencode_env(tmp_path / "opencode-home")
            passed = {k: v for k, v in env.items() if k in ("XDG_CONFIG_HOME", "HOME") or k.startswith("OPENCODE_")}
            sup_config = supervisor_config(tmp_path / "supervisor.db", heartbeat_interval_sec=1.0)
            async with open_supervisor(sup_config) as sup, api_client(sup) as api:
                data_dir = tmp_path / "agent"
                config = write_json(
                    tmp_path / "agent.json",
                    {
                        "supervisor_url": f"ws://127.0.0.1:{sup.ws_port}",
                        "auth_token": TEST_TOKEN,
                        "node_id": "crashy",
                        "data_dir": str(data_dir),
                        "opencode_port": free_port(),
                        "projects": [{"name": "app", "directory": str(project)}],
                        "opencode": {"binary": str(binary), "env": passed},
                    },
                )
                args = ["--config", str(config), "--log-format", "text"]
                agent = await start_daemon("agent", args, tmp_path / "agent-1.log")

                async def healthy() -> bool:
                    response = await api.get("/api/v1/nodes/crashy")
                    if response.status_code != 200:
                        return False
                    node = converter.structure(response.json()["node"], Node)
                    return node.status == "online" and node.health.get("opencode") == "ok"

                await wait_until(healthy, within=60, what="agent online with opencode ready")
                response = await api.post(
                    "/api/v1/commands",
                    params={"wait": "30"},
                    json={"type": "start_session", "target": "app", "args": {"prompt": "hello"}},
                )
                assert response.json()["command"]["status"] == "succeeded", response.text
                session_id = response.json()["command"]["result"]["session_id"]

                async def idle() -> bool:
                    session = await session_of(api, session_id)
                    return session is not None and session.status == "idle" and session.tokens.input == 100

                await wait_until(idle, within=30, what="first turn done")
                orphan = int((data_dir / "opencode" / "serve.pid").read_text().split()[0])

                agent.kill()
                await agent.process.wait()
                assert not gone(orphan), "opencode runs in its own session and outlives the agent"

                agent = await start_daemon("agent", args, tmp_path / "agent-2.log")
                try:
                    await wait_until(lambda: gone(orphan), within=20, what="the orphaned opencode stopped")
                    await wait_until(
                        lambda: "opencode ready" in agent.log_text(), within=60, what="a new opencode ready"
                    )
                    assert "stopped an opencode serve left over by a previous agent" in agent.log_text()
                    await wait_until(healthy, within=30, what="agent online again")
                    session = await session_of(api, session_id)
                    assert session is not None
                    assert (session.status, session.tokens.input) == ("idle", 100)
                    response = await api.post(
                        "/api/v1/commands",
                        params={"wait": "30"},
                        json={"type": "prompt_session", "target": session_id, "args": {"prompt": "again"}},
                    )
                    assert response.json()["command"]["status"] == "succeeded", response.text

                    async def second_turn() -> bool:
                        session = await session_of(api, session_id)
                        return session is not None and session.status == "idle" and session.tokens.input == 200

                    await wait_until(second_turn, within=30, what="a turn on the new opencode")
                finally:
                    with trio.move_on_after(20, shield=True):
                        code = await agent.stop()
                assert code == 0, agent.log_text()[-3000:]
                assert not (data_dir / "opencode" / "serve.pid").exists()
