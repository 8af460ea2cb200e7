"""Budgets (pure): today's spend by the totals rule, exactly one warning and one exceeded per
UTC day and scope, a new day re-arms, persisted state survives a restart, event data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from halswarm.config.supervisor import BudgetsConfig
from halswarm.cost.budgets import (
    BudgetDecision,
    Notified,
    TodaySpend,
    budget_statuses,
    decide,
    today_spend,
)
from halswarm.cost.model import BudgetStatus, CostBucket

DAY = dt.date(2026, 3, 2)
CONFIG = BudgetsConfig(daily_usd=100.0, projects={"alpha": 10.0, "beta": 20.0}, warn_percent=80.0)


def spend(fleet: str = "0", /, **projects: str) -> TodaySpend:
    return TodaySpend(Decimal(fleet), {name: Decimal(v) for name, v in projects.items()})


class Budgets:
    """Runs decide() tick after tick with its state, as the poller does (persisting each change)."""

    def __init__(self, config: BudgetsConfig = CONFIG) -> None:
        self.config = config
        self.state: dict[str, str] = {}  # what the store holds: key -> encoded Notified
        self.events: list[tuple[str, str]] = []

    def tick(self, today_spend: TodaySpend, day: dt.date = DAY) -> BudgetDecision:
        notified = {k: n for k, v in self.state.items() if (n := Notified.decode(v)) is not None}
        decision = decide(self.config, today_spend, day, notified)
        self.state.update({k: n.encode() for k, n in decision.notified.items()})
        self.events += [(n.event_type, n.scope.label) for n in decision.notices]
        return decision


def test_warning_once_then_exceeded_once_per_scope_and_day() -> None:
    b = Budgets()
    for fleet in ("10", "79.99", "80", "85", "99.99", "100", "150", "300"):
        b.tick(spend(fleet))
    assert b.events == [("cost.budget_warning", "fleet"), ("cost.budget_exceeded", "fleet")]


def test_a_jump_past_the_limit_raises_exceeded_only_and_no_late_warning() -> None:
    b = Budgets()
    b.tick(spend("120"))
    b.tick(spend("130"))
    assert b.events == [("cost.budget_exceeded", "fleet")]


def test_scopes_are_independent() -> None:
    b = Budgets()
    b.tick(spend("50", alpha="8", beta="1"))
    b.tick(spend("50", alpha="11", beta="17"))
    b.tick(spend("50", alpha="12", beta="25"))
    assert b.events == [
        ("cost.budget_warning", "alpha"),
        ("cost.budget_warning", "beta"),  # warnings first within a tick
        ("cost.budget_exceeded", "alpha"),
        ("cost.budget_exceeded", "beta"),
    ]


def test_a_new_utc_day_re_arms_every_scope() -> None:
    b = Budgets()
    b.tick(spend("120", alpha="11"))
    b.tick(spend("120", alpha="11"))
    tomorrow = DAY + dt.timedelta(days=1)
    b.tick(spend("5", alpha="1"), tomorrow)  # a fresh day's spend starts low
    assert len(b.events) == 2
    b.tick(spend("85", alpha="9"), tomorrow)
    b.tick(spend("101", alpha="10"), tomorrow)
    assert b.events[2:] == [
        ("cost.budget_warning", "fleet"),
        ("cost.budget_warning", "alpha"),
        ("cost.budget_exceeded", "fleet"),
        ("cost.budget_exceeded", "alpha"),
    ]


def test_persisted_state_means_a_restart_does_not_notify_again() -> None:
    first = Budgets()
    first.tick(spend("90"))
    restarted = Budgets()
    restarted.state = dict(first.state)  # what the store kept
    restarted.tick(spend("95"))
    assert restarted.events == []
    restarted.tick(spend("100"))
    assert restarted.events == [("cost.budget_exceeded", "fleet")]


def test_unreadable_state_counts_as_nothing_sent() -> None:
    assert Notified.decode("{not json") is None
    assert Notified.decode('{"day": "someday", "levels": []}') is None
    assert Notified.decode('{"day": "2026-03-02", "levels": ["warning", "bogus"]}') == Notified(
        DAY, frozenset({"warning"})
    )


def test_without_budgets_nothing_happens() -> None:
    decision = decide(BudgetsConfig(), spend("1000000"), DAY, {})
    assert decision == BudgetDecision([], {})


def test_event_data_names_scope_day_limit_spend_and_percent() -> None:
    decision = decide(CONFIG, spend("85.1234567", alpha="10.5"), DAY, {})
    data = {n.scope.label: (n.event_type, n.data()) for n in decision.notices}
    assert data["fleet"] == (
        "cost.budget_warning",
        {"scope": "fleet", "day": "2026-03-02", "limit_usd": 100.0, "spent_usd": 85.123457, "percent": 85.12},
    )
    assert data["alpha"] == (
        "cost.budget_exceeded",
        {
            "scope": "project",
            "project": "alpha",
            "day": "2026-03-02",
            "limit_usd": 10.0,
            "spent_usd": 10.5,
            "percent": 105.0,
        },
    )


def test_a_project_named_fleet_does_not_share_the_fleet_state() -> None:
    b = Budgets(BudgetsConfig(daily_usd=100.0, projects={"fleet": 10.0}))
    b.tick(spend("1", fleet="11"))
    b.tick(spend("101", fleet="11"))
    assert b.events == [("cost.budget_exceeded", "fleet"), ("cost.budget_exceeded", "fleet")]
    assert set(b.state) == {"fleet", "project:fleet"}


def test_today_spend_follows_the_totals_rule() -> None:
    def bucket(provider: str, project: str, source: str, usd: str) -> CostBucket:
        return CostBucket(DAY, provider, "m", project, source, cost_usd=Decimal(usd))  # type: ignore[arg-type]

    buckets = [
        bucket("anthropic", "alpha", "provider", "4.00"),  # polled: the bill counts
        bucket("anthropic", "alpha", "estimate", "3.00"),  # ...not opencode's estimate of it
        bucket("openai", "alpha", "estimate", "2.00"),  # not polled: the estimate counts
        bucket("openai", "beta", "provider", "50.00"),  # not polled: ignored
    ]
    s = today_spend(buckets, {"anthropic"})
    assert s.fleet == Decimal("6.00")
    assert s.projects == {"alpha": Decimal("6.00")}
    assert s.providers == {"anthropic": Decimal("4.00"), "openai": Decimal("2.00")}


def test_statuses_for_reports() -> None:
    statuses = budget_statuses(CONFIG, spend("25", alpha="2.5"))
    assert statuses == [
        BudgetStatus("fleet", 100.0, 25.0, 25.0),
        BudgetStatus("alpha", 10.0, 2.5, 25.0),
        BudgetStatus("beta", 20.0, 0.0, 0.0),
    ]
