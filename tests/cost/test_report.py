"""Cost reports (pure): period windows, the totals rule, the gap, every day listed, groupings,
per-provider model lines, and money rounded only at the end."""

from __future__ import annotations

import datetime as dt

import pytest

from halswarm.cost.model import (
    BudgetStatus,
    CostBucket,
    CostGrouping,
    CostPeriod,
    CostReport,
    Coverage,
    SourceStatus,
    TokenCounts,
)
from halswarm.cost.report import CostWindow, PeriodError, build_report, parse_window, period_window
from tests.cost.support import bucket, covered, days

TODAY = dt.date(2026, 3, 2)
#: Anthropic configured and polled successfully for the last 40 days, today included.
ANTHROPIC = covered(TODAY - days(40), TODAY, "anthropic")


def days_ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


# ---- periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "first", "days"),
    [("today", TODAY, 1), ("week", dt.date(2026, 2, 24), 7), ("month", dt.date(2026, 2, 1), 30)],
)
def test_named_periods_end_today_and_cover_whole_days(period: str, first: dt.date, days: int) -> None:
    window = parse_window(period, None, None, TODAY)
    assert (window.first, window.last, window.days, window.period) == (first, TODAY, days, period)


def test_no_period_means_today_and_month_crosses_the_year() -> None:
    assert parse_window(None, None, None, TODAY) == CostWindow(TODAY, TODAY, "today")
    window = period_window("month", dt.date(2026, 1, 10))
    assert (window.first, window.last) == (dt.date(2025, 12, 12), dt.date(2026, 1, 10))


def test_from_to_is_inclusive_and_may_span_366_days() -> None:
    window = parse_window(None, "2025-03-03", "2026-03-03", TODAY)
    assert (window.days, window.period) == (366, None)
    one = parse_window(None, "2026-02-28", "2026-02-28", TODAY)
    assert one.days == 1


@pytest.mark.parametrize(
    ("period", "from_", "to", "param", "words"),
    [
        ("year", None, None, "period", "period must be one of today, week, month, got 'year'"),
        ("week", "2026-01-01", "2026-01-02", "period", "either period or from/to, not both"),
        (None, "2026-01-01", None, "to", "to is required with from"),
        (None, None, "2026-01-01", "from", "from is required with to"),
        (None, "2026/01/01", "2026-01-02", "from", "from must be a date like 2026-01-31"),
        (None, "2026-01-01", "20260102", "to", "to must be a date like"),
        (None, "2026-02-30", "2026-03-01", "from", "from is not a valid date: '2026-02-30'"),
        (None, "2026-01-02", "2026-01-01", "from", "from (2026-01-02) must not be after to (2026-01-01)"),
        (None, "2025-01-01", "2026-01-02", "to", "at most 366 days, got 367"),
    ],
)
def test_bad_periods_name_the_parameter(
    period: str | None, from_: str | None, to: str | None, param: str, words: str
) -> None:
    with pytest.raises(PeriodError) as info:
        parse_window(period, from_, to, TODAY)
    assert info.value.param == param
    assert words in str(info.value)


# ---- the totals rule -----------------------------------------------------------------------


def report(
    buckets: list[CostBucket],
    *,
    period: CostPeriod = "week",
    group_by: CostGrouping = "project",
    coverage: Coverage = ANTHROPIC,
) -> CostReport:
    window = parse_window(period, None, None, TODAY)
    return build_report(
        buckets,
        window,
        group_by=group_by,
        coverage=coverage,
        sources=[SourceStatus("anthropic", "ok", "2026-03-02T10:00:00.000000Z")],
        budgets=[BudgetStatus("fleet", 10.0, 1.0, 10.0)],
    )


def test_polled_provider_counts_its_bill_others_count_estimates_and_the_gap_shows() -> None:
    buckets = [
        bucket(days_ago(1), "10.00"),  # anthropic bill
        bucket(days_ago(1), "8.50", source="estimate"),  # opencode's view of the same spend
        bucket(days_ago(1), "3.25", provider="openai", model="gpt-5", source="estimate"),  # not polled
        bucket(days_ago(2), "99.00", provider="openai", model="gpt-5"),  # stale rows of an unpolled provider
    ]
    r = report(buckets)
    assert r.total_usd == 13.25
    assert r.bill_usd == 10.0  # the part of the total that is a provider's own data
    assert r.estimate_usd == 11.75
    assert r.gap_usd == 1.5
    assert r.daily_average_usd == round(13.25 / 7, 6)


