"""What the policy engine needs from the store and the command path (narrow protocols).

:class:`~halswarm.store.Store` implements :class:`PolicyStore` and
:class:`~halswarm.supervisor.dispatcher.Dispatcher` implements :class:`CommandPath`.
Narrow protocols (not the whole classes) let the engine's tick schedule and its
decisions be tested on trio's virtual clock against fakes that run no threads (a
thread hop lets the autojump clock skip past a deadline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from halswarm.commands import CommandRequest
    from halswarm.cost.model import CostBucket
    from halswarm.jsontypes import JSONObject
    from halswarm.models import Command
    from halswarm.policy.views import PolicyOverride
    from halswarm.store.policy_sql import UnfinishedCommand
    from halswarm.store.sql import AuditRecord

__all__ = ["CommandPath", "Emit", "PolicyStore", "TryEmit"]


class PolicyStore(Protocol):
    """Policy persistence, the audit log and today's cost buckets.

    Implementations raise ``halswarm.store.StoreError`` when the database fails.
    """

    async def load_policy_rows(self) -> dict[str, str]:
        """Every persisted policy state row (name -> JSON text)."""
        ...

    async def save_policy_rows(self, rows: Mapping[str, str], now: str, audits: Sequence[AuditRecord] = ()) -> None:
        """Write state rows and audit rows in one transaction."""
        ...

    async def load_policy_overrides(self) -> dict[str, PolicyOverride]:
        """Runtime overrides (name -> override)."""
        ...

    async def set_policy_override(self, name: str, override: PolicyOverride | None, audit: AuditRecord) -> None:
        """Set or clear an override, with its audit row, in one transaction."""
        ...

    async def insert_audit(self, audit: AuditRecord) -> None:
        """Append one audit row."""
        ...

    async def unfinished_commands(self) -> list[UnfinishedCommand]:
        """Commands still pending or sent."""
        ...

    async def cost_buckets(self, first: dt.date, last: dt.date) -> list[CostBucket]:
        """Cost buckets of days ``first..last`` (inclusive)."""
        ...


class CommandPath(Protocol):
    """The command path humans use too (``Dispatcher``)."""

    async def submit(
        self, request: CommandRequest, *, actor: str, source: str, correlation_id: str | None = None
    ) -> Command:
        """Validate, store (with an audit row) and start delivering a command.

        Raises ``CommandError`` when it cannot be accepted.
        """
        ...

    async def wait(self, command_id: str, max_wait: float) -> Command | None:
        """The command after it finishes or *max_wait* seconds pass (0: as it is now)."""
        ...


class Emit(Protocol):
    """Raises a supervisor event (``Pipeline.emit``, or ``try_emit``: what it returns is ignored); never blocks."""

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> object: ...


class TryEmit(Protocol):
    """Raises a supervisor event (``Pipeline.try_emit``); never blocks.

    Returns False when the event was dropped (the event queue is congested), so the
    caller can say which event was lost.
    """

    def __call__(
        self, event_type: str, data: JSONObject, *, session_id: str | None = None, project: str | None = None
    ) -> bool: ...
