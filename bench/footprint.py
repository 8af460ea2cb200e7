"""Footprint: RSS and CPU of an idle ``hal-agent`` connected to a supervisor.

``python -m bench.footprint [--json]``. One ``hal-agent --simulate 1 --rate 0.1`` (one
simulated session, an event every ~10 s: idle, but alive) against a real
``hal-supervisor``. After a warm-up, the agent process is sampled with psutil every
second for ``SAMPLE_S`` seconds: CPU % (100 = one core) over the whole window, RSS at
each sample (mean and peak reported).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Final

import trio

from bench.common import Figure, ProcessSampler, agent_config_file, report, supervisor_process
from halswarm.testing import start_daemon, wait_until

TARGET_RSS_MB: Final = 60.0
WARMUP_S: Final = 5.0
SAMPLE_S: Final = 20.0
RATE: Final = 0.1  # events/s


async def main() -> None:
    """Start the pair, wait for the agent's hello, sample the agent, print."""
    with tempfile.TemporaryDirectory(prefix="halswarm-bench-footprint-") as tmp:
        workdir = Path(tmp)
        # A heartbeat every 5 s, so the window includes some (the default is 30 s).
        async with supervisor_process(workdir, heartbeat_interval_sec=5.0) as sup:
            config = agent_config_file(workdir / "agent.json", sup, "idle-1", workdir / "idle-1")
            args = ["--config", str(config), "--simulate", "1", "--rate", str(RATE)]
            agent = await start_daemon("agent", [*args, "--log-level", "warning"], workdir / "agent.log")
            try:
                async with sup.api() as api:

                    async def online() -> bool:
                        nodes = (await api.get("/api/v1/nodes")).json().get("nodes", [])
                        return any(n.get("id") == "idle-1" and n.get("status") == "online" for n in nodes)

                    await wait_until(online, within=30, interval=0.2, what="agent online")
                await trio.sleep(WARMUP_S)
                sampler = ProcessSampler(agent.pid)
                rss = []
                start = trio.current_time()
                for k in range(1, int(SAMPLE_S) + 1):
                    await trio.sleep_until(start + k)
                    rss.append(sampler.rss_mb())
                cpu, last = sampler.sample()
                rss.append(last)
            finally:
                with trio.move_on_after(20, shield=True):
                    await agent.stop()
    peak = max(rss)
    report(
        "footprint",
        [
            Figure("idle agent RSS (peak)", peak, "MiB", f"<= {TARGET_RSS_MB:.0f}", peak <= TARGET_RSS_MB),
            Figure("idle agent RSS (mean)", statistics.fmean(rss), "MiB"),
            Figure(f"idle agent CPU over {SAMPLE_S:.0f} s", cpu, "%"),
        ],
    )


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
