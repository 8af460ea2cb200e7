"""Command dispatcher: validate, resolve, persist, deliver, and record the outcome.

Every command is stored (with an audit row) before it is sent. Delivery survives a
dropped connection: if the agent reconnects before the deadline the command is sent
again with the same id and idempotency key, and the agent runs it at most once. An
offline target fails at once; a missing answer becomes ``timed_out`` at the deadline.
"""

from __future__ import annotations

import collections
import logging
import uuid
from typing import TYPE_CHECKING, Final

import attrs
import trio

from halswarm.commands import ENV_COMMANDS, SESSION_TARGETED, CommandRequest, parse_args
from halswarm.convert import ConversionError, converter
from halswarm.models import Command, CommandStatus
from halswarm.obs.logging import correlation_scope, ctx
from halswarm.proto.messages import ENV_CAPABILITY, CommandMsg, CommandResult
from halswarm.store import AuditRecord, Store, StoreError
from halswarm.supervisor.registry import LinkGoneError, NodeRegistry
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from collections.abc import Callable

    from halswarm.jsontypes import JSONObject
    from halswarm.obs.metrics import Metrics
    from halswarm.supervisor.tracker import SessionTracker
from halswarm.sync import wait_any

__all__ = ["CommandError", "Dispatcher"]

log = logging.getLogger(__name__)

_MIN_BUDGET: Final = 1.0
_ANSWER_MARGIN: Final = 2.0  # seconds kept back for the result's way home
_STORE_TIMEOUT: Final = 5.0
_FINISHED_MAX: Final = 1000
# A handover restart waits up to 60 s for the old session to go idle, then starts anew.
# Environment commands run subprocesses (a JVM start, an approved install with its own
# timeout from the manifest): give them room beyond server.command_timeout_sec.
_MIN_TIMEOUT: Final[dict[str, float]] = {
    "restart_session": 150.0,
    "env_check": 120.0,
    "env_provision": 180.0,
    "env_install": 3600.0,
}


