"""Runs commands in their own nursery, never in the link's reader, each at most once.

Results are remembered by idempotency key (in the outbox database), so a command the
supervisor resends after a reconnect is answered from memory instead of run again.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import orjson
import trio

from halswarm.agent.backend import CommandFailedError, SessionBackend
from halswarm.agent.outbox import OutboxError
from halswarm.commands import ENV_COMMANDS
from halswarm.convert import ConversionError, converter, structure_strict
from halswarm.obs.logging import correlation_scope, ctx
from halswarm.proto.messages import CommandMsg, CommandResult

if TYPE_CHECKING:
    from halswarm.agent.envchecker import EnvChecker
    from halswarm.agent.outbox import Outbox

__all__ = ["Executor", "Reply"]

log = logging.getLogger(__name__)

Reply = Callable[[CommandResult], Awaitable[None]]
"""Sends a result over whatever connection is current (never raises)."""

_MAX_RUNNING: Final = 64
_RECENT_IN_MEMORY: Final = 1000
_EVENTS_FIRST_WAIT: Final = 5.0


class Executor:
    """Start with ``await nursery.start(executor.run)``."""

    def __init__(self, backend: SessionBackend, outbox: Outbox, *, env: EnvChecker | None = None) -> None:
        self.backend = backend
        self.outbox = outbox
        #: Carries out the environment commands (issue #9); the backend does the rest.
        self.env = env
        self._running: dict[str, CommandMsg] = {}
        # Results also kept in memory: they survive an outbox write failure.
        self._recent: collections.OrderedDict[str, CommandResult] = collections.OrderedDict()
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
                reply,
                CommandResult(
                    command.command_id,
                    ok=False,
                    error="agent busy: too many commands running",
                    correlation_id=command.correlation_id,
                ),
            )
            return
        self._running[key] = command
        self._nursery.start_soon(self._execute, key, command, reply)

    async def _execute(self, key: str, command: CommandMsg, reply: Reply) -> None:
        # Every line logged about this command (here, in the backend, in tasks it
        # starts) carries the id the operator's request came with (issue 8).
        with correlation_scope(command.correlation_id or None):
            await self._execute_in_scope(key, command, reply)

    async def _execute_in_scope(self, key: str, command: CommandMsg, reply: Reply) -> None:
        try:
            try:
                result = self._recent.get(key) or await self._remembered(key)
            except OutboxError as exc:
                # Running it could run it twice; refusing is the safe answer.
                log.error("cannot read remembered results: %s", exc, extra=ctx(command_id=command.command_id))
                result = CommandResult(
                    command.command_id,
                    ok=False,
                    error="agent cannot check whether this command already ran",
                    correlation_id=command.correlation_id,
                )
                await reply(result)
                return
            if result is None:
                result = await self._carry_out(command)
                self._remember(key, result)
                # Read-your-writes: the command's own events (a new session, say) are stored
                # before the operator hears "succeeded". Bounded: a reply never waits long.
                with trio.move_on_after(_EVENTS_FIRST_WAIT):
                    await self.outbox.wait_acked(self.outbox.last_seq)
                try:
                    await self.outbox.put_result(key, orjson.dumps(converter.unstructure(result)), trio.current_time())
                except OutboxError as exc:
                    log.error(
                        "could not persist a command result (kept in memory until restart): %s",
                        exc,
                        extra=ctx(command_id=command.command_id),
                    )
            await reply(
                CommandResult(
                    command.command_id, result.ok, result.result, result.error, correlation_id=command.correlation_id
                )
            )
        finally:
            self._running.pop(key, None)

    async def _remembered(self, key: str) -> CommandResult | None:
        stored = await self.outbox.get_result(key)
        if stored is None:
            return None
        try:
            return structure_strict(orjson.loads(stored), CommandResult)
        except ConversionError as exc:
            log.error("unreadable remembered result ignored: %s", exc, extra=ctx(idempotency_key=key))
            return None

    def _remember(self, key: str, result: CommandResult) -> None:
        self._recent[key] = result
        while len(self._recent) > _RECENT_IN_MEMORY:
            self._recent.popitem(last=False)

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
                if command.command_type in ENV_COMMANDS and self.env is not None:
                    value = await self.env.execute(command)
                else:
                    value = await self.backend.execute(command)
            except CommandFailedError as exc:
                return CommandResult(command.command_id, ok=False, error=str(exc))
            except Exception as exc:
                log.exception("command crashed", extra=ctx(command_id=command.command_id))
                return CommandResult(command.command_id, ok=False, error=f"internal error: {type(exc).__name__}: {exc}")
            return CommandResult(command.command_id, ok=True, result=value)
        assert scope.cancelled_caught
        return CommandResult(command.command_id, ok=False, error=f"did not finish within {command.deadline:g}s")
