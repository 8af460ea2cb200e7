"""The agent outlives opencode: killed, unreachable, or guarded by another password."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from halswarm.config.agent import OpencodeConfig
from halswarm.testing import wait_until
from halswarm.testing.processes import free_port
from tests.opencode.realserver import make_project, opencode_env, run_opencode
from tests.opencode_agent.fleet import Fleet, open_fleet

pytestmark = pytest.mark.slow


async def node_health(fleet: Fleet) -> dict[str, str]:
    return (await fleet.node()).health


async def test_sigkilled_opencode_is_restarted_and_sessions_resynced(tmp_path: Path) -> None:
    with trio.fail_after(150):
        async with open_fleet(tmp_path) as fleet:
            session_id, _ = await fleet.turn_done("hello")
            runner = fleet.backend.runner
            pid = runner.pid
            assert pid is not None
            assert (await fleet.node()).facts["opencode_version"] == runner.version

            os.kill(pid, signal.SIGKILL)

            async def degraded() -> bool:
                node = await fleet.node()
                return node.status == "degraded" and "exited" in node.health["opencode"]

            await wait_until(degraded, within=15, what="node degraded while opencode restarts")
            await wait_until(
                lambda: runner.ready and runner.pid not in (None, pid), within=45, what="opencode restarted"
            )

            async def online() -> bool:
                return (await fleet.node()).status == "online"

            await wait_until(online, within=30, what="node online again")
            assert runner.restarts == 1
            # opencode keeps its sessions in its database: the resync finds the same one, alive.
            session = await fleet.session(session_id)
            assert session.status == "idle"
            assert session.tokens.input == 100
            command = await fleet.command("prompt_session", session_id, prompt="still there?")
            assert command.status == "succeeded", command
            session = await fleet.wait_session(
                session_id, "second turn", lambda s: s.status == "idle" and s.tokens.input == 200
            )


async def test_wrong_password_is_reported_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(120):
        # A server someone else runs, with its own password; the agent attaches with a wrong one.
        project = make_project(tmp_path / "srv", "shared", "http://127.0.0.1:9/v1")
        env = opencode_env(tmp_path / "srv-home")
        async with run_opencode(project, env, password="the-right-password") as server:
            port = int(server.url.rsplit(":", 1)[1])
            attach = OpencodeConfig(mode="attach", password="a-wrong-password", restart_backoff_max_sec=0.5)
            async with open_fleet(tmp_path / "fleet", opencode=attach, port=port, ready=False) as fleet:

                async def refused() -> bool:
                    health = await node_health(fleet)
                    return "authentication failed" in health.get("opencode", "")

                await wait_until(refused, within=20, what="authentication failure in the node's health")
                node = await fleet.halctl("nodes", "get", "oc-node")
                assert node.exit_code == 0, node.stderr
                assert "authentication failed" in node.stdout
                assert "a-wrong-password" not in node.stdout
                assert "opencode_mode" in node.stdout
                assert (await fleet.node()).status == "degraded"
                # Still trying, with backoff, without crashing.
                probes = fleet.backend.runner.attempts
                await wait_until(lambda: fleet.backend.runner.attempts >= probes + 2, within=20, what="more attempts")
                [logged, *_] = [r for r in caplog.records if r.getMessage() == "cannot use opencode"]
                assert "authentication failed" in str(logged.__dict__["ctx"]["problem"])
                assert "a-wrong-password" not in caplog.text
                failed = await fleet.command("start_session", fleet.projects[0].name, prompt="hello")
                assert failed.status == "failed"
                assert failed.error is not None
                assert "opencode is not available" in failed.error


async def test_unreachable_opencode_is_reported_then_attached_when_it_comes_up(tmp_path: Path) -> None:
    with trio.fail_after(120):
        port = free_port()
        attach = OpencodeConfig(mode="attach", restart_backoff_max_sec=0.5)
        async with open_fleet(tmp_path / "fleet", opencode=attach, port=port, ready=False) as fleet:

            async def unreachable() -> bool:
                return "cannot reach opencode" in (await node_health(fleet)).get("opencode", "")

            await wait_until(unreachable, within=20, what="unreachable opencode in the node's health")
            # The operator starts opencode on the configured port: the agent attaches by itself.
            project = fleet.projects[0]
            env = {**opencode_env(tmp_path / "srv-home"), **fleet.config.opencode.env}
            async with run_opencode(Path(project.directory), env, port=port) as server:
                await wait_until(lambda: fleet.backend.runner.ready, within=30, what="attached")
                assert fleet.backend.runner.version == server.version
                await fleet.turn_done("hello")


async def test_missing_binary_is_reported_without_crashing_the_agent(tmp_path: Path) -> None:
    with trio.fail_after(60):
        spawn = OpencodeConfig(binary=str(tmp_path / "no-such-opencode"))
        async with open_fleet(tmp_path, opencode=spawn, ready=False) as fleet:

            async def reported() -> bool:
                return "No such file or directory" in (await node_health(fleet)).get("opencode", "")

            await wait_until(reported, within=20, what="the missing binary in the node's health")
            assert "no-such-opencode" in (await node_health(fleet))["opencode"]
            assert (await fleet.node()).status == "degraded"