class CommandError(Exception):
    """A command request that cannot be accepted; maps to an HTTP status."""

    def __init__(self, status: int, code: str, message: str, command: Command | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.command = command


@attrs.frozen
class _Resolved:
    node_id: str
    wire_target: str


@attrs.define
class _Inflight:
    command: Command
    started: float
    done: trio.Event = attrs.field(factory=trio.Event)
    answered: trio.Event = attrs.field(factory=trio.Event)
    result: CommandResult | None = None


class Dispatcher:
    """Runs command deliveries in its own nursery. Start with ``nursery.start(dispatcher.run)``."""

    def __init__(
        self,
        store: Store,
        registry: NodeRegistry,
        tracker: SessionTracker,
        metrics: Metrics,
        *,
        now: Clock,
        default_timeout: float,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.store = store
        self.registry = registry
        self.tracker = tracker
        self.metrics = metrics
        self.now = now
        self.default_timeout = default_timeout
        self.new_id = new_id
        self._inflight: dict[str, _Inflight] = {}
        # Finished commands whose outcome is not in the store yet (being written, or the
        # write failed): answered from here so nobody reads a stale "sent" row.
        self._finished: collections.OrderedDict[str, Command] = collections.OrderedDict()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery that deliveries run in, until cancelled.

        Cancellation: pending deliveries are cancelled; their commands stay ``pending`` or
        ``sent`` in the store (visible after restart) rather than being guessed at.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # ---- submission ------------------------------------------------------------------

    async def submit(
        self, request: CommandRequest, *, actor: str, source: str, correlation_id: str | None = None
    ) -> Command:
        """Validate and accept a command; delivery continues in the background.

        Returns:
            The stored command (``pending``), or the earlier command with the same
            idempotency key, or a command that already ``failed`` (offline target).

        Raises:
            CommandError: 400 bad arguments, 404 unknown target, 409 idempotency key
                reused for a different command or target offline (with the command),
                503 the store cannot record it.
        """
        try:
            parsed = parse_args(request.type, request.args)
        except ConversionError as exc:
            raise CommandError(400, "invalid_args", "; ".join(exc.problems)) from None
        args: JSONObject = converter.unstructure(parsed)
        key = request.idempotency_key or self.new_id()
        if request.idempotency_key:
            existing = await self._existing(key, request, args)
            if existing is not None:
                return existing
        resolved = self._resolve(request)
        wall = format_ts(self.now())
        correlation = correlation_id or self.new_id()[:16]
        command = Command(
            id=self.new_id(),
            type=request.type,
            target=request.target,
            args=args,
            status="pending",
            actor=actor,
            source=source,
            correlation_id=correlation,
            idempotency_key=key,
            node_id=resolved.node_id,
            created_at=wall,
        )
        audit = AuditRecord(
            ts=wall,
            actor=actor,
            source=source,
            action=f"command.{request.type}",
            target=request.target,
            outcome="accepted",
            correlation_id=correlation,
            detail={"command_id": command.id, "node_id": resolved.node_id},
        )
        began = trio.current_time()
        try:
            raced = await self.store.insert_command(command, audit)
        except StoreError as exc:
            # Never dispatch a command we could not record (it would escape the audit trail).
            log.error("command refused: cannot store it: %s", exc, extra=ctx(type=request.type))
            raise CommandError(503, "storage_unavailable", "the supervisor cannot store commands right now") from None
        self.metrics.observe_store_write("command_insert", trio.current_time() - began)
        if raced is not None:
            return self._same_or_conflict(raced, request, args)
        log.info(
            "command accepted",
            extra=ctx(command_id=command.id, type=command.type, target=command.target, correlation_id=correlation),
        )
        inflight = _Inflight(command, started=trio.current_time())
        self._inflight[command.id] = inflight
        entry = self.registry.get(resolved.node_id)
        if entry is None or not entry.online:
            await self._finish(inflight, "failed", error=f"node {resolved.node_id!r} is offline")
            raise CommandError(409, "target_offline", inflight.command.error or "", inflight.command)
        assert self._nursery is not None, "Dispatcher.run() is not running"
        self._nursery.start_soon(self._deliver, inflight, resolved)
        return command

    async def _existing(self, key: str, request: CommandRequest, args: JSONObject) -> Command | None:
        for inflight in self._inflight.values():
            if inflight.command.idempotency_key == key:
                return self._same_or_conflict(inflight.command, request, args)
        for finished in self._finished.values():
            if finished.idempotency_key == key:
                return self._same_or_conflict(finished, request, args)
        stored = await self.store.get_command_by_key(key)
        return self._same_or_conflict(stored, request, args) if stored is not None else None

    @staticmethod
    def _same_or_conflict(existing: Command, request: CommandRequest, args: JSONObject) -> Command:
        if (existing.type, existing.target, existing.args) != (request.type, request.target, args):
            raise CommandError(
                409,
                "idempotency_conflict",
                f"idempotency key already used by command {existing.id} ({existing.type} on {existing.target})",
            )
        return existing

    def _resolve(self, request: CommandRequest) -> _Resolved:
        target = request.target
        if request.type in SESSION_TARGETED:
            session = self.tracker.get(target) or self.tracker.active_for_project(target)
            if session is None:
                if self.registry.nodes_hosting(target):
                    raise CommandError(404, "no_active_session", f"project {target!r} has no active session")
                raise CommandError(404, "unknown_target", f"no session or project named {target!r}")
            return _Resolved(session.node_id, session.id)
        if request.type in ENV_COMMANDS and (entry := self.registry.get(target)) is not None:
            # An older agent would close its link on an unknown command, then get it
            # again on every reconnect: refuse it here instead.
            if entry.online and ENV_CAPABILITY not in entry.capabilities:
                raise CommandError(
                    409,
                    "not_supported",
                    f"node {target!r} runs an agent without environment checks ({request.type}); upgrade it",
                )
            return _Resolved(target, "")
        hosts = self.registry.nodes_hosting(target)
        if not hosts:
            raise CommandError(404, "unknown_target", f"no node hosts a project named {target!r}")
        return _Resolved(hosts[0].record.id, target)

    # ---- delivery --------------------------------------------------------------------

    def _timeout(self, command_type: str) -> float:
        return max(self.default_timeout, _MIN_TIMEOUT.get(command_type, 0.0))

    async def _deliver(self, inflight: _Inflight, resolved: _Resolved) -> None:
        """Deliver one command and record its outcome; never lets an error escape.

        Error handling: any failure (store down, a bug) fails this command only, with
        the reason logged (house-style rule 8).
        """
        try:
            # Every line about this delivery carries the command's own correlation id.
            with correlation_scope(inflight.command.correlation_id):
                await self._deliver_until_answered(inflight, resolved)
        except Exception as exc:
            log.exception(
                "command delivery failed",
                extra=ctx(command_id=inflight.command.id, correlation_id=inflight.command.correlation_id),
            )
            if not inflight.done.is_set():
                await self._finish(inflight, "failed", error=f"supervisor error while delivering: {exc}")

    async def _deliver_until_answered(self, inflight: _Inflight, resolved: _Resolved) -> None:
        command = inflight.command
        timeout = self._timeout(command.type)
        ends_at = trio.current_time() + timeout
        with trio.move_on_at(ends_at):
            while inflight.result is None:
                entry = self.registry.get(resolved.node_id)
                if entry is None or not entry.online:
                    await self._finish(inflight, "failed", error=f"node {resolved.node_id!r} went offline")
                    return
                changed = entry.changed
                if entry.link is None:
                    await changed.wait()  # the agent may reconnect before the deadline
                    continue
                # A resend gets what is left of the budget (less a margin for the answer's
                # trip back), so the agent never works past the supervisor's deadline.
                budget = max(_MIN_BUDGET, ends_at - trio.current_time() - _ANSWER_MARGIN)
                message = CommandMsg(
                    command_id=command.id,
                    idempotency_key=command.idempotency_key,
                    command_type=command.type,
                    target=resolved.wire_target,
                    args=command.args,
                    deadline=round(budget, 3),
                    correlation_id=command.correlation_id,
                )
                try:
                    await entry.link.send_command(message)
                except LinkGoneError:
                    await changed.wait()
                    continue
                if inflight.command.status == "pending":
                    inflight.command = attrs.evolve(inflight.command, status="sent")
                    # Off the critical path: the answer may already be on its way back.
                    assert self._nursery is not None
                    self._nursery.start_soon(self._record_sent, command.id)
                await wait_any(inflight.answered, changed)
        result = inflight.result
        if result is None:
            await self._finish(inflight, "timed_out", error=f"no answer from {resolved.node_id} within {timeout:g}s")
        elif result.ok:
            await self._finish(inflight, "succeeded", result=result.result)
        else:
            await self._finish(inflight, "failed", error=result.error or "command failed", result=result.result)

    async def _record_sent(self, command_id: str) -> None:
        try:
            await self.store.mark_command_sent(command_id)
        except StoreError as exc:  # the outcome write is what matters; carry on
            log.warning("could not record that a command was sent: %s", exc, extra=ctx(command_id=command_id))

    def on_result(self, node_id: str, result: CommandResult) -> None:
        """A command_result frame arrived (from the hub's reader: must not block)."""
        inflight = self._inflight.get(result.command_id)
        if inflight is None or inflight.command.node_id != node_id:
            # After a timeout the action may still have happened: say so loudly.
            log.warning(
                "late command result after the command was closed (ok=%s, error=%s)",
                result.ok,
                result.error,
                # No record of ours any more: the id the agent echoed is the best we have.
                extra=ctx(command_id=result.command_id, node_id=node_id, correlation_id=result.correlation_id or None),
            )
            return
        if inflight.result is None:
            inflight.result = result
            inflight.answered.set()

    async def _finish(
        self, inflight: _Inflight, status: CommandStatus, *, error: str | None = None, result: JSONObject | None = None
    ) -> None:
        command = attrs.evolve(
            inflight.command, status=status, error=error, result=result, finished_at=format_ts(self.now())
        )
        inflight.command = command
        audit = AuditRecord(
            ts=command.finished_at or "",
            actor=command.actor,
            source=command.source,
            action=f"command.{command.type}",
            target=command.target,
            outcome=status,
            correlation_id=command.correlation_id,
            detail={"command_id": command.id, "error": error} if error else {"command_id": command.id},
        )
        self.metrics.commands_total.labels(command.type, status).inc()
        self.metrics.command_duration.labels(command.type).observe(trio.current_time() - inflight.started)
        log.log(
            logging.INFO if status == "succeeded" else logging.WARNING,
            "command %s",
            status,
            extra=ctx(command_id=command.id, type=command.type, error=error, correlation_id=command.correlation_id),
        )
        # Findable in memory from now until the store has it: readers must never see the
        # stale "sent" row of a command that is already answered.
        self._finished[command.id] = command
        while len(self._finished) > _FINISHED_MAX:
            self._finished.popitem(last=False)
        self._inflight.pop(command.id, None)
        inflight.done.set()
        with trio.move_on_after(_STORE_TIMEOUT, shield=True) as scope:
            began = trio.current_time()
            try:
                await self.store.update_command(command, audit)
            except StoreError as exc:
                log.error(
                    "could not store a command's outcome (kept in memory): %s", exc, extra=ctx(command_id=command.id)
                )
            else:
                self.metrics.observe_store_write("command_update", trio.current_time() - began)
                self._finished.pop(command.id, None)
        if scope.cancelled_caught:
            log.error("storing a command's outcome took too long (kept in memory)", extra=ctx(command_id=command.id))

    def in_flight(self, command_type: str, node_id: str, args: JSONObject) -> Command | None:
        """The latest command still under way (``pending`` or ``sent``) of *command_type* on
        *node_id* whose arguments include *args*; None when there is none.

        Answered from memory (the commands this process is delivering), without awaiting:
        a caller can check and submit under one lock.
        """
        for inflight in reversed(self._inflight.values()):
            command = inflight.command
            if (command.type, command.node_id) == (command_type, node_id) and all(
                command.args.get(name) == value for name, value in args.items()
            ):
                return command
        return None

    async def wait(self, command_id: str, max_wait: float) -> Command | None:
        """The command after it finishes or *max_wait* seconds pass, whichever is first."""
        inflight = self._inflight.get(command_id)
        if inflight is not None:
            with trio.move_on_after(max(0.0, max_wait)):
                await inflight.done.wait()
            return inflight.command
        if command_id in self._finished:
            return self._finished[command_id]
        return await self.store.get_command(command_id)
