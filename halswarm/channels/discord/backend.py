"""What the Discord handler needs from the supervisor: one small Protocol.

The supervisor implements :class:`DiscordBackend` over its tracker, registry, store,
dispatcher and cost reporter (not wired yet); tests implement it with a fake. The
handler never sees supervisor types beyond the shared models, and the supervisor
never sees interactions.

Every method may raise :class:`BackendError` with a message fit to show the Discord
user (e.g. the dispatcher's ``CommandError.message``: "node 'build-01' is offline").
Anything else it raises is a bug the transport logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from halswarm.channels.discord.errors import DiscordError
from halswarm.envcheck.views import PendingInstall
from halswarm.jsontypes import JSONObject
from halswarm.models import PermissionRequest, Session

if TYPE_CHECKING:
    from halswarm.channels.discord.interactions import Actor
    from halswarm.commands import CommandRequest
    from halswarm.cost.model import CostPeriod, CostReport
    from halswarm.models import Command, Event, Node

__all__ = ["AuditNote", "BackendError", "DiscordBackend", "PendingInstall", "PendingPermission"]


class BackendError(DiscordError):
    """The supervisor could not do what was asked; ``message`` is shown to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class PendingPermission:
    """A permission request a session waits on, and that session."""

    session: Session
    request: PermissionRequest


@attrs.frozen
class AuditNote:
    """An audit row the handler asks for (refusals; accepted commands are audited by the dispatcher).

    ``actor`` is :attr:`Actor.audit_name` (``discord:<user id>``); ``source`` is always
    ``discord``; ``detail`` carries the Discord user name, guild and channel.
    """

    actor: str
    action: str  # e.g. "discord.kill" or "discord.button.restart"
    target: str
    outcome: Literal["refused"]
    detail: JSONObject = attrs.field(factory=dict)
    source: str = "discord"


class DiscordBackend(Protocol):
    """The supervisor, as the Discord handler sees it."""

    async def sessions(self, project: str | None) -> list[Session]:
        """Tracked sessions (of *project*, or all), as ``GET /api/v1/sessions`` lists them."""
        ...

    async def nodes(self) -> list[Node]:
        """Every known node."""
        ...

    async def events(self, target: str, n: int) -> list[Event]:
        """The latest *n* events (oldest first) of a session id or a project's sessions.

        Raises:
            BackendError: *target* names no session and no project.
        """
        ...

    async def submit(self, request: CommandRequest, actor: Actor) -> Command:
        """Submit a command on behalf of *actor* (audited by the dispatcher as ``actor.audit_name``).

        Returns:
            The accepted command (``pending``), or a command that already failed.

        Raises:
            BackendError: refused (bad arguments, unknown target, store unavailable).
        """
        ...

    async def wait(self, command_id: str, max_wait: float) -> Command | None:
        """The command once finished, or its current state after *max_wait* seconds; None if unknown."""
        ...

    async def cost(self, period: CostPeriod) -> CostReport:
        """The fleet's cost report for *period*, grouped by provider then model.

        Raises:
            BackendError: no cost data is available.
        """
        ...

    async def pending(self, request_id: str) -> PendingPermission | None:
        """The permission request with exactly this id and its session; None if nobody waits on it."""
        ...

    async def audit(self, note: AuditNote) -> None:
        """Record *note* in the audit log (must not raise: a failed write is logged)."""
        ...

    async def find_install(self, key: str) -> PendingInstall | None:
        """The install the manifest now declares whose :func:`~.customid.install_key` is *key*
        (for a known node and one of its projects), with the current manifest hash; None if none."""
        ...

    async def pending_installs(self) -> list[PendingInstall]:
        """Installs that would fix a failed check in the latest environment reports."""
        ...

    async def approve_install(self, item: PendingInstall, actor: Actor, idempotency_key: str) -> Command:
        """Approve and submit *item* through the supervisor's one approval path.

        ``item.manifest_hash`` is the manifest the approver saw: a changed one is refused.

        Returns:
            The accepted ``env_install`` command (or a command that already failed).

        Raises:
            BackendError: refused, nothing run (manifest changed, node offline, already
                running, not declared any more, audit log unavailable).
        """
        ...

    async def decline_install(self, item: PendingInstall, actor: Actor, reason: str | None) -> None:
        """Record that *actor* declined *item* (an audit row); nothing runs.

        Raises:
            BackendError: not declared any more, or the audit log is unavailable.
        """
        ...
