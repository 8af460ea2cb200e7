"""Store chaos: the supervisor's database hits a full disk, or gets slow, at random points
while events stream. The supervisor is a real process started through
:mod:`tests.chaos.faulty_supervisor` (hal-supervisor's own CLI plus a fault switch on its
store's writer connection). Afterwards every event is stored exactly once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.testing import wait_until
from tests.chaos.cluster import open_chaos_cluster, scale, seeded_rng

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_full_disk_stalls_visibly_then_recovers_without_loss(tmp_path: Path) -> None:
    sc = scale()
    rng = seeded_rng("disk-full")
    with trio.fail_after(900 if sc.long else 80):
        async with open_chaos_cluster(tmp_path, sc, rng, store_faults=True) as cluster:
            await cluster.wait_online(within=20)
            end = trio.current_time() + sc.fault_seconds
            episodes = 0
            while episodes == 0 or (sc.long and trio.current_time() < end):
                await trio.sleep(rng.uniform(0.2, 1.0))
                hold = rng.uniform(1.5, 3.0) if not sc.long else rng.uniform(1.5, 20.0)
                full_at = trio.current_time()
                cluster.set_store_faults(disk_full=True)
                seen: dict[str, str] = {}

                async def stalled(seen: dict[str, str] = seen) -> bool:
                    code, components = await cluster.readyz()
                    seen.update(components)
                    return code == 503 and components.get("pipeline", "").startswith("stalled for")

                # The stall shows in /readyz (503, the pipeline and the database say why).
                await wait_until(stalled, within=15, interval=0.1, what="/readyz reports the stall")
                assert "database or disk is full" in seen["database"], seen
                await trio.sleep_until(full_at + hold)
                cluster.set_store_faults(disk_full=False)
                episodes += 1
            # Space is back: nothing to do but wait (the pipeline retries by itself,
            # within its 15 s maximum backoff).
            await cluster.assert_recovers(within=120 if sc.long else 40)

            sup_log = cluster.log("supervisor")
            assert sup_log.count("chaos: store fault: disk full on") == episodes
            assert "cannot store events, retrying in" in sup_log
            assert "database or disk is full" in sup_log
            assert "event storage recovered" in sup_log
            metrics = await cluster.metrics()
            assert metrics["hal_o_swarm_ingest_errors_total"] >= episodes
            codes = await cluster.shut_down()
            await cluster.assert_all_delivered()
    cluster.assert_no_crash(codes)
    cluster.assert_memory_bounded()


async def test_slow_disk_keeps_nodes_online_and_loses_nothing(tmp_path: Path) -> None:
    sc = scale()
    rng = seeded_rng("slow-disk")
    with trio.fail_after(900 if sc.long else 80):
        async with open_chaos_cluster(tmp_path, sc, rng, store_faults=True) as cluster:
            await cluster.wait_online(within=20)
            before = await cluster.metrics()
            end = trio.current_time() + sc.fault_seconds
            while True:
                await trio.sleep(rng.uniform(0.1, 0.8))
                # Up to well past a heartbeat interval per commit (the heartbeat timeout
                # is 1.5 s): congestion, not death.
                delay_ms = rng.uniform(100, 1200 if sc.long else 600)
                cluster.set_store_faults(commit_delay_ms=delay_ms)
                stored = sum(c[0] for c in (await cluster.counts()).values())
                await trio.sleep(rng.uniform(1.0, 2.5 if not sc.long else 15.0))
                # Ingestion is slower, not stopped.
                assert sum(c[0] for c in (await cluster.counts()).values()) > stored or all(
                    c[3] >= sc.events for c in (await cluster.counts()).values()
                )
                cluster.set_store_faults(commit_delay_ms=0)
                if trio.current_time() >= end or not sc.long:
                    break
            await cluster.assert_recovers(within=120 if sc.long else 30)

            assert "chaos: store fault: commit delay" in cluster.log("supervisor")
            # A slow store is backpressure: the heartbeat monitor must not count the
            # agents' silence against them, so no node went offline.
            after = await cluster.metrics()
            offline = {k: v for k, v in after.items() if k.startswith("hal_o_swarm_node_offline_transitions_total")}
            assert sum(offline.values()) == 0, offline
            assert after["hal_o_swarm_ingest_errors_total"] == before["hal_o_swarm_ingest_errors_total"]
            codes = await cluster.shut_down()
            await cluster.assert_all_delivered()
    cluster.assert_no_crash(codes)
    cluster.assert_memory_bounded()
