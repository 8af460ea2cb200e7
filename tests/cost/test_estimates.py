"""opencode estimates: growth booked once per session (exactly, to the nano-dollar), into
today's bucket of (provider, model, project); stale figures ignored; first-seen sessions
on their own day; bookkeeping persisted so a restart adds nothing twice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from halswarm.cost.estimates import EstimateBook, SessionCost, estimate_update, is_settled, split_model
from halswarm.models import Session, Tokens
from halswarm.store import open_store

if TYPE_CHECKING:
    from pathlib import Path

TODAY = dt.date(2026, 3, 2)
NOW = "2026-03-02T12:00:00.000000Z"
NO_TOKENS = Tokens()


def session(
    sid: str = "ses-1",
    cost: float = 0.0,
    *,
    model: str = "anthropic/claude-sonnet-4",
    project: str = "alpha",
    tokens: Tokens = NO_TOKENS,
    last_activity: str | None = "2026-03-02T11:59:00.000000Z",
) -> Session:
    return Session(
        id=sid,
        node_id="node-1",
        project=project,
        model=model,
        cost_usd=cost,
        tokens=tokens,
        last_activity=last_activity,
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("anthropic/claude-sonnet-4", ("anthropic", "claude-sonnet-4")),
        ("openai/gpt-5", ("openai", "gpt-5")),
        ("openrouter/anthropic/claude-3.5-sonnet", ("openrouter", "anthropic/claude-3.5-sonnet")),
        ("claude-opus-4", ("anthropic", "claude-opus-4")),
        ("gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
        ("o3-mini", ("openai", "o3-mini")),
        ("llama-3-70b", ("", "llama-3-70b")),
        ("", ("", "")),
    ],
)
def test_split_model(model: str, expected: tuple[str, str]) -> None:
    assert split_model(model) == expected


def test_growth_since_last_seen_goes_to_todays_bucket() -> None:
    seen = {"ses-1": SessionCost.of(session(cost=1.25, tokens=Tokens(input=100, output=10)))}
    grown = session(cost=1.75, tokens=Tokens(input=160, output=25, reasoning=5, cache_read=7, cache_write=3))
    update = estimate_update([grown], seen, TODAY)
    [b] = update.buckets
    assert (b.day, b.provider, b.model, b.project, b.source) == (
        TODAY,
        "anthropic",
        "claude-sonnet-4",
        "alpha",
        "estimate",
    )
    assert b.cost_usd == Decimal("0.5")
    # reasoning counts as output
    assert (b.input_tokens, b.output_tokens, b.cache_read_tokens, b.cache_write_tokens) == (60, 20, 7, 3)
    assert update.seen["ses-1"] == SessionCost.of(grown)


def test_unchanged_sessions_book_nothing() -> None:
    s = session(cost=2.0)
    update = estimate_update([s], {"ses-1": SessionCost.of(s)}, TODAY)
    assert (update.buckets, update.seen) == ([], {})


def test_sessions_of_one_key_merge_and_keys_stay_apart() -> None:
    sessions = [
        session("a", 0.1),
        session("b", 0.2),
        session("c", 1.0, project="beta"),
        session("d", 2.0, model="openai/gpt-5"),
    ]
    update = estimate_update(sessions, {}, TODAY)
    got = {(b.provider, b.model, b.project): b.cost_usd for b in update.buckets}
    assert got == {
        ("anthropic", "claude-sonnet-4", "alpha"): Decimal("0.3"),  # exact, not 0.30000000000000004
        ("anthropic", "claude-sonnet-4", "beta"): Decimal("1"),
        ("openai", "gpt-5", "alpha"): Decimal("2"),
    }


def test_a_stale_lower_figure_books_nothing_and_is_not_counted_twice() -> None:
    seen: dict[str, SessionCost] = {}
    booked = Decimal(0)
    for cost in (1.0, 3.0, 2.0, 3.5):  # 2.0: an older snapshot arriving late
        update = estimate_update([session(cost=cost)], seen, TODAY)
        seen.update(update.seen)
        booked += sum((b.cost_usd for b in update.buckets), Decimal(0))
    assert booked == Decimal("3.5")


def test_many_small_steps_add_up_exactly_to_the_final_cost() -> None:
    seen: dict[str, SessionCost] = {}
    booked = Decimal(0)
    cost = 0.0
    for _ in range(1000):
        cost = round(cost + 0.000123, 6)  # the simulator's arithmetic
        update = estimate_update([session(cost=cost)], seen, TODAY)
        seen.update(update.seen)
        booked += sum((b.cost_usd for b in update.buckets), Decimal(0))
    assert booked == Decimal(repr(cost)) == Decimal("0.123")


def test_a_session_seen_first_books_on_its_last_activity_day() -> None:
    old = session("old", 7.0, last_activity="2026-02-20T08:00:00.000000Z")
    skewed = session("future", 1.0, last_activity="2026-03-05T08:00:00.000000Z")  # node clock ahead
    unknown = session("none", 2.0, last_activity=None)
    update = estimate_update([old, skewed, unknown], {}, TODAY)
    assert {(b.day, b.cost_usd) for b in update.buckets} == {
        (dt.date(2026, 2, 20), Decimal(7)),
        (TODAY, Decimal(3)),
    }
    # Once booked, growth goes to the day of the activity that brought it (today, live)...
    grown = estimate_update([session("old", 7.5, last_activity="2026-03-02T09:00:00.000000Z")], update.seen, TODAY)
    assert [(b.day, b.cost_usd) for b in grown.buckets] == [(TODAY, Decimal("0.5"))]


def test_growth_seen_only_after_a_supervisor_outage_goes_to_the_day_it_happened() -> None:
    booked = estimate_update([session("s", 1.0, last_activity="2026-02-26T10:00:00.000000Z")], {}, TODAY).seen
    # The supervisor was down from the 26th; the session grew on the 27th and went quiet.
    later = session("s", 3.0, last_activity="2026-02-27T18:00:00.000000Z")
    update = estimate_update([later], booked, TODAY)
    assert [(b.day, b.cost_usd) for b in update.buckets] == [(dt.date(2026, 2, 27), Decimal(2))]


def test_absurd_figures_are_rejected_naming_the_session_and_settled_sessions_skipped() -> None:
    absurd = session("absurd", 1e10)
    tokens = session("tokens", 1.0, tokens=Tokens(input=10**13))
    settled = attrs.evolve(session("done", 5.0, last_activity="2026-01-20T10:00:00.000000Z"), status="completed")
    fine = session("fine", 1.0)
    update = estimate_update([absurd, tokens, settled, fine], {}, TODAY)
    assert set(update.seen) == {"fine"}
    assert update.rejected == {
        "absurd": "cost_usd 10000000000.0 is beyond $1,000,000",
        "tokens": f"a token count is beyond 1,000,000,000,000 ({tokens.tokens})",
    }
    assert is_settled(settled, TODAY)
    assert not is_settled(attrs.evolve(settled, status="idle"), TODAY)  # may still grow


def test_corrupt_figures_count_as_zero() -> None:
    update = estimate_update([session("nan", float("nan")), session("neg", -3.0)], {}, TODAY)
    assert update.buckets == []


async def test_book_persists_so_a_restart_adds_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with trio.fail_after(10):
        async with open_store(path) as store:
            book = await EstimateBook.load(store)
            await book.step([session("a", 1.0), session("b", 0.5, project="beta")], TODAY, NOW)
            await book.step([session("a", 1.5), session("b", 0.5, project="beta")], TODAY, NOW)
        async with open_store(path) as store:  # the supervisor restarted
            book = await EstimateBook.load(store)
            assert book.booked("a") == SessionCost.of(session("a", 1.5))
            added = await book.step([session("a", 1.5), session("b", 0.75, project="beta")], TODAY, NOW)
            assert [(b.project, b.cost_usd) for b in added] == [("beta", Decimal("0.25"))]
            rows = {(b.project, b.source): b.cost_usd for b in await store.cost_buckets(TODAY, TODAY)}
    assert rows == {("alpha", "estimate"): Decimal("1.5"), ("beta", "estimate"): Decimal("0.75")}
