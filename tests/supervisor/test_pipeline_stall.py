"""A full disk under the supervisor: ingestion stalls visibly, nothing is acked or lost,
and everything flows again by itself once space returns."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import trio

from halswarm.testing import open_cluster, wait_until
from tests.sqlite_faults import disk_full

if TYPE_CHECKING:
    from pathlib import Path


def _stored(db: Path, node_id: str) -> tuple[int, int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows, distinct, high = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MAX(seq), 0) FROM events WHERE node_id = ?", (node_id,)
        ).fetchone()
    finally:
        conn.close()
    return int(rows), int(distinct), int(high)


async def test_full_disk_stalls_ingestion_then_recovers_without_loss(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_cluster(tmp_path, agents=1, sessions=3, rate=300.0) as cluster:
            sup = cluster.supervisor
            agent = cluster.agents[0]
            async with disk_full(sup.store._writer, sup.store._write_gate):
                await wait_until(lambda: sup.pipeline.stalled_since is not None, within=10, what="pipeline stalled")
                ready = await cluster.client.get("/readyz")
                assert ready.status_code == 503
                components = ready.json()["components"]
                assert components["pipeline"].startswith("stalled for")
                assert "database or disk is full" in components["database"]
                # Nothing is acknowledged while nothing can be stored: the agent keeps it all.
                stuck_at = sup.pipeline.last_seq("node-1")
                await wait_until(lambda: agent.outbox.last_seq > stuck_at + 300, within=10, what="backlog grows")
                assert agent.outbox.acked_seq <= stuck_at
                entry = sup.registry.get("node-1")
                assert entry is not None
                assert entry.online

            # Space is back: the pipeline retries on its own and the backlog drains.
            await wait_until(lambda: sup.pipeline.stalled_since is None, within=20, what="pipeline recovered")
            target = agent.outbox.last_seq
            await wait_until(lambda: sup.pipeline.last_seq("node-1") >= target, within=20, what="backlog stored")
            assert (await cluster.client.get("/readyz")).status_code == 200
    rows, distinct, high = _stored(tmp_path / "supervisor.db", "node-1")
    assert rows == distinct == high  # seqs 1..high, each exactly once
    assert high >= target


async def test_a_stalled_store_holds_a_bounded_number_of_events_in_memory(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_cluster(tmp_path, agents=2, sessions=3, rate=300.0) as cluster:
            sup = cluster.supervisor
            sup.pipeline.max_queued_events = 1  # one batch at a time, whatever its size
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, int(str(sup.pipeline.queue_stats()["queued"])))
                    await trio.sleep(0.005)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with disk_full(sup.store._writer, sup.store._write_gate):
                    await wait_until(lambda: sup.pipeline.stalled_since is not None, within=10, what="stalled")
                    backlog = [a.outbox.last_seq for a in cluster.agents]
                    await wait_until(
                        lambda: all(a.outbox.last_seq > b + 300 for a, b in zip(cluster.agents, backlog, strict=True)),
                        within=10,
                        what="both backlogs grow",
                    )
                    # Both agents have batches in flight, but the queue holds at most one:
                    # the others wait in their connection (backpressure), not in memory.
                    assert sup.pipeline.congested()
                await wait_until(lambda: sup.pipeline.stalled_since is None, within=20, what="recovered")
                targets = {a.node_id: a.outbox.last_seq for a in cluster.agents}
                await wait_until(
                    lambda: all(sup.pipeline.last_seq(n) >= t for n, t in targets.items()), within=20, what="drained"
                )
                nursery.cancel_scope.cancel()
            assert peak <= 1
    for node_id in targets:
        rows, distinct, high = _stored(tmp_path / "supervisor.db", node_id)
        assert rows == distinct == high >= targets[node_id]
