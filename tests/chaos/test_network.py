"""Network chaos between agents and supervisor: blackholes (some longer than the heartbeat
timeout), added latency, resets, refused connections and random resets at a rate (every
reset makes an agent reconnect and resend what was not acknowledged: duplicates by
reconnect). Afterwards every event is stored exactly once and everything is back online."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.testing import wait_until
from tests.chaos.cluster import HEARTBEAT_TIMEOUT, ChaosCluster, open_chaos_cluster, scale, seeded_rng

if TYPE_CHECKING:
    import random
    from pathlib import Path

    from tests.chaos.proxy import ChaosProxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

_KINDS = ("blackhole", "delay", "reset", "refuse", "random_resets")
#: Longest a refusal phase waits for its first refused connection (the agents here back
#: off at most 1 s between attempts, so this bound is only reached if they stopped trying).
_REFUSE_MAX = 10.0


def _refused_more(proxy: ChaosProxy, before: int) -> bool:
    return proxy.stats.refused > before


async def _inject(cluster: ChaosCluster, rng: random.Random, seconds: float) -> dict[str, int]:
    """Random network faults for *seconds* (every kind at least once); returns counts."""
    proxy = cluster.proxy
    done = dict.fromkeys(_KINDS, 0)
    first = list(_KINDS)
    rng.shuffle(first)
    end = trio.current_time() + seconds
    while first or trio.current_time() < end:
        kind = first.pop() if first else rng.choice(_KINDS)
        hold = rng.uniform(0.2, 1.5)
        if kind == "blackhole" and not done[kind]:
            # The first blackhole hits established links and outlasts the heartbeat
            # timeout: both sides must notice it and give up on the link.
            await cluster.wait_online(within=30)
            hold = HEARTBEAT_TIMEOUT + 0.7
        print(f"chaos: {kind} for {hold:.2f}s")
        match kind:
            case "blackhole":
                proxy.blackhole(True)
            case "delay":
                proxy.set_delay(rng.uniform(0.02, 0.3))
            case "reset":
                proxy.reset_all()
                hold = 0.0
            case "refuse":
                # Refuse until at least one reconnect attempt was refused (the agents'
                # backoff may outlast a short hold), bounded so the test cannot hang.
                proxy.refuse_for(_REFUSE_MAX)
                proxy.reset_all()
                await wait_until(partial(_refused_more, proxy, proxy.stats.refused), within=_REFUSE_MAX)
            case _:
                proxy.set_reset_rate(rng.uniform(1.0, 5.0))
        await trio.sleep(hold)
        proxy.clear()
        done[kind] += 1
        await trio.sleep(rng.uniform(0.1, 0.6))
    return done


async def test_network_faults_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    sc = scale()
    rng = seeded_rng("network")
    with trio.fail_after(900 if sc.long else 80):
        async with open_chaos_cluster(tmp_path, sc, rng) as cluster:
            await cluster.wait_online(within=20)
            done = await _inject(cluster, rng, sc.fault_seconds)
            print(f"chaos: injected {done}, proxy {cluster.proxy.stats}")
            await cluster.assert_recovers(within=120 if sc.long else 30)

            stats = cluster.proxy.stats
            assert stats.resets > 0
            assert stats.refused > 0
            # Log lines: agents say why they lost the link and that they reconnect.
            agent_logs = "".join(cluster.log(f"agent-{i}") for i in range(sc.agents))
            # The long blackhole: the agents' watchdog gives up on the silent link, unless
            # the supervisor's own timeout closed it first (both fire after 1.5 s).
            link_lost = ("no frame from the supervisor for", "supervisor closed the connection")
            assert any(line in agent_logs for line in link_lost), agent_logs[-3000:]
            assert "reconnecting in" in agent_logs
            assert agent_logs.count("connected to supervisor") > sc.agents
            sup_log = cluster.log("supervisor")
            assert "agent disconnected" in sup_log
            assert "node offline: no frame for" in sup_log  # the long blackhole
            # Metrics: the supervisor counted nodes going offline.
            metrics = await cluster.metrics()
            offline = sum(v for k, v in metrics.items() if k.startswith("hal_o_swarm_node_offline_transitions_total"))
            assert offline >= 1
            codes = await cluster.shut_down()
            await cluster.assert_all_delivered()
    cluster.assert_no_crash(codes)
    cluster.assert_memory_bounded()
