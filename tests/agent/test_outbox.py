"""The agent's outbox on a real SQLite file: gap-free seqs that survive restarts, a stable
instance key, bounded reads, pruning of acked rows only, renumbering after a lost data
dir, ack backpressure, remembered command results and backend state."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from halswarm.agent.outbox import Outbox, open_outbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


def bodies(*names: str) -> list[bytes]:
    return [name.encode() for name in names]


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    with trio.fail_after(10):
        async with open_outbox(tmp_path / "agent") as box:
            yield box


async def test_seqs_are_consecutive_and_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    with trio.fail_after(10):
        async with open_outbox(data_dir) as box:
            assert box.last_seq == 0
            assert await box.append([]) == []
            assert await box.append(bodies("a", "b", "c")) == [1, 2, 3]
            assert await box.append(bodies("d")) == [4]
            assert box.last_seq == 4
        async with open_outbox(data_dir) as box:
            assert box.last_seq == 4
            assert box.pending == 4  # nothing acked yet in this process
            assert await box.append(bodies("e", "f")) == [5, 6]
            rows = await box.read_after(0, limit=100, max_bytes=1 << 20)
    assert rows == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d"), (5, b"e"), (6, b"f")]


async def test_seqs_continue_after_everything_was_acked_and_pruned(tmp_path: Path) -> None:
    # With no rows left, only the stored last_seq keeps numbering from restarting at 1.
    data_dir = tmp_path / "agent"
    with trio.fail_after(10):
        async with open_outbox(data_dir) as box:
            await box.append(bodies("a", "b"))
            box.note_acked(2)
            await box.prune()
            assert await box.count() == 0
        async with open_outbox(data_dir) as box:
            assert box.last_seq == 2
            assert await box.append(bodies("c")) == [3]


async def test_instance_key_is_stable_per_data_dir(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_outbox(tmp_path / "one") as box:
            key = box.instance_key
        async with open_outbox(tmp_path / "one") as box:
            again = box.instance_key
        async with open_outbox(tmp_path / "two") as box:
            other = box.instance_key
    assert len(key) == 32
    assert again == key
    assert other != key


async def test_read_after_respects_limit_and_max_bytes(outbox: Outbox) -> None:
    # Each row costs len(body) + 24 bytes against max_bytes.
    with trio.fail_after(10):
        await outbox.append([b"x" * 76] * 5)  # 100 bytes each
        by_limit = await outbox.read_after(0, limit=2, max_bytes=1 << 20)
        after = await outbox.read_after(2, limit=10, max_bytes=1 << 20)
        exactly_two = await outbox.read_after(0, limit=10, max_bytes=200)
        just_under_three = await outbox.read_after(0, limit=10, max_bytes=299)
        tiny = await outbox.read_after(3, limit=10, max_bytes=1)
        none_left = await outbox.read_after(5, limit=10, max_bytes=1 << 20)
    assert [seq for seq, _ in by_limit] == [1, 2]
    assert [seq for seq, _ in after] == [3, 4, 5]
    assert [seq for seq, _ in exactly_two] == [1, 2]
    assert [seq for seq, _ in just_under_three] == [1, 2]
    # A row bigger than the budget still goes out alone, or the sender would stall forever.
    assert [seq for seq, _ in tiny] == [4]
    assert none_left == []


async def test_prune_deletes_only_acked_rows(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await outbox.append(bodies("a", "b", "c", "d", "e"))
        await outbox.prune()  # nothing acked: nothing deleted
        assert await outbox.count() == 5
        outbox.note_acked(3)
        outbox.note_acked(2)  # acks are cumulative: an older one changes nothing
        assert outbox.acked_seq == 3
        assert outbox.pending == 2
        await outbox.prune()
        rows = await outbox.read_after(0, limit=100, max_bytes=1 << 20)
    assert rows == [(4, b"d"), (5, b"e")]


async def test_renumber_after_moves_pending_rows_past_the_supervisor(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    with trio.fail_after(10):
        async with open_outbox(data_dir) as box:
            await box.append(bodies("a", "b", "c", "d"))
            box.note_acked(1)
            await box.prune()  # rows 2..4 remain
            moved = await box.renumber_after(10)
            assert moved == 9
            assert box.last_seq == 13
            assert box.acked_seq == 10
            assert box.pending == 3
            rows = await box.read_after(0, limit=100, max_bytes=1 << 20)
            assert rows == [(11, b"b"), (12, b"c"), (13, b"d")]
            assert await box.append(bodies("e")) == [14]
        async with open_outbox(data_dir) as box:
            assert box.last_seq == 14


async def test_renumber_after_is_a_no_op_when_not_needed(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await outbox.append(bodies("a", "b", "c"))
        assert await outbox.renumber_after(3) == 0
        assert await outbox.renumber_after(1) == 0
        assert outbox.last_seq == 3
        assert outbox.acked_seq == 0
        rows = await outbox.read_after(0, limit=100, max_bytes=1 << 20)
    assert [seq for seq, _ in rows] == [1, 2, 3]


async def test_renumber_after_with_an_empty_outbox_moves_the_counter(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await outbox.append(bodies("a", "b"))
        outbox.note_acked(2)
        await outbox.prune()
        assert await outbox.renumber_after(7) == 5
        assert outbox.last_seq == 7
        assert outbox.pending == 0
        assert await outbox.append(bodies("c")) == [8]


async def test_wait_pending_below_returns_once_acks_arrive(outbox: Outbox) -> None:
    returned: list[int] = []

    async def producer() -> None:
        await outbox.wait_pending_below(3)
        returned.append(outbox.pending)

    with trio.fail_after(10):
        await outbox.append(bodies("a", "b", "c", "d", "e"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            await trio.testing.wait_all_tasks_blocked()
            outbox.note_acked(1)  # 4 pending: still waiting
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []
            outbox.note_acked(3)  # 2 pending: below 3
        assert returned == [2]
        # Already below the limit: returns at once.
        await outbox.wait_pending_below(3)


async def test_command_results_and_kv_round_trip(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    with trio.fail_after(10):
        async with open_outbox(data_dir) as box:
            assert await box.get_result("k1") is None
            assert await box.get_kv("state") is None
            await box.put_result("k1", b'{"ok":true}', 1.0)
            await box.put_kv("state", b"v1")
            await box.put_kv("state", b"v2")
        async with open_outbox(data_dir) as box:
            assert await box.get_result("k1") == b'{"ok":true}'
            assert await box.get_kv("state") == b"v2"


async def _prefill_results(path: Path, count: int) -> None:
    """Insert *count* old results directly (fast), as a long-running agent would have them."""

    def work() -> None:
        conn = sqlite3.connect(path)
        try:
            with conn:
                conn.executemany(
                    "INSERT INTO command_results (key, result, created) VALUES (?, ?, ?)",
                    [(f"old-{i}", str(i).encode(), float(i)) for i in range(count)],
                )
        finally:
            conn.close()

    await trio.to_thread.run_sync(work)


async def test_only_the_most_recent_2000_results_are_kept(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await _prefill_results(outbox.path, 2000)
        for i in range(3):
            await outbox.put_result(f"new-{i}", b"new", 5000.0 + i)
        new = [await outbox.get_result(f"new-{i}") for i in range(3)]
        oldest = [await outbox.get_result(f"old-{i}") for i in range(4)]
        newest_old = await outbox.get_result("old-1999")
    assert new == [b"new"] * 3
    assert oldest == [None, None, None, b"3"]
    assert newest_old == b"1999"
