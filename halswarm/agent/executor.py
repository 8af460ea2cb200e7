"""Runs commands in their own nursery, never in the link's reader, each at most once.

Results are remembered by idempotency key (in the outbox database), so a command the
supervisor resends after a reconnect is answered from memory instead of run again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import orjson
import trio

from halswarm.agent.backend import CommandFailedError, SessionBackend
from halswarm.convert import ConversionError, converter, structure_strict
from halswarm.obs.logging import ctx
from halswarm.proto.messages import CommandMsg, CommandResult

if TYPE_CHECKING:
    from halswarm.agent.outbox import Outbox

__all__ = ["Executor", "Reply"]

log = logging.getLogger(__name__)

Reply = Callable[[CommandResult], Awaitable[None]]
"""Sends a result over whatever connection is current (never raises)."""

_MAX_RUNNING: Final = 64


class Executor:
    """Start with ``await nursery.start(executor.run)``."""

    def __init__(self, backend: SessionBackend, outbox: Outbox) -> None:
        self.backend = backend
        self.outbox = outbox
        self._running: dict[str, CommandMsg] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> int:
        """Commands being carried out now."""
        return len(self._running)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery commands run in.

        Cancellation: running commands are cancelled; they have no result, so the
        supervisor times them out (it never guesses an outcome).
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def submit(self, command: CommandMsg, reply: Reply) -> None:
        """Accept a command from the link reader; returns at once."""
        assert self._nursery is not None, "Executor.run() is not running"
        key = command.idempotency_key or command.command_id
        if key in self._running:
            # A resend of a command still running: its result goes out when it finishes.
            return
        if len(self._running) >= _MAX_RUNNING:
            self._nursery.start_soon(
                reply, CommandResult(command.command_id, ok=False, error="agent busy: too many commands running")
            )
            return
        self._running[key] = command
        self._nursery.start_soon(self._execute, key, command, reply)

    async def _execute(self, key: str, command: CommandMsg, reply: Reply) -> None:
        try:
            remembered = await self.outbox.get_result(key)
            if remembered is not None:
                result = structure_strict(orjson.loads(remembered), CommandResult)
                await reply(CommandResult(command.command_id, result.ok, result.result, result.error))
                return
            result = await self._carry_out(command)
            await self.outbox.put_result(key, orjson.dumps(converter.unstructure(result)), trio.current_time())
            await reply(result)
        except ConversionError as exc:
            log.error("unreadable remembered result", extra=ctx(command_id=command.command_id, error=str(exc)))
        finally:
            self._running.pop(key, None)

    async def _carry_out(self, command: CommandMsg) -> CommandResult:
        log.info(
            "running command",
            extra=ctx(
                command_id=command.command_id,
                type=command.command_type,
                target=command.target,
                correlation_id=command.correlation_id,
            ),
        )
        with trio.move_on_after(command.deadline) as scope:
            try:
                value = await self.backend.execute(command)
            except CommandFailedError as exc:
                return CommandResult(command.command_id, ok=False, error=str(exc))
            except Exception as exc:
                log.exception("command crashed", extra=ctx(command_id=command.command_id))
                return CommandResult(command.command_id, ok=False, error=f"internal error: {type(exc).__name__}: {exc}")
            return CommandResult(command.command_id, ok=True, result=value)
        assert scope.cancelled_caught
        return CommandResult(command.command_id, ok=False, error=f"did not finish within {command.deadline:g}s")
