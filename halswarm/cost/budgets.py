"""Daily budgets (pure decisions): today's spend per scope, and which events to raise.

Scopes are the fleet (``budgets.daily_usd``) and each project in ``budgets.projects``.
Today's spend follows the totals rule of :mod:`halswarm.cost.report`.

Invariants of :func:`decide`:

- Per UTC day and scope, ``cost.budget_warning`` is raised at most once (spend reached
  ``warn_percent`` of the limit) and ``cost.budget_exceeded`` at most once (reached
  100 %).
- Spend that jumps past 100 % in one step raises only ``cost.budget_exceeded`` (a
  warning after it would say less than what was already said); the warning then counts
  as sent for that day.
- A new UTC day re-arms every scope. What was sent is returned as state to persist, so
  a restart does not raise it again.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal

import attrs
import orjson

from halswarm.cost.model import BudgetStatus
from halswarm.cost.money import report_usd
from halswarm.cost.report import counts_toward_total

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from halswarm.config.supervisor import BudgetsConfig
    from halswarm.cost.model import CostBucket
    from halswarm.jsontypes import JSONObject

__all__ = [
    "BUDGET_EXCEEDED",
    "BUDGET_WARNING",
    "BudgetDecision",
    "BudgetNotice",
    "BudgetScope",
    "Notified",
    "TodaySpend",
    "budget_scopes",
    "budget_statuses",
    "decide",
    "today_spend",
]

BUDGET_WARNING: Final = "cost.budget_warning"
BUDGET_EXCEEDED: Final = "cost.budget_exceeded"

BudgetLevel = Literal["warning", "exceeded"]
_HUNDRED: Final = Decimal(100)


@attrs.frozen
class BudgetScope:
    """The fleet (``project`` None) or one project, with its daily limit."""

    project: str | None
    limit_usd: Decimal

    @property
    def key(self) -> str:
        """State key: ``fleet`` or ``project:<name>`` (a project may be called "fleet")."""
        return "fleet" if self.project is None else f"project:{self.project}"

    @property
    def label(self) -> str:
        """How reports name the scope: ``fleet`` or the project name."""
        return "fleet" if self.project is None else self.project


@attrs.frozen
class TodaySpend:
    """Today's spend by the totals rule: fleet-wide, per project and per provider."""

    fleet: Decimal = Decimal(0)
    projects: Mapping[str, Decimal] = attrs.field(factory=dict)
    providers: Mapping[str, Decimal] = attrs.field(factory=dict)

    def of(self, scope: BudgetScope) -> Decimal:
        """The spend a scope is measured by."""
        return self.fleet if scope.project is None else self.projects.get(scope.project, Decimal(0))


@attrs.frozen
class Notified:
    """Budget events already raised for one scope on one day."""

    day: dt.date
    levels: frozenset[BudgetLevel] = frozenset()

    def encode(self) -> str:
        """As persisted in the store's cost state."""
        return orjson.dumps({"day": self.day.isoformat(), "levels": sorted(self.levels)}).decode()

    @classmethod
    def decode(cls, text: str) -> Notified | None:
        """Read a persisted entry (None if unreadable: then nothing counts as sent)."""
        try:
            raw = orjson.loads(text)
            day = dt.date.fromisoformat(raw["day"])
            levels = frozenset(v for v in raw["levels"] if v in ("warning", "exceeded"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return cls(day, levels)


@attrs.frozen
class BudgetNotice:
    """One budget event to raise."""

    level: BudgetLevel
    scope: BudgetScope
    day: dt.date
    spent_usd: Decimal
    percent: Decimal

    @property
    def event_type(self) -> str:
        """``cost.budget_warning`` or ``cost.budget_exceeded``."""
        return BUDGET_WARNING if self.level == "warning" else BUDGET_EXCEEDED

    def data(self) -> JSONObject:
        """The event's data: ``{scope, project?, day, limit_usd, spent_usd, percent}``."""
        data: JSONObject = {"scope": "fleet" if self.scope.project is None else "project"}
        if self.scope.project is not None:
            data["project"] = self.scope.project
        data["day"] = self.day.isoformat()
        data["limit_usd"] = report_usd(self.scope.limit_usd)
        data["spent_usd"] = report_usd(self.spent_usd)
        data["percent"] = round(float(self.percent), 2)
        return data


@attrs.frozen
class BudgetDecision:
    """Events to raise and the per-scope state to persist (changed entries only)."""

    notices: list[BudgetNotice]
    notified: dict[str, Notified]


def budget_scopes(config: BudgetsConfig) -> list[BudgetScope]:
    """Every configured budget: the fleet first, then projects by name."""
    scopes = []
    if config.daily_usd is not None:
        scopes.append(BudgetScope(None, Decimal(repr(config.daily_usd))))
    scopes += [BudgetScope(name, Decimal(repr(limit))) for name, limit in sorted(config.projects.items())]
    return scopes


def today_spend(buckets: Iterable[CostBucket], polled: Collection[str]) -> TodaySpend:
    """Sum one day's buckets by the totals rule."""
    fleet = Decimal(0)
    projects: dict[str, Decimal] = collections.defaultdict(Decimal)
    providers: dict[str, Decimal] = collections.defaultdict(Decimal)
    for b in buckets:
        if counts_toward_total(b, polled):
            fleet += b.cost_usd
            projects[b.project] += b.cost_usd
            providers[b.provider] += b.cost_usd
    return TodaySpend(fleet, dict(projects), dict(providers))


def _percent(spent: Decimal, limit: Decimal) -> Decimal:
    return spent * _HUNDRED / limit


def budget_statuses(config: BudgetsConfig, spend: TodaySpend) -> list[BudgetStatus]:
    """Today's spend against each configured budget, for reports."""
    return [
        BudgetStatus(
            scope=s.label,
            limit_usd=report_usd(s.limit_usd),
            spent_usd=report_usd(spend.of(s)),
            percent=round(float(_percent(spend.of(s), s.limit_usd)), 2),
            warn_percent=config.warn_percent,
        )
        for s in budget_scopes(config)
    ]


def decide(
    config: BudgetsConfig, spend: TodaySpend, today: dt.date, notified: Mapping[str, Notified]
) -> BudgetDecision:
    """Which budget events to raise now.

    Args:
        config: the configured budgets.
        spend: today's spend.
        today: the current UTC day.
        notified: what was raised so far, per scope key (entries of other days are
            ignored: a new day re-arms).

    Returns:
        The events to raise (warnings before exceeded, fleet before projects) and the
        state entries that changed.
    """
    warn_at = Decimal(repr(config.warn_percent))
    notices: list[BudgetNotice] = []
    changed: dict[str, Notified] = {}
    for scope in budget_scopes(config):
        before = notified.get(scope.key)
        sent = before.levels if before is not None and before.day == today else frozenset()
        spent = spend.of(scope)
        percent = _percent(spent, scope.limit_usd)
        levels: set[BudgetLevel] = set(sent)
        if percent >= _HUNDRED:
            if "exceeded" not in sent:
                notices.append(BudgetNotice("exceeded", scope, today, spent, percent))
            levels |= {"warning", "exceeded"}
        elif percent >= warn_at:
            if "warning" not in sent:
                notices.append(BudgetNotice("warning", scope, today, spent, percent))
            levels.add("warning")
        if frozenset(levels) != sent:
            changed[scope.key] = Notified(today, frozenset(levels))
    notices.sort(key=lambda n: n.level == "exceeded")
    return BudgetDecision(notices, changed)
