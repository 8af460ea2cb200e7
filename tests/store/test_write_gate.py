"""The writer's gate: commands overtake queued ingest batches, nothing is lost or stuck."""

from __future__ import annotations

import trio
import trio.testing

from halswarm.store.gate import WriteGate


async def _writer(gate: WriteGate, name: str, urgent: bool, order: list[str], release: trio.Event | None) -> None:
    async with gate.hold(urgent=urgent):
        order.append(name)
        if release is not None:
            await release.wait()


async def test_urgent_writer_overtakes_queued_bulk_writers_but_not_the_running_one() -> None:
    gate = WriteGate()
    order: list[str] = []
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_writer, gate, "ingest-running", False, order, release)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            nursery.start_soon(_writer, gate, f"ingest-{i}", False, order, None)
            await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_writer, gate, "command", True, order, None)
        await trio.testing.wait_all_tasks_blocked()
        assert gate.waiting == 4
        release.set()
    assert order == ["ingest-running", "command", "ingest-0", "ingest-1", "ingest-2"]
    assert gate.waiting == 0


async def test_cancelled_waiter_leaves_the_queue_and_the_gate_stays_usable() -> None:
    gate = WriteGate()
    order: list[str] = []
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_writer, gate, "first", False, order, release)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.01):
            await _writer(gate, "cancelled", True, order, None)
        assert gate.waiting == 0
        release.set()
    async with gate.hold():
        order.append("after")
    assert order == ["first", "after"]


async def test_body_error_releases_the_gate() -> None:
    gate = WriteGate()
    try:
        async with gate.hold(urgent=True):
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    with trio.fail_after(1):
        async with gate.hold():
            pass
