"""The agent's command executor: each idempotency key runs at most once (also across an
agent restart, from the results remembered in the outbox, whatever the previous process's
clock said), failures are remembered too, and deadlines and crashes become clear failed
results."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import orjson
import trio

from halswarm.agent.backend import AlwaysHealthy, CommandFailedError, EventSink
from halswarm.agent.executor import Executor
from halswarm.agent.outbox import Outbox, open_outbox
from halswarm.convert import converter
from halswarm.proto.messages import CommandMsg, CommandResult
from halswarm.testing import wait_until
from tests.sqlite_faults import disk_full

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    import pytest

    from halswarm.jsontypes import JSONObject


@attrs.define
class CountingBackend(AlwaysHealthy):
    """Counts executions; each returns its own number, so a re-run would be visible."""

    calls: list[str] = attrs.field(factory=list)
    release: trio.Event | None = None
    fail_with: Exception | None = None
    hang: bool = False

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def execute(self, command: CommandMsg) -> JSONObject:
        self.calls.append(command.command_id)
        if self.release is not None:
            await self.release.wait()
        if self.hang:
            await trio.sleep_forever()
        if self.fail_with is not None:
            raise self.fail_with
        return {"run": len(self.calls), "target": command.target}


@attrs.define
class Replies:
    results: list[CommandResult] = attrs.field(factory=list)

    async def __call__(self, result: CommandResult) -> None:
        self.results.append(result)


def cmd(command_id: str, key: str, *, deadline: float = 10.0) -> CommandMsg:
    return CommandMsg(
        command_id=command_id, idempotency_key=key, command_type="abort_session", target="ses-1", deadline=deadline
    )


@asynccontextmanager
async def running_executor(backend: CountingBackend, outbox: Outbox) -> AsyncGenerator[Executor, None]:
    async with trio.open_nursery() as nursery:
        executor = Executor(backend, outbox)
        await nursery.start(executor.run)
        try:
            yield executor
        finally:
            nursery.cancel_scope.cancel()


async def test_a_repeated_key_runs_once_and_both_replies_carry_the_result(tmp_path: Path) -> None:
    backend = CountingBackend()
    replies = Replies()
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox, running_executor(backend, outbox) as executor:
            executor.submit(cmd("cmd-1", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 1, what="first reply")
            # The supervisor resends after a reconnect (new delivery, same key).
            executor.submit(cmd("cmd-2", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 2, what="second reply")
            # A different key is a different command.
            executor.submit(cmd("cmd-3", "key-b"), replies)
            await wait_until(lambda: len(replies.results) == 3, what="third reply")
    assert backend.calls == ["cmd-1", "cmd-3"]
    assert replies.results == [
        CommandResult("cmd-1", ok=True, result={"run": 1, "target": "ses-1"}),
        CommandResult("cmd-2", ok=True, result={"run": 1, "target": "ses-1"}),
        CommandResult("cmd-3", ok=True, result={"run": 2, "target": "ses-1"}),
    ]


async def test_a_resend_while_running_is_answered_once(tmp_path: Path) -> None:
    backend = CountingBackend(release=trio.Event())
    replies = Replies()
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox, running_executor(backend, outbox) as executor:
            executor.submit(cmd("cmd-1", "key-a"), replies)
            await wait_until(lambda: backend.calls == ["cmd-1"], what="command running")
            executor.submit(cmd("cmd-1", "key-a"), replies)
            assert executor.running == 1
            assert backend.release is not None
            backend.release.set()
            await wait_until(lambda: executor.running == 0, what="command finished")
    assert backend.calls == ["cmd-1"]
    assert replies.results == [CommandResult("cmd-1", ok=True, result={"run": 1, "target": "ses-1"})]


async def test_results_are_remembered_across_an_agent_restart(tmp_path: Path) -> None:
    backend = CountingBackend()
    replies = Replies()
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox, running_executor(backend, outbox) as executor:
            executor.submit(cmd("cmd-1", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 1, what="reply")
        restarted = CountingBackend()
        async with open_outbox(tmp_path) as outbox, running_executor(restarted, outbox) as executor:
            executor.submit(cmd("cmd-1", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 2, what="reply after restart")
    assert restarted.calls == []
    assert replies.results[1] == replies.results[0]


async def test_a_restart_with_a_clock_behind_the_previous_run_still_runs_a_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards: remembered results were pruned by trio-clock time, so after a restart a resent command ran twice."""
    kept = 20
    monkeypatch.setattr("halswarm.agent.outbox._RESULTS_KEPT", kept)  # fill the memory quickly
    backend = CountingBackend()
    replies = Replies()
    with trio.fail_after(10):
        # The previous agent process filled the result memory. Each process's trio clock has
        # its own origin; that one's ran far ahead of this one's.
        async with open_outbox(tmp_path) as outbox:
            ahead = trio.current_time() + 100_000
            for i in range(kept):
                result = CommandResult(f"old-{i}", ok=True, result={"run": i})
                await outbox.put_result(f"old-key-{i}", orjson.dumps(converter.unstructure(result)), ahead + i)
        async with open_outbox(tmp_path) as outbox, running_executor(backend, outbox) as executor:
            executor.submit(cmd("cmd-1", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 1, what="first reply")
            # The supervisor resends after a reconnect (new delivery, same key).
            executor.submit(cmd("cmd-2", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 2, what="second reply")
    assert backend.calls == ["cmd-1"]
    assert replies.results == [
        CommandResult("cmd-1", ok=True, result={"run": 1, "target": "ses-1"}),
        CommandResult("cmd-2", ok=True, result={"run": 1, "target": "ses-1"}),
    ]


async def test_failures_are_remembered_too(tmp_path: Path) -> None:
    backend = CountingBackend(fail_with=CommandFailedError("session ses-1 has ended (completed)"))
    replies = Replies()
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox, running_executor(backend, outbox) as executor:
            executor.submit(cmd("cmd-1", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 1, what="reply")
            executor.submit(cmd("cmd-2", "key-a"), replies)
            await wait_until(lambda: len(replies.results) == 2, what="second reply")
    assert backend.calls == ["cmd-1"]
    assert [(r.command_id, r.ok, r.error) for r in replies.results] == [
        ("cmd-1", False, "session ses-1 has ended (completed)"),
        ("cmd-2", False, "session ses-1 has ended (completed)"),
    ]


async def test_a_crash_and_a_missed_deadline_become_failed_results(tmp_path: Path) -> None:
    replies = Replies()
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox:
            async with running_executor(CountingBackend(fail_with=RuntimeError("boom")), outbox) as executor:
                executor.submit(cmd("cmd-1", "key-a"), replies)
                await wait_until(lambda: len(replies.results) == 1, what="crash reply")
            async with running_executor(CountingBackend(hang=True), outbox) as executor:
                executor.submit(cmd("cmd-2", "key-b", deadline=0.05), replies)
                await wait_until(lambda: len(replies.results) == 2, what="deadline reply")
    assert [(r.ok, r.error) for r in replies.results] == [
        (False, "internal error: RuntimeError: boom"),
        (False, "did not finish within 0.05s"),
    ]


async def test_a_command_without_an_idempotency_key_is_keyed_by_its_id(tmp_path: Path) -> None:
    backend = CountingBackend()
    replies = Replies()
    with trio.fail_after(10):
        async with open_outbox(tmp_path) as outbox, running_executor(backend, outbox) as executor:
            executor.submit(cmd("cmd-1", ""), replies)
            await wait_until(lambda: len(replies.results) == 1, what="reply")
            executor.submit(cmd("cmd-1", ""), replies)
            executor.submit(cmd("cmd-2", ""), replies)
            await wait_until(lambda: len(replies.results) == 3, what="more replies")
    assert backend.calls == ["cmd-1", "cmd-2"]
    assert sorted((r.command_id, r.result == replies.results[0].result) for r in replies.results) == [
        ("cmd-1", True),
        ("cmd-1", True),
        ("cmd-2", False),
    ]


async def test_a_result_the_outbox_cannot_store_is_still_answered_and_never_rerun(tmp_path: Path) -> None:
    """Guards: an OutboxError while persisting a result lost the reply (and crashed the executor)."""
    backend = CountingBackend()
    replies = Replies()
    # The result echoes the target: too big for the pages left, so persisting it needs new ones.
    target = "ses-" + "x" * 20_000

    def big(command_id: str) -> CommandMsg:
        return CommandMsg(command_id, "key-a", "abort_session", target, deadline=10.0)

    with trio.fail_after(10):
        async with (
            open_outbox(tmp_path) as outbox,
            running_executor(backend, outbox) as executor,
            disk_full(outbox._conn, outbox._gate),
        ):
            executor.submit(big("cmd-1"), replies)
            await wait_until(lambda: len(replies.results) == 1, what="first reply")
            # The supervisor resends after a reconnect (new delivery, same key).
            executor.submit(big("cmd-2"), replies)
            await wait_until(lambda: len(replies.results) == 2, what="second reply")
            assert await outbox.get_result("key-a") is None  # the write really failed
    assert backend.calls == ["cmd-1"]
    assert replies.results == [
        CommandResult("cmd-1", ok=True, result={"run": 1, "target": target}),
        CommandResult("cmd-2", ok=True, result={"run": 1, "target": target}),
    ]
