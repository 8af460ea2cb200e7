"""The supervisor behind the Discord handler: :class:`DiscordBackend` over its components.

Reads come from the tracker, registry and store; commands go through the dispatcher
with ``discord:<user id>`` as actor and ``discord`` as source (the dispatcher audits
them); refusals the handler reports are written with ``store.insert_audit``. Installs
are approved and declined through the supervisor's one approval path
(:class:`~halswarm.supervisor.installs.InstallApprovals`, shared with the HTTP API).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from halswarm.channels.discord.backend import AuditNote, BackendError, PendingPermission
from halswarm.channels.discord.customid import install_key
from halswarm.cost.report import PeriodError, parse_window
from halswarm.obs.logging import ctx
from halswarm.store import AuditRecord, EventQuery, StoreError
from halswarm.supervisor.dispatcher import CommandError
from halswarm.supervisor.installs import InstallRefusedError
from halswarm.timeutil import format_ts

if TYPE_CHECKING:
    from halswarm.channels.discord.interactions import Actor
    from halswarm.commands import CommandRequest
    from halswarm.cost.model import CostPeriod, CostReport
    from halswarm.cost.reporter import CostReporter
    from halswarm.envcheck.views import PendingInstall
    from halswarm.models import Command, Event, Node, Session
    from halswarm.store import Store
    from halswarm.supervisor.dispatcher import Dispatcher
    from halswarm.supervisor.installs import InstallApprovals
    from halswarm.supervisor.registry import NodeRegistry
    from halswarm.supervisor.tracker import SessionTracker
    from halswarm.timeutil import Clock

__all__ = ["SupervisorDiscordBackend"]

log = logging.getLogger(__name__)

SOURCE = "discord"


class SupervisorDiscordBackend:
    """:class:`~halswarm.channels.discord.backend.DiscordBackend` for the running supervisor."""

    def __init__(
        self,
        *,
        store: Store,
        tracker: SessionTracker,
        registry: NodeRegistry,
        dispatcher: Dispatcher,
        cost: CostReporter,
        now: Clock,
        installs: InstallApprovals | None = None,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.registry = registry
        self.dispatcher = dispatcher
        self.cost_reporter = cost
        self.now = now
        self.installs = installs

    async def sessions(self, project: str | None) -> list[Session]:
        return self.tracker.sessions(project=project)

    async def nodes(self) -> list[Node]:
        nodes = [self.registry.to_node(e, self.tracker.count_for_node(e.record.id)) for e in self.registry]
        nodes.sort(key=lambda n: n.id)
        return nodes

    def _is_project(self, name: str) -> bool:
        return bool(self.tracker.sessions(project=name)) or bool(self.registry.nodes_hosting(name))

    async def events(self, target: str, n: int) -> list[Event]:
        if self.tracker.get(target) is not None:
            query = EventQuery(session_id=target, limit=n)
        elif self._is_project(target):
            query = EventQuery(project=target, limit=n)
        else:
            raise BackendError(f"no session or project named {target!r}")
        try:
            return await self.store.query_events(query)
        except StoreError:
            raise BackendError("the supervisor's database is unavailable; retry later") from None

    async def submit(self, request: CommandRequest, actor: Actor) -> Command:
        try:
            return await self.dispatcher.submit(request, actor=actor.audit_name, source=SOURCE)
        except CommandError as exc:
            if exc.command is not None:
                return exc.command  # already failed (e.g. the target's node is offline)
            raise BackendError(exc.message) from None

    async def wait(self, command_id: str, max_wait: float) -> Command | None:
        try:
            return await self.dispatcher.wait(command_id, max_wait)
        except StoreError:
            return None

    async def cost(self, period: CostPeriod) -> CostReport:
        try:
            window = parse_window(period, None, None, self.cost_reporter.today())
            return await self.cost_reporter.report(window, "provider")
        except (PeriodError, StoreError) as exc:
            raise BackendError(f"no cost data is available: {exc}") from None

    async def pending(self, request_id: str) -> PendingPermission | None:
        # Exact ids only (autocomplete offers them): a prefix could answer a request
        # that appeared after the operator read the alert.
        for session in self.tracker.sessions():
            for request in session.pending.permissions:
                if request.id == request_id:
                    return PendingPermission(session, request)
        return None

    def _approvals(self) -> InstallApprovals:
        if self.installs is None:
            raise BackendError("environment checks are not enabled on this supervisor")
        return self.installs

    async def find_install(self, key: str) -> PendingInstall | None:
        if self.installs is None:
            return None
        for item in self.installs.candidates():
            if install_key(item.node_id, item.project, item.install) == key:
                return item
        return None

    async def pending_installs(self) -> list[PendingInstall]:
        return self.installs.pending() if self.installs is not None else []

    async def approve_install(self, item: PendingInstall, actor: Actor, idempotency_key: str) -> Command:
        try:
            return await self._approvals().approve(
                item.node_id,
                item.project,
                item.install,
                actor=actor.audit_name,
                source=SOURCE,
                manifest_hash=item.manifest_hash,
                idempotency_key=idempotency_key,
            )
        except InstallRefusedError as exc:
            raise BackendError(exc.message) from None
        except CommandError as exc:
            if exc.command is not None:
                return exc.command
            raise BackendError(exc.message) from None

    async def decline_install(self, item: PendingInstall, actor: Actor, reason: str | None) -> None:
        try:
            await self._approvals().decline(
                item.node_id,
                item.project,
                item.install,
                actor=actor.audit_name,
                source=SOURCE,
                reason=reason,
                manifest_hash=item.manifest_hash,
            )
        except InstallRefusedError as exc:
            raise BackendError(exc.message) from None

    async def audit(self, note: AuditNote) -> None:
        record = AuditRecord(
            ts=format_ts(self.now()),
            actor=note.actor,
            source=note.source,
            action=note.action,
            target=note.target,
            outcome=note.outcome,
            detail=note.detail,
        )
        try:
            await self.store.insert_audit(record)
        except StoreError as exc:
            log.error("could not audit a Discord refusal: %s", exc, extra=ctx(action=note.action, actor=note.actor))
