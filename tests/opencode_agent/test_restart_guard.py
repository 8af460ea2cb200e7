"""Provisioning's restart of the spawned opencode never cuts off a turn a command is starting.

A prompt sent to opencode runs at once, before the event stream (or opencode's status
list) shows the session busy: while such a command is in flight, ``restart_server``
answers ``pending`` and stops nothing; a command arriving during a restart waits for the
restarted server instead of failing. The opencode client and runner are stand-ins here
(their calls are held open at will); the real server's restart is covered by
``test_env_live_e2e.py``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

import trio
import trio.testing

from halswarm.agent.backend import EventSink
from halswarm.agent.opencode.backend import OpencodeBackend
from halswarm.agent.outbox import open_outbox
from halswarm.models import Project
from halswarm.proto.messages import CommandMsg
from halswarm.testing import agent_config
from halswarm.timeutil import system_now

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.agent.opencode.runner import OpencodeRunner
    from halswarm.jsontypes import JSONObject

SESSION = "ses_A"


class _Client:
    """opencode's REST client: ``prompt_async`` is held until ``release`` is set."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.entered = trio.Event()
        self.release = trio.Event()

    async def prompt_async(self, session_id: str, directory: str, prompt: str, **_: object) -> None:
        self.log.append(f"prompt {session_id}")
        self.entered.set()
        await self.release.wait()


class _Runner:
    """A spawned, ready server whose restart finishes when ``release`` is set."""

    mode = "spawn"

    def __init__(self, client: _Client, log: list[str]) -> None:
        self.client = client
        self.log = log
        self.ready = True
        self.status = "ok"
        self.release = trio.Event()

    def health(self) -> str:
        return "ok" if self.ready else self.status

    async def restart(self, reason: str) -> str | None:
        self.log.append("restart")
        self.ready, self.status = False, f"restarting: {reason}"
        await self.release.wait()
        self.ready, self.status = True, "ok"
        self.log.append("restarted")
        return None


def _inject(prompt: str) -> CommandMsg:
    return CommandMsg("cmd-1", "key-1", "prompt_session", SESSION, {"prompt": prompt}, deadline=30.0)


async def _backend(tmp_path: Path, stack: contextlib.AsyncExitStack) -> tuple[OpencodeBackend, _Client, _Runner]:
    project = tmp_path / "alpha"
    project.mkdir()
    config = agent_config(1, tmp_path / "agent", node_id="n1", projects=[Project("alpha", str(project))])
    outbox = await stack.enter_async_context(open_outbox(tmp_path / "agent"))
    log: list[str] = []
    client = _Client(log)
    runner = _Runner(client, log)
    backend = OpencodeBackend(config, outbox=outbox, runner=cast("OpencodeRunner", runner))
    backend._sink = EventSink(outbox, now=system_now)
    backend.mapper.adopt({"id": SESSION, "directory": str(project)})
    assert backend._busy_now() == {}
    return backend, client, runner


async def test_a_prompt_in_flight_keeps_the_restart_pending(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with contextlib.AsyncExitStack() as stack:
            backend, client, runner = await _backend(tmp_path, stack)
            runner.release.set()  # a restart, if one were made, would complete
            results: list[JSONObject] = []

            async def inject() -> None:
                results.append(await backend.execute(_inject("carry on")))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(inject)
                await client.entered.wait()  # opencode got the prompt; the stream says nothing yet
                assert backend._busy_now() == {}
                outcome, detail = await backend.restart_server("to apply a changed environment (env:X)")
                assert outcome == "pending"
                assert f"a command is starting a turn (prompt_session {SESSION})" in detail
                assert "restart" not in client.log
                assert runner.ready
                client.release.set()
            assert results == [{"session_id": SESSION, "queued": False}]
            # Done: the session is busy now, which keeps the restart pending by itself.
            outcome, detail = await backend.restart_server("to apply a changed environment (env:X)")
            assert (outcome, "starting a turn" in detail) == ("pending", False)
            assert f"{SESSION} (" in detail
            assert client.log == [f"prompt {SESSION}"]


async def test_a_prompt_during_a_restart_waits_for_the_new_server(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with contextlib.AsyncExitStack() as stack:
            backend, client, runner = await _backend(tmp_path, stack)
            client.release.set()
            outcomes: list[tuple[str, str]] = []
            results: list[JSONObject] = []

            async def restart() -> None:
                outcomes.append(await backend.restart_server("to apply a changed environment (env:X)"))

            async def inject() -> None:
                results.append(await backend.execute(_inject("carry on")))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(restart)
                await trio.testing.wait_all_tasks_blocked()
                assert client.log == ["restart"]
                nursery.start_soon(inject)
                await trio.testing.wait_all_tasks_blocked()
                assert (client.log, results) == (["restart"], [])  # waits, neither sent nor refused
                runner.release.set()
            assert outcomes == [("restarted", "opencode serve restarted to apply a changed environment (env:X)")]
            assert client.log == ["restart", "restarted", f"prompt {SESSION}"]
            assert results == [{"session_id": SESSION, "queued": False}]
