"""The read side of cost tracking: stored buckets -> :class:`~halswarm.cost.model.CostReport`.

What ``GET /api/v1/cost`` (and through it ``halctl cost`` and Discord) answers. The
aggregation itself is the pure :func:`halswarm.cost.report.build_report`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.cost.budgets import budget_statuses, today_spend
from halswarm.cost.report import build_report, utc_today

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from halswarm.config.supervisor import BudgetsConfig
    from halswarm.cost.model import CostGrouping, CostReport, Coverage, SourceStatus
    from halswarm.cost.report import CostWindow
    from halswarm.cost.storage import CostStore
    from halswarm.timeutil import Clock

__all__ = ["CostReporter"]


class CostReporter:
    """Builds cost reports from the store, the poller's state and the budgets."""

    def __init__(
        self,
        store: CostStore,
        *,
        coverage: Coverage,
        statuses: Callable[[], list[SourceStatus]],
        budgets: BudgetsConfig,
        now: Clock,
    ) -> None:
        self.store = store
        #: The poller's live coverage: which provider's data is the bill on which days.
        self.coverage = coverage
        self.statuses = statuses
        self.budgets = budgets
        self.now = now

    def today(self) -> dt.date:
        """The current UTC day."""
        return utc_today(self.now)

    async def report(self, window: CostWindow, group_by: CostGrouping) -> CostReport:
        """The report of *window* grouped by *group_by*, with today's budget use.

        Raises:
            StoreError: the database cannot be read.
        """
        today = self.today()
        buckets = await self.store.cost_buckets(window.first, window.last)
        if window.first <= today <= window.last:
            todays = [b for b in buckets if b.day == today]
        else:
            todays = await self.store.cost_buckets(today, today)
        return build_report(
            buckets,
            window,
            group_by=group_by,
            coverage=self.coverage,
            sources=self.statuses(),
            budgets=budget_statuses(self.budgets, today_spend(todays, self.coverage)),
        )