def test_with_no_provider_polled_the_estimates_are_the_total() -> None:
    buckets = [bucket(TODAY, "10.00"), bucket(TODAY, "4.00", source="estimate")]
    r = report(buckets, period="today", coverage=Coverage())
    assert (r.total_usd, r.bill_usd, r.estimate_usd, r.gap_usd) == (4.0, 0.0, 4.0, 0.0)


def test_a_configured_provider_whose_polls_fail_keeps_its_estimates_counting() -> None:
    # Anthropic is configured but no poll ever succeeded (a bad key, an outage): its
    # estimates are the total, not $0 (review finding B1).
    buckets = [bucket(TODAY, "2.00", source="estimate"), bucket(days_ago(3), "1.25", source="estimate")]
    never = report(buckets, coverage=Coverage({"anthropic": None}))
    assert (never.total_usd, never.bill_usd, never.estimate_usd, never.gap_usd) == (3.25, 0.0, 3.25, 0.0)
    assert [p.provider for p in never.providers] == ["anthropic"]


def test_days_outside_the_coverage_count_estimates_and_inside_count_the_bill() -> None:
    # Polled successfully up to two days ago, failing since: the bill counts up to then,
    # opencode's estimate after it; the provider's own rows outside the span count nowhere.
    coverage = covered(days_ago(6), days_ago(2), "anthropic")
    buckets = [
        bucket(days_ago(7), "50.00"),  # before the coverage (left over): ignored
        bucket(days_ago(7), "0.40", source="estimate"),  # ...so the estimate counts there
        bucket(days_ago(2), "3.00"),  # covered: the bill
        bucket(days_ago(2), "2.50", source="estimate"),
        bucket(days_ago(1), "1.75", source="estimate"),  # not covered yet: the estimate
        bucket(TODAY, "0.50", source="estimate"),
    ]
    r = report(buckets, period="week", group_by="day", coverage=coverage)
    assert [(d.date, d.cost_usd) for d in r.daily][-3:] == [
        ("2026-02-28", 3.0),
        ("2026-03-01", 1.75),
        ("2026-03-02", 0.5),
    ]
    assert (r.total_usd, r.bill_usd, r.estimate_usd) == (5.25, 3.0, 4.75)
    month = report(buckets, period="month", coverage=coverage)
    assert (month.total_usd, month.bill_usd) == (5.65, 3.0)


def test_a_covered_day_whose_bill_lags_has_a_negative_gap() -> None:
    # A poll today succeeded but the provider has not billed today's usage yet.
    r = report([bucket(TODAY, "2.00", source="estimate")], period="today")
    assert (r.total_usd, r.bill_usd, r.estimate_usd, r.gap_usd) == (0.0, 0.0, 2.0, -2.0)


def test_daily_lists_every_day_of_the_period_with_zeros() -> None:
    r = report([bucket(days_ago(6), "1.00"), bucket(TODAY, "2.00", source="estimate")])
    daily = [(d.date, d.cost_usd, d.estimate_usd) for d in r.daily]
    assert daily == [
        ("2026-02-24", 1.0, 0.0),
        ("2026-02-25", 0.0, 0.0),
        ("2026-02-26", 0.0, 0.0),
        ("2026-02-27", 0.0, 0.0),
        ("2026-02-28", 0.0, 0.0),
        ("2026-03-01", 0.0, 0.0),
        ("2026-03-02", 0.0, 2.0),
    ]


def test_buckets_outside_the_period_are_ignored() -> None:
    r = report([bucket(days_ago(7), "50.00"), bucket(TODAY + dt.timedelta(days=1), "50.00"), bucket(TODAY, "1.00")])
    assert r.total_usd == 1.0


