"""What cost tracking needs from the store: :class:`~halswarm.store.Store` implements it.

A narrow protocol (not the whole ``Store``) so the poller's schedule can be tested on
virtual time against a store that runs no threads (a thread hop lets trio's autojump
clock skip past the poller's deadlines).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from halswarm.cost.estimates import SessionCost
    from halswarm.cost.model import CostBucket, Span

__all__ = ["CostStore"]


class CostStore(Protocol):
    """Cost storage operations; every write is one transaction.

    Implementations raise ``halswarm.store.StoreError`` when the database fails.
    """

    async def replace_provider_costs(
        self,
        provider: str,
        start: dt.date,
        end: dt.date,
        buckets: list[CostBucket],
        now: str,
        *,
        covered: Span | None = None,
        complete: bool = True,
    ) -> int:
        """Replace a provider's rows for days ``start <= day < end``; record coverage and the poll."""
        ...

    async def add_cost_estimates(self, deltas: list[CostBucket], seen: dict[str, SessionCost], now: str) -> None:
        """Add estimate deltas and the sessions' bookkeeping together."""
        ...

    async def load_estimate_seen(self) -> dict[str, SessionCost]:
        """What the estimates booked of each session so far."""
        ...

    async def prune_estimate_sessions(self, session_ids: Sequence[str]) -> int:
        """Forget what the estimates booked of settled sessions."""
        ...

    async def cost_buckets(self, first: dt.date, last: dt.date) -> list[CostBucket]:
        """Buckets of days ``first..last`` (inclusive)."""
        ...

    async def cost_state(self, prefix: str) -> dict[str, str]:
        """State entries whose key starts with *prefix*."""
        ...

    async def put_cost_state(self, items: dict[str, str], now: str) -> None:
        """Set state entries."""
        ...
