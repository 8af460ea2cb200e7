"""Cost storage on a real SQLite file: re-fetching a provider's days replaces them (never
double counted, estimates untouched), money round-trips exactly, estimate deltas add up,
poll, coverage and budget state persist across reopen, values SQLite cannot hold are a
StoreError (never an OverflowError), settled bookkeeping can be pruned."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.cost.estimates import SessionCost
from halswarm.cost.model import CostBucket
from halswarm.store import Store, StoreError, open_store
from tests.cost.support import bucket as b
from tests.db_rows import file_rows_in_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

NOW = "2026-03-02T12:00:00.000000Z"
D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)


def total(buckets: list[CostBucket], source: str = "provider", provider: str | None = None) -> Decimal:
    return sum(
        (x.cost_usd for x in buckets if x.source == source and (provider is None or x.provider == provider)),
        Decimal(0),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with trio.fail_after(10):
        async with open_store(tmp_path / "s.db") as s:
            yield s


async def test_polling_the_same_period_twice_changes_nothing(store: Store) -> None:
    fetched = [b(D1, "1.25", input_tokens=100), b(D2, "2.50", input_tokens=200), b(D2, "0.75", project="beta")]
    for _ in range(3):
        rows = await store.replace_provider_costs("anthropic", D1, D3, fetched, NOW)
        assert rows == 3
    stored = await store.cost_buckets(D1, D3)
    assert sorted(stored, key=repr) == sorted(fetched, key=repr)
    assert total(stored) == Decimal("4.50")


async def test_a_refetch_replaces_settled_days_and_drops_vanished_rows(store: Store) -> None:
    await store.replace_provider_costs("anthropic", D1, D3, [b(D1, "1"), b(D2, "2"), b(D2, "9", model="old")], NOW)
    # Day 2 settled: a higher figure, and the "old" model row is gone from the provider's answer.
    await store.replace_provider_costs("anthropic", D2, D3, [b(D2, "2.40")], NOW)
    stored = await store.cost_buckets(D1, D2)
    assert {(x.day, x.model): x.cost_usd for x in stored} == {
        (D1, "claude-sonnet-4"): Decimal(1),  # outside the refetched range: kept
        (D2, "claude-sonnet-4"): Decimal("2.40"),
    }


async def test_replacing_one_provider_touches_neither_the_other_nor_estimates(store: Store) -> None:
    await store.replace_provider_costs("openai", D1, D3, [b(D1, "5", provider="openai", model="gpt-5")], NOW)
    await store.add_cost_estimates([b(D1, "0.5", source="estimate")], {"ses-1": SessionCost(500_000_000)}, NOW)
    await store.replace_provider_costs("anthropic", D1, D3, [], NOW)  # anthropic had nothing
    stored = await store.cost_buckets(D1, D2)
    assert total(stored, provider="openai") == Decimal(5)
    assert total(stored, source="estimate") == Decimal("0.5")


async def test_money_round_trips_exactly_to_the_nano_dollar(store: Store) -> None:
    amounts = ["1.2378912", "0.000000001", "123456.789012345", "0.0000000004"]  # the last one is below a nano
    await store.replace_provider_costs(
        "anthropic", D1, D2, [b(D1, usd, model=f"m{i}") for i, usd in enumerate(amounts)], NOW
    )
    stored = {x.model: x.cost_usd for x in await store.cost_buckets(D1, D1)}
    assert stored == {
        "m0": Decimal("1.2378912"),
        "m1": Decimal("0.000000001"),
        "m2": Decimal("123456.789012345"),
        "m3": Decimal(0),
    }


async def test_duplicate_keys_in_one_fetch_add_up(store: Store) -> None:
    await store.replace_provider_costs("anthropic", D1, D2, [b(D1, "1.10"), b(D1, "0.15")], NOW)
    [row] = await store.cost_buckets(D1, D1)
    assert row.cost_usd == Decimal("1.25")


@pytest.mark.parametrize(
    "bad",
    [b(D3, "1"), b(D1, "1", provider="openai"), b(D1, "1", source="estimate")],
    ids=["outside-range", "other-provider", "estimate"],
)
async def test_a_foreign_bucket_writes_nothing(store: Store, bad: CostBucket) -> None:
    await store.replace_provider_costs("anthropic", D1, D2, [b(D1, "7")], NOW)
    with pytest.raises(StoreError, match="outside the replaced range"):
        await store.replace_provider_costs("anthropic", D1, D3, [b(D1, "1"), bad], NOW)
    [row] = await store.cost_buckets(D1, D3)
    assert row.cost_usd == Decimal(7)


async def test_estimate_deltas_add_and_bookkeeping_commits_with_them(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with trio.fail_after(10):
        async with open_store(path) as store:
            await store.add_cost_estimates(
                [b(D2, "0.25", source="estimate", input_tokens=10)], {"ses-1": SessionCost(250_000_000, 10)}, NOW
            )
            await store.add_cost_estimates(
                [b(D2, "0.50", source="estimate", input_tokens=5)], {"ses-1": SessionCost(750_000_000, 15)}, NOW
            )
            await store.put_cost_state({"budget:fleet": '{"day": "2026-03-02", "levels": ["warning"]}'}, NOW)
        async with open_store(path) as store:  # reopen: migrations are idempotent, data kept
            [row] = await store.cost_buckets(D2, D2)
            assert (row.cost_usd, row.input_tokens) == (Decimal("0.75"), 15)
            assert await store.load_estimate_seen() == {"ses-1": SessionCost(750_000_000, 15)}
            assert await store.cost_state("budget:") == {"budget:fleet": '{"day": "2026-03-02", "levels": ["warning"]}'}


async def test_estimates_refuse_provider_buckets(store: Store) -> None:
    with pytest.raises(StoreError, match="not an estimate bucket"):
        await store.add_cost_estimates([b(D2, "1")], {"ses-1": SessionCost(1)}, NOW)
    assert await store.cost_buckets(D2, D2) == []
    assert await store.load_estimate_seen() == {}


async def test_a_successful_replace_records_the_poll(store: Store) -> None:
    assert await store.cost_state("poll:") == {}
    await store.replace_provider_costs("anthropic", D1, D2, [], NOW)
    await store.put_cost_state({"pollster": "not a poll entry"}, NOW)
    assert await store.cost_state("poll:") == {"poll:anthropic": NOW}


async def test_each_part_records_its_coverage_and_only_the_last_one_the_poll(store: Store) -> None:
    await store.replace_provider_costs("openai", D1, D2, [], NOW, covered=(D1, D1), complete=False)
    assert await store.cost_state("poll:") == {}
    assert await store.cost_state("coverage:") == {"coverage:openai": "2026-03-01..2026-03-01"}
    later = "2026-03-02T12:05:00.000000Z"
    await store.replace_provider_costs("openai", D2, D3, [], later, covered=(D1, D2), complete=True)
    assert await store.cost_state("poll:") == {"poll:openai": later}
    assert await store.cost_state("coverage:") == {"coverage:openai": "2026-03-01..2026-03-02"}


@pytest.mark.parametrize(
    "bad",
    [b(D1, "2000000000"), CostBucket(D1, "anthropic", "m", "alpha", "provider", input_tokens=2**70)],
    ids=["beyond-a-billion-dollars", "beyond-64-bit-tokens"],
)
async def test_a_value_sqlite_cannot_hold_is_a_store_error_and_writes_nothing(store: Store, bad: CostBucket) -> None:
    await store.replace_provider_costs("anthropic", D1, D2, [b(D1, "7")], NOW)
    with pytest.raises(StoreError, match="database write rejected a value"):
        await store.replace_provider_costs("anthropic", D1, D2, [bad], NOW)
    assert [row.cost_usd for row in await store.cost_buckets(D1, D1)] == [Decimal(7)]
    assert store.healthy  # the database is fine: only that value was refused


async def test_settled_sessions_bookkeeping_can_be_pruned(store: Store) -> None:
    seen = {"a": SessionCost(1), "b": SessionCost(2), "c": SessionCost(3)}
    await store.add_cost_estimates([], seen, NOW)
    assert await store.prune_estimate_sessions(["a", "c", "never-booked"]) == 2
    assert await store.load_estimate_seen() == {"b": SessionCost(2)}


async def test_money_is_stored_as_integer_nano_dollars(store: Store) -> None:
    await store.replace_provider_costs("anthropic", D1, D2, [b(D1, "1.5")], NOW)

    rows = await file_rows_in_thread(store.path, "SELECT cost_nanos, typeof(cost_nanos), source FROM cost_daily")
    assert rows == [(1_500_000_000, "integer", "provider")]
