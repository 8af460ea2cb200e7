"""Daily budgets (pure decisions): today's spend per scope, and which events to raise.

Scopes are the fleet (``budgets.daily_usd``) and each project in ``budgets.projects``.

**What a budget measures** (:func:`today_spend`). Per provider, the larger of its bill
(its ``provider`` rows, on a day its polls cover) and opencode's estimate: the bill for
today lags (minutes at Anthropic, sometimes more) and is incomplete until the day
settles, so budgets react to the estimates at once and to the bill when it is higher.
A project's spend is, per provider, the larger of the bill rows attributed to that
project (its workspace or project id mapped to it) and that project's estimates, so a
provider whose ids are not mapped still counts through the estimates.

Invariants of :func:`decide`:

- Per UTC day and scope, ``cost.budget_warning`` is raised at most once (spend reached
  ``warn_percent`` of the limit) and ``cost.budget_exceeded`` at most once (reached
  100 %).
- Spend that jumps past 100 % in one step raises only ``cost.budget_exceeded`` (a
  warning after it would say less than what was already said); the warning then counts
  as sent for that day.
- A new UTC day re-arms every scope. What was sent (:meth:`BudgetNotice.sent`) is
  persisted by the caller once the event is queued, so a restart does not raise it again
  and an event that could not be queued is raised again on the next check.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal

import attrs
import orjson

from halswarm.cost.model import BudgetStatus, Coverage
from halswarm.cost.money import percent_of, report_usd

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

    from halswarm.config.supervisor import BudgetsConfig, CostConfig
    from halswarm.cost.model import CostBucket
    from halswarm.jsontypes import JSONObject

__all__ = [
    "BUDGET_EXCEEDED",
    "BUDGET_WARNING",
    "BudgetNotice",
    "BudgetScope",
    "Notified",
    "TodaySpend",
    "budget_scopes",
    "budget_statuses",
    "decide",
    "today_spend",
    "unmapped_budget_warnings",
]

BUDGET_WARNING: Final = "cost.budget_warning"
BUDGET_EXCEEDED: Final = "cost.budget_exceeded"

BudgetLevel = Literal["warning", "exceeded"]
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)


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
    """Today's spend as budgets measure it (see the module docstring): fleet and per project."""

    fleet: Decimal = Decimal(0)
    projects: Mapping[str, Decimal] = attrs.field(factory=dict)

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

    def sent(self, before: Notified | None) -> Notified:
        """What counts as raised for the scope once this event is queued.

        An exceeded notice also counts as the warning (no late warning after it).
        """
        levels = before.levels if before is not None and before.day == self.day else frozenset()
        raised: frozenset[BudgetLevel] = (
            frozenset({"warning", "exceeded"}) if self.level == "exceeded" else frozenset({"warning"})
        )
        return Notified(self.day, levels | raised)

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


def budget_scopes(config: BudgetsConfig) -> list[BudgetScope]:
    """Every configured budget: the fleet first, then projects by name."""
    scopes = []
    if config.daily_usd is not None:
        scopes.append(BudgetScope(None, Decimal(repr(config.daily_usd))))
    scopes += [BudgetScope(name, Decimal(repr(limit))) for name, limit in sorted(config.projects.items())]
    return scopes


def _covers(coverage: Collection[str]) -> Callable[[str, dt.date], bool]:
    if isinstance(coverage, Coverage):
        return coverage.covers
    # A plain set of provider names (older callers): each named provider's data counts on every day.
    return lambda provider, _day: provider in coverage


def today_spend(buckets: Iterable[CostBucket], coverage: Collection[str]) -> TodaySpend:
    """One day's buckets as budgets measure them (see the module docstring).

    Args:
        buckets: the buckets of today (both sources).
        coverage: a :class:`~halswarm.cost.model.Coverage`; a plain collection of
            provider names counts those providers' bills on every day.
    """
    covers = _covers(coverage)
    bill: dict[tuple[dt.date, str, str | None], Decimal] = collections.defaultdict(Decimal)
    estimate: dict[tuple[dt.date, str, str | None], Decimal] = collections.defaultdict(Decimal)
    for b in buckets:
        if b.source == "estimate":
            side = estimate
        elif covers(b.provider, b.day):
            side = bill
        else:
            continue  # a provider's rows outside its coverage count nowhere (the totals rule)
        side[b.day, b.provider, None] += b.cost_usd  # the provider's whole day
        side[b.day, b.provider, b.project] += b.cost_usd
    fleet = _ZERO
    projects: dict[str, Decimal] = collections.defaultdict(Decimal)
    for key in bill.keys() | estimate.keys():
        larger = max(bill.get(key, _ZERO), estimate.get(key, _ZERO))
        project = key[2]
        if project is None:
            fleet += larger
        else:
            projects[project] += larger
    return TodaySpend(fleet, dict(projects))


def budget_statuses(config: BudgetsConfig, spend: TodaySpend) -> list[BudgetStatus]:
    """Today's spend against each configured budget, for reports."""
    return [
        BudgetStatus(
            scope=s.label,
            limit_usd=report_usd(s.limit_usd),
            spent_usd=report_usd(spend.of(s)),
            percent=round(float(percent_of(spend.of(s), s.limit_usd)), 2),
            warn_percent=config.warn_percent,
        )
        for s in budget_scopes(config)
    ]


def decide(
    config: BudgetsConfig, spend: TodaySpend, today: dt.date, notified: Mapping[str, Notified]
) -> list[BudgetNotice]:
    """Which budget events to raise now.

    Args:
        config: the configured budgets.
        spend: today's spend.
        today: the current UTC day.
        notified: what was raised so far, per scope key (entries of other days are
            ignored: a new day re-arms).

    Returns:
        The events to raise, warnings before exceeded, fleet before projects. The caller
        records :meth:`BudgetNotice.sent` for each one it managed to queue.
    """
    warn_at = Decimal(repr(config.warn_percent))
    notices: list[BudgetNotice] = []
    for scope in budget_scopes(config):
        before = notified.get(scope.key)
        sent = before.levels if before is not None and before.day == today else frozenset()
        spent = spend.of(scope)
        percent = percent_of(spent, scope.limit_usd)
        if percent >= _HUNDRED:
            if "exceeded" not in sent:
                notices.append(BudgetNotice("exceeded", scope, today, spent, percent))
        elif percent >= warn_at and "warning" not in sent:
            notices.append(BudgetNotice("warning", scope, today, spent, percent))
    notices.sort(key=lambda n: n.level == "exceeded")
    return notices


def unmapped_budget_warnings(cost: CostConfig, budgets: BudgetsConfig) -> list[str]:
    """Project budgets a configured provider's bill cannot reach (logged at start).

    A provider's rows carry the halswarm project only where its workspace (Anthropic)
    or project (OpenAI) id is mapped to it; a project budget then still counts that
    provider through opencode's estimates, never through its bill.
    """
    if not budgets.projects:
        return []
    warnings = []
    maps = [
        ("anthropic", "workspaces", cost.providers.anthropic.workspaces if cost.providers.anthropic else None),
        ("openai", "projects", cost.providers.openai.projects if cost.providers.openai else None),
    ]
    for provider, key, mapping in maps:
        if mapping is None:
            continue
        unmapped = sorted(set(budgets.projects) - set(mapping.values()))
        if unmapped:
            warnings.append(
                f"budgets.projects: no cost.providers.{provider}.{key} entry maps to {', '.join(unmapped)}; "
                f"{'that budget counts' if len(unmapped) == 1 else 'those budgets count'} opencode's estimate "
                f"of {provider} spend, never {provider}'s bill"
            )
    return warnings
