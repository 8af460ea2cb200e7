"""Process chaos: SIGKILL and SIGSTOP/SIGCONT of the supervisor and of agents at random
points while events stream (SIGSTOP longer than the heartbeat timeout too). Afterwards
every event is stored exactly once, and nothing but the killed processes died."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
import trio

from tests.chaos.cluster import HEARTBEAT_TIMEOUT, ChaosCluster, node_id, open_chaos_cluster, scale, seeded_rng

if TYPE_CHECKING:
    import random
    from pathlib import Path

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def _kill_supervisor(cluster: ChaosCluster, rng: random.Random) -> None:
    await cluster.kill("supervisor")
    await trio.sleep(rng.uniform(0.0, 1.0))  # down for a while: agents retry and back off
    await cluster.start_supervisor()


async def _stop_supervisor(cluster: ChaosCluster, rng: random.Random, *, long: bool) -> None:
    # Long: beyond the agents' watchdog (they drop the link and reconnect once it wakes).
    pause = HEARTBEAT_TIMEOUT + rng.uniform(0.5, 1.5) if long else rng.uniform(0.1, HEARTBEAT_TIMEOUT * 0.5)
    cluster.stop("supervisor")
    await trio.sleep(pause)
    cluster.cont("supervisor")


async def test_supervisor_killed_and_stopped(tmp_path: Path) -> None:
    sc = scale()
    rng = seeded_rng("supervisor-signals")
    with trio.fail_after(900 if sc.long else 80):
        async with open_chaos_cluster(tmp_path, sc, rng) as cluster:
            await cluster.wait_online(within=20)
            end = trio.current_time() + sc.fault_seconds
            kills = 0
            while True:
                await trio.sleep(rng.uniform(0.2, 1.0))
                if rng.random() < 0.5:
                    await _stop_supervisor(cluster, rng, long=False)
                    await trio.sleep(rng.uniform(0.0, 0.5))
                await _kill_supervisor(cluster, rng)
                kills += 1
                await trio.sleep(rng.uniform(0.2, 1.0))
                # The last fault of a run is a long stop, so its traces are in the
                # metrics of the incarnation we check. (Short mode: one round.)
                last = trio.current_time() >= end or not sc.long
                if last:
                    await cluster.wait_online(within=30)  # the long stop hits live links
                await _stop_supervisor(cluster, rng, long=last or rng.random() < 0.5)
                if last:
                    break
            await cluster.assert_recovers(within=120 if sc.long else 30)

            agent_logs = "".join(cluster.log(f"agent-{i}") for i in range(sc.agents))
            # While it was dead (through the proxy a dead port shows as a reset, which the
            # agent reports as one of these, depending on when it hits).
            lost = ("cannot reach supervisor", "supervisor closed the connection", "supervisor did not answer in time")
            assert any(line in agent_logs for line in lost)
            assert "reconnecting in" in agent_logs
            assert "no frame from the supervisor for" in agent_logs  # while it was stopped
            sup_log = cluster.log("supervisor")
            assert sup_log.count("supervisor ready") == kills + 1
            metrics = await cluster.metrics()
            offline = sum(v for k, v in metrics.items() if k.startswith("hal_o_swarm_node_offline_transitions_total"))
            assert offline >= 1  # the long stop, as this incarnation saw it
            codes = await cluster.shut_down()
            await cluster.assert_all_delivered()
    cluster.assert_no_crash(codes)
    cluster.assert_memory_bounded()


async def test_agents_killed_and_stopped(tmp_path: Path) -> None:
    sc = scale()
    rng = seeded_rng("agent-signals")
    with trio.fail_after(900 if sc.long else 80):
        async with open_chaos_cluster(tmp_path, sc, rng) as cluster:
            await cluster.wait_online(within=20)
            end = trio.current_time() + sc.fault_seconds
            stopped_long: set[int] = set()
            killed: set[int] = set()
            while not (killed and stopped_long) or trio.current_time() < end:
                await trio.sleep(rng.uniform(0.1, 0.8))
                victims = rng.sample(range(sc.agents), 2)
                # One agent crashes (and comes back) while another freezes.
                kill, freeze = victims
                long = not stopped_long or rng.random() < 0.5
                pause = HEARTBEAT_TIMEOUT + rng.uniform(0.5, 1.5) if long else rng.uniform(0.1, 0.7)
                cluster.stop(f"agent-{freeze}")
                frozen_at = trio.current_time()
                await trio.sleep(rng.uniform(0.0, 0.5))
                await cluster.kill(f"agent-{kill}")
                killed.add(kill)
                await trio.sleep(rng.uniform(0.0, 1.0))
                await cluster.start_agent(kill)
                await trio.sleep_until(frozen_at + pause)
                cluster.cont(f"agent-{freeze}")
                if long:
                    stopped_long.add(freeze)
            await cluster.assert_recovers(within=120 if sc.long else 30)

            sup_log = cluster.log("supervisor")
            assert "node offline: no frame for" in sup_log  # a frozen agent
            metrics = await cluster.metrics()
            assert metrics['hal_o_swarm_node_offline_transitions_total{reason="heartbeat"}'] >= 1
            for i in killed:
                # A crash closes the link uncleanly (1006): the node stays online unless
                # it is silent past the heartbeat timeout, so only the log shows it.
                assert re.search(rf"agent disconnected node_id={node_id(i)} peer_code=(1006|None)", sup_log)
                assert cluster.log(f"agent-{i}").count("agent starting") >= 2
            codes = await cluster.shut_down()
            await cluster.assert_all_delivered()
    cluster.assert_no_crash(codes)
    cluster.assert_memory_bounded()