def test_an_empty_period_is_all_zeros() -> None:
    r = report([], period="month")
    assert (r.total_usd, r.estimate_usd, r.gap_usd, r.daily_average_usd) == (0.0, 0.0, 0.0, 0.0)
    assert len(r.daily) == 30
    assert r.groups == []
    assert [p.provider for p in r.providers] == ["anthropic"]  # polled, $0


# ---- groupings and provider lines ----------------------------------------------------------


MIXED = [
    bucket(days_ago(1), "6.00", project="alpha", input_tokens=1000, output_tokens=500),
    bucket(days_ago(1), "5.00", project="alpha", source="estimate", input_tokens=900, output_tokens=450),
    bucket(days_ago(2), "2.00", model="claude-haiku-4", project="beta", input_tokens=400, output_tokens=200),
    bucket(
        days_ago(2),
        "1.50",
        model="claude-haiku-4",
        project="beta",
        source="estimate",
        input_tokens=300,
        output_tokens=150,
    ),
    bucket(
        TODAY,
        "3.00",
        provider="openai",
        model="gpt-5",
        project="beta",
        source="estimate",
        input_tokens=200,
        output_tokens=100,
    ),
]


def test_group_by_project_shows_cost_by_the_rule_and_the_estimate_beside_it() -> None:
    r = report(MIXED, group_by="project")
    lines = [(g.key, g.cost_usd, g.estimate_usd) for g in r.groups]
    assert lines == [("alpha", 6.0, 5.0), ("beta", 5.0, 4.5)]
    alpha = r.groups[0]
    assert alpha.tokens == TokenCounts(input=1000, output=500)  # counted rows only


def test_group_by_model_and_provider() -> None:
    by_model = report(MIXED, group_by="model")
    assert [(g.key, g.cost_usd) for g in by_model.groups] == [
        ("claude-sonnet-4", 6.0),
        ("gpt-5", 3.0),
        ("claude-haiku-4", 2.0),
    ]
    by_provider = report(MIXED, group_by="provider")
    assert [(g.key, g.cost_usd, g.estimate_usd) for g in by_provider.groups] == [
        ("anthropic", 8.0, 6.5),
        ("openai", 3.0, 3.0),
    ]


def test_group_by_day_lists_every_day_in_order() -> None:
    r = report(MIXED, group_by="day")
    assert [g.key for g in r.groups] == [d.date for d in r.daily]
    assert [g.cost_usd for g in r.groups][-3:] == [2.0, 6.0, 3.0]


def test_provider_lines_hold_their_models_by_the_same_rule() -> None:
    r = report(MIXED)
    providers = {p.provider: p for p in r.providers}
    anthropic = providers["anthropic"]
    assert anthropic.cost_usd == 8.0
    assert [(m.model, m.cost_usd) for m in anthropic.models] == [("claude-sonnet-4", 6.0), ("claude-haiku-4", 2.0)]
    assert anthropic.tokens == TokenCounts(input=1400, output=700)
    openai = providers["openai"]
    assert [(m.model, m.cost_usd) for m in openai.models] == [("gpt-5", 3.0)]
    assert r.total_usd == sum(p.cost_usd for p in r.providers)


def test_sources_and_budgets_pass_through() -> None:
    r = report(MIXED)
    assert r.sources[0].status == "ok"
    assert r.budgets == [BudgetStatus("fleet", 10.0, 1.0, 10.0)]
    assert (r.start, r.end, r.days, r.group_by, r.period) == ("2026-02-24", "2026-03-02", 7, "project", "week")


def test_money_is_summed_exactly_and_rounded_once() -> None:
    # A thousand rows of $0.0000004: rounding each to micro-dollars first would give $0.
    buckets = [bucket(TODAY, "0.0000004", model=f"m{i}") for i in range(1000)]
    r = report(buckets, period="today", group_by="provider")
    assert r.total_usd == 0.0004
    assert r.groups[0].cost_usd == 0.0004
    # Floats would drift here (0.1 + 0.2 != 0.3); Decimal does not.
    tenth = report([bucket(TODAY, "0.1", model="a"), bucket(TODAY, "0.2", model="b")], period="today")
    assert tenth.total_usd == 0.3
