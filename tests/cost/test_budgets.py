"""Budgets (pure): today's spend (per provider the larger of bill and estimate, per project
too), exactly one warning and one exceeded per UTC day and scope, a new day re-arms,
persisted state survives a restart, event data, unmapped-provider warnings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from halswarm.config.supervisor import AnthropicProvider, BudgetsConfig, CostConfig, OpenAIProvider, ProvidersConfig
from halswarm.cost.budgets import (
    BudgetNotice,
    Notified,
    TodaySpend,
    budget_statuses,
    decide,
    today_spend,
    unmapped_budget_warnings,
)
from halswarm.cost.model import BudgetStatus, Coverage
from tests.cost.support import bucket, covered, days

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

    def tick(self, today_spend: TodaySpend, day: dt.date = DAY, *, queued: bool = True) -> list[BudgetNotice]:
        notified = {k: n for k, v in self.state.items() if (n := Notified.decode(v)) is not None}
        notices = decide(self.config, today_spend, day, notified)
        if queued:  # the poller records an event as sent only once it is queued
            for notice in notices:
                before = Notified.decode(self.state.get(notice.scope.key, ""))
                self.state[notice.scope.key] = notice.sent(before).encode()
            self.events += [(notice.event_type, notice.scope.label) for notice in notices]
        return notices


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


def test_an_event_that_could_not_be_queued_is_raised_again() -> None:
    b = Budgets()
    assert [n.level for n in b.tick(spend("120"), queued=False)] == ["exceeded"]
    assert b.state == {}  # nothing recorded as sent
    b.tick(spend("120"))
    b.tick(spend("130"))
    assert b.events == [("cost.budget_exceeded", "fleet")]


def test_without_budgets_nothing_happens() -> None:
    assert decide(BudgetsConfig(), spend("1000000"), DAY, {}) == []


def test_event_data_names_scope_day_limit_spend_and_percent() -> None:
    notices = decide(CONFIG, spend("85.1234567", alpha="10.5"), DAY, {})
    data = {n.scope.label: (n.event_type, n.data()) for n in notices}
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


def test_today_spend_takes_per_provider_the_larger_of_bill_and_estimate() -> None:
    buckets = [
        bucket(DAY, "4.00"),  # anthropic covered: the bill...
        bucket(DAY, "3.00", source="estimate"),  # ...is larger than opencode's estimate
        bucket(DAY, "2.00", provider="openai", model="gpt-5", source="estimate"),  # openai not configured
        bucket(DAY, "50.00", provider="openai", model="gpt-5", project="beta"),  # ...so its rows count nowhere
    ]
    s = today_spend(buckets, covered(DAY, DAY, "anthropic"))
    assert s.fleet == Decimal("6.00")
    assert s.projects == {"alpha": Decimal("6.00")}


def test_a_lagging_bill_does_not_hide_todays_estimates_from_budgets() -> None:
    # Today is covered (a poll succeeded) but the bill so far is lower than the estimate.
    buckets = [bucket(DAY, "1.00"), bucket(DAY, "9.00", source="estimate")]
    s = today_spend(buckets, covered(DAY, DAY, "anthropic"))
    assert (s.fleet, s.projects) == (Decimal("9.00"), {"alpha": Decimal("9.00")})


def test_a_failing_provider_counts_its_estimates() -> None:
    # Configured, never polled successfully: no coverage, so the estimates count (B1).
    buckets = [bucket(DAY, "7.00", source="estimate"), bucket(DAY - days(1), "1.00", source="estimate")]
    s = today_spend([b for b in buckets if b.day == DAY], Coverage({"anthropic": None}))
    assert s.fleet == Decimal("7.00")


def test_a_project_budget_sees_its_estimates_when_the_bill_is_not_attributed_to_it() -> None:
    # Anthropic's workspace of alpha is not mapped: those rows carry the raw id (B2).
    buckets = [
        bucket(DAY, "10.00", project="wrkspc_01unmapped"),
        bucket(DAY, "9.00", source="estimate"),  # alpha's sessions
        bucket(DAY, "2.00", project="beta", source="estimate"),
        bucket(DAY, "1.50", project="beta"),  # beta is mapped, and its bill is lower so far
    ]
    s = today_spend(buckets, covered(DAY, DAY, "anthropic"))
    assert s.projects == {"alpha": Decimal("9.00"), "beta": Decimal("2.00"), "wrkspc_01unmapped": Decimal("10.00")}
    assert s.fleet == Decimal("11.50")  # the whole bill beats the whole estimate (11.00)
    b = Budgets()
    b.tick(s)
    assert b.events == [("cost.budget_warning", "alpha")]  # 90 % of alpha's $10


def test_a_plain_set_of_provider_names_covers_every_day() -> None:
    # What older callers pass: the named providers' bills count on any day.
    buckets = [bucket(DAY, "4.00"), bucket(DAY, "1.00", source="estimate")]
    assert today_spend(buckets, {"anthropic"}).fleet == Decimal("4.00")
    assert today_spend(buckets, set()).fleet == Decimal("1.00")


def test_project_budgets_warn_about_providers_whose_ids_map_to_no_budgeted_project() -> None:
    providers = ProvidersConfig(
        anthropic=AnthropicProvider(admin_api_key="k", workspaces={"wrkspc_1": "alpha"}),
        openai=OpenAIProvider(org_api_key="k"),
    )
    cost = CostConfig(providers=providers)
    assert unmapped_budget_warnings(cost, BudgetsConfig(daily_usd=5.0)) == []  # no project budgets
    assert unmapped_budget_warnings(cost, CONFIG) == [
        "budgets.projects: no cost.providers.anthropic.workspaces entry maps to beta; that budget counts "
        "opencode's estimate of anthropic spend, never anthropic's bill",
        "budgets.projects: no cost.providers.openai.projects entry maps to alpha, beta; those budgets count "
        "opencode's estimate of openai spend, never openai's bill",
    ]
    assert unmapped_budget_warnings(CostConfig(), CONFIG) == []  # no provider configured


def test_statuses_for_reports() -> None:
    statuses = budget_statuses(CONFIG, spend("25", alpha="2.5"))
    assert statuses == [
        BudgetStatus("fleet", 100.0, 25.0, 25.0),
        BudgetStatus("alpha", 10.0, 2.5, 25.0),
        BudgetStatus("beta", 20.0, 0.0, 0.0),
    ]
