"""The runner without a real opencode: what the server's environment holds, port clashes."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import trio

from halswarm.agent.opencode.runner import OpencodeRunner
from halswarm.config.agent import AgentConfig, OpencodeConfig
from halswarm.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

TOKEN = "supervisor-token-that-tools-must-not-see"


def config(port: int = 4096, **opencode: object) -> AgentConfig:
    return AgentConfig(
        supervisor_url="ws://127.0.0.1:9",
        auth_token=TOKEN,
        opencode_port=port,
        opencode=OpencodeConfig(**opencode),  # type: ignore[arg-type]
    )


def test_the_server_environment_hides_agent_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALSWARM_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("SOME_OTHER_VAR", TOKEN)  # the same secret under another name
    monkeypatch.setenv("HALCTL_TOKEN", "operator-token-123456")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    runner = OpencodeRunner(config(env={"ANTHROPIC_API_KEY": "sk-provider-key-for-tools"}), tmp_path)
    env = runner._environment()
    assert TOKEN not in env.values()
    assert "HALSWARM_AUTH_TOKEN" not in env
    assert "HALCTL_TOKEN" not in env
    assert env["PATH"] == "/usr/bin:/bin"
    # What the server itself needs is there: its password, the configured provider key,
    # and state directories of its own.
    assert env["OPENCODE_SERVER_PASSWORD"] == runner.password
    assert env["ANTHROPIC_API_KEY"] == "sk-provider-key-for-tools"
    assert env["XDG_DATA_HOME"] == str(tmp_path / "opencode" / "data")


async def test_a_port_held_by_another_program_is_reported_not_probed(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        runner = OpencodeRunner(config(port, restart_backoff_initial_sec=0.1, restart_backoff_max_sec=0.2), tmp_path)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                await wait_until(lambda: runner.attempts >= 2, within=5, what="two attempts")
                nursery.cancel_scope.cancel()
        assert f"port {port} on 127.0.0.1 is in use by another program" in runner.health()
        assert runner.pid is None  # nothing was spawned


async def test_an_attached_server_environment_is_unknown_and_never_restarted(tmp_path: Path) -> None:
    runner = OpencodeRunner(config(mode="attach"), tmp_path)
    known = runner.server_environment()
    assert known is not None
    assert known.env is None
    assert known.unknown_reason == "attach mode: the server's own environment is not checked"
    with trio.fail_after(5):
        assert await runner.restart("to apply a changed environment") == (
            "opencode runs in attach mode: the agent does not start or stop it"
        )
    # Spawn mode before any server process runs: nothing to compare (the next one gets
    # the current environment), and nothing to restart.
    spawn = OpencodeRunner(config(), tmp_path)
    assert spawn.server_environment() is None
    with trio.fail_after(5):
        assert await spawn.restart("x") == "opencode is not running now (starting)"
