"""``python -m bench.fanin``: 1,000 agents and 10,000 sessions on one supervisor.

A real ``hal-supervisor`` process (heartbeat interval 5 s, so heartbeats matter during the
run) and 1,000 simulated agents spread over 4 ``bench.agents`` processes, 10 sessions each,
at a low event rate (1 event/s per agent). Measured:

- **time until all online**: from spawning the agent processes until every agent has
  been welcomed (agents start staggered, 100/s per process, so the ramp itself takes
  2.5 s); ``GET /api/v1/nodes`` then confirms every node ``online``;
- **supervisor CPU % and RSS** over a steady window of 30 s (``ProcessSampler``), and
  the peak RSS over the whole run (ramp included), against the 300 MB target;
- **heartbeat processing lag**: each agent puts the wall-clock time at which it built a
  heartbeat into the heartbeat's facts (``bench_sent_at``); the supervisor records the
  wall-clock time at which it processed the latest heartbeat (``last_heartbeat``). Both
  clocks are the same machine's, so ``last_heartbeat - bench_sent_at`` is how late the
  supervisor processed that heartbeat: the agent's send queue, loopback, and the
  supervisor's read, parse and bookkeeping. Polled every 2.5 s over the window (each
  (node, heartbeat) counted once). Also the **heartbeat age**: at each poll, the oldest
  ``now - bench_sent_at`` over the nodes, which stays below the interval (5 s) plus the
  lag unless heartbeats are dropped or starved.

Also printed: the agent processes' CPU, memory per agent, worker threads, event-loop lag,
and the latency of the ``GET /api/v1/nodes`` polls (1,000 nodes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import psutil
import trio

from bench.agents import SENT_AT_FACT, Fleet, add_fleet_arguments, open_fleet
from bench.common import TOKEN, Figure, ProcessSampler, percentile, report, supervisor_process
from halswarm.testing import wait_until
from halswarm.timeutil import parse_ts, system_now

if TYPE_CHECKING:
    import httpx

__all__ = ["MachineLoad", "NodesView", "main", "nodes_view", "progress", "wait_all_online"]

RSS_TARGET_MB: Final = 300.0
_MIB: Final = 2**20 / 1e6  # MB per MiB


@attrs.frozen
class NodesView:
    """One ``GET /api/v1/nodes``: who is online and each node's latest heartbeat lag."""

    online: int
    total: int
    lags: dict[tuple[str, str], float]  # (node id, sent_at) -> seconds until processed
    oldest_heartbeat_age: float  # seconds since the oldest latest heartbeat was sent
    seconds: float  # how long the request took


async def nodes_view(api: httpx.AsyncClient) -> NodesView:
    """Fetch the nodes and read their status and heartbeat stamps."""
    began = trio.current_time()
    response = await api.get("/api/v1/nodes")
    response.raise_for_status()
    took = trio.current_time() - began
    now = system_now()
    nodes = response.json()["nodes"]
    lags: dict[tuple[str, str], float] = {}
    oldest = 0.0
    online = 0
    for node in nodes:
        if node["status"] not in ("online", "degraded"):
            continue
        online += 1
        sent_at = node["facts"].get(SENT_AT_FACT)
        if sent_at is None or node["last_heartbeat"] is None:
            continue
        sent = parse_ts(sent_at)
        # A hello also carries the facts: until its first heartbeat is processed, a node's
        # last_heartbeat is older than its stamp. Those are not heartbeat lags.
        lag = (parse_ts(node["last_heartbeat"]) - sent).total_seconds()
        if lag >= 0:
            lags[node["id"], sent_at] = lag
        oldest = max(oldest, (now - sent).total_seconds())
    return NodesView(online, len(nodes), lags, oldest, took)


async def wait_all_online(fleet: Fleet, api: httpx.AsyncClient, *, within: float) -> float:
    """Until every agent is connected (welcomed) and the API shows every node online.

    Watches the agents' status lines (cheap) rather than polling ``GET /api/v1/nodes``,
    which at 1,000 nodes would add load to the supervisor being measured; one request
    confirms at the end. Returns how long it took.

    Raises:
        trio.TooSlowError: not all online within *within* seconds.
    """
    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress, fleet)
        await fleet.wait_for(lambda: fleet.complete() and fleet.total_of(lambda s: s.connected) >= fleet.total, within)
        nursery.cancel_scope.cancel()
    took = trio.current_time() - began

    async def all_online() -> bool:
        return (await nodes_view(api)).online >= fleet.total

    await wait_until(all_online, within=within, interval=0.5, what="every node online in GET /api/v1/nodes")
    return took


def _cpu_seconds() -> tuple[float, float]:
    """(all CPU time, idle CPU time) of the machine so far, in seconds."""
    times = psutil.cpu_times()
    return sum(times), times.idle + getattr(times, "iowait", 0.0)


async def progress(fleet: Fleet, every: float = 5.0) -> None:
    """A line every few seconds while the agents connect (a slow ramp is visible)."""
    began = trio.current_time()
    while True:
        await trio.sleep(every)
        connected = fleet.total_of(lambda s: s.connected)
        started = fleet.total_of(lambda s: s.started)
        print(f"  {trio.current_time() - began:5.1f} s: {started} started, {connected} connected", flush=True)


@attrs.define
class MachineLoad:
    """CPU busy on the whole machine between two samples (100 = one core), all processes."""

    _last: tuple[float, float] = attrs.field(factory=_cpu_seconds)

    def sample(self) -> float:
        """Machine CPU % since the last sample."""
        (total, idle), (total0, idle0) = _cpu_seconds(), self._last
        self._last = (total, idle)
        cores = psutil.cpu_count() or 1
        return 100.0 * cores * (1 - (idle - idle0) / (total - total0)) if total > total0 else 0.0


@attrs.define
class _Agents:
    """CPU and memory of the agent processes together."""

    samplers: list[ProcessSampler]

    def sample(self) -> tuple[float, float]:
        """(CPU % summed, RSS MiB summed) since the last sample."""
        cpu, rss = 0.0, 0.0
        for s in self.samplers:
            try:
                c, r = s.sample()
            except psutil.NoSuchProcess:
                continue
            cpu, rss = cpu + c, rss + r
        return cpu, rss


async def _run(args: argparse.Namespace) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-fanin-") as tmp:
        workdir = Path(args.workdir or tmp)
        async with supervisor_process(workdir, heartbeat_interval_sec=args.heartbeat) as sup, sup.api() as api:
            sampler = ProcessSampler(sup.daemon.pid)
            began = trio.current_time()
            async with open_fleet(
                sup.ws_url,
                TOKEN,
                agents=args.agents,
                processes=args.processes,
                data_root=workdir / "agents",
                sessions=args.sessions,
                rate=args.rate,
                start_rate=args.start_rate,
            ) as fleet:
                async with trio.open_nursery() as ramp:
                    ramp.start_soon(_keep_peak, sampler)
                    await wait_all_online(fleet, api, within=args.within)
                    ramp.cancel_scope.cancel()
                all_online = trio.current_time() - began
                print(f"fanin: {args.agents} agents online after {all_online:.1f} s", flush=True)
                return await _steady(args, fleet, api, sampler, all_online)


async def _keep_peak(sampler: ProcessSampler) -> None:
    """Sample the RSS every 0.25 s, so the sampler keeps the peak."""
    while True:
        sampler.rss_mb()
        await trio.sleep(0.25)


async def _steady(
    args: argparse.Namespace, fleet: Fleet, api: httpx.AsyncClient, sampler: ProcessSampler, all_online: float
) -> list[Figure]:
    """Let the fleet settle for one heartbeat interval, then measure the steady window."""
    await trio.sleep(args.heartbeat)
    agents = _Agents([ProcessSampler(pid) for pid in fleet.pids])
    window = ProcessSampler(sampler.process.pid)
    machine = MachineLoad()
    seq_before = fleet.total_of(lambda s: s.last_seq)
    lags: dict[tuple[str, str], float] = {}
    ages: list[float] = []
    polls: list[float] = []
    min_online = args.agents
    rss_samples: list[float] = []
    start = trio.current_time()
    k = 0
    while trio.current_time() - start < args.window:
        k += 1
        await trio.sleep_until(start + k * args.poll)
        rss_samples.append(sampler.rss_mb())
        view = await nodes_view(api)
        lags.update(view.lags)
        ages.append(view.oldest_heartbeat_age)
        polls.append(view.seconds)
        min_online = min(min_online, view.online)
    elapsed = trio.current_time() - start
    cpu, rss = window.sample()
    agents_cpu, agents_rss = agents.sample()
    busy = machine.sample()
    events_per_s = (fleet.total_of(lambda s: s.last_seq) - seq_before) / elapsed
    lag_ms = [v * 1000 for v in lags.values()]
    statuses = fleet.statuses()
    peak_mb = max(sampler.peak_rss_mb, rss) * _MIB
    return [
        Figure("agents online (min over the window)", min_online, "", f">= {args.agents:,}", min_online >= args.agents),
        Figure("sessions", args.agents * args.sessions, ""),
        Figure("time until all online", all_online, "s"),
        Figure("supervisor CPU (steady)", cpu, "%"),
        Figure("supervisor RSS (steady)", rss * _MIB, "MB"),
        Figure("supervisor RSS (peak)", peak_mb, "MB", f"<= {RSS_TARGET_MB:.0f} MB", peak_mb <= RSS_TARGET_MB),
        Figure("heartbeats measured", len(lag_ms), ""),
        Figure("heartbeat lag p50", percentile(lag_ms, 50), "ms"),
        Figure("heartbeat lag p99", percentile(lag_ms, 99), "ms"),
        Figure("heartbeat lag max", max(lag_ms, default=0.0), "ms"),
        Figure("heartbeat age max", max(ages, default=0.0), "s", f"< {args.heartbeat:g} s interval + lag"),
        Figure("events ingested", events_per_s, "events/s"),
        Figure("GET /api/v1/nodes p50", percentile([p * 1000 for p in polls], 50), "ms"),
        Figure("agent processes CPU (sum)", agents_cpu, "%"),
        Figure("agent processes RSS per agent", agents_rss * _MIB / args.agents, "MB"),
        Figure("agent process threads (peak)", max((s.threads_peak for s in statuses), default=0), ""),
        Figure("agent process loop lag (last s, max)", max((s.loop_lag_ms for s in statuses), default=0.0), "ms"),
        Figure("machine CPU busy (all processes)", busy, "%", f"of {100 * (psutil.cpu_count() or 1)} %"),
        Figure("  of which not this benchmark", max(0.0, busy - cpu - agents_cpu), "%"),
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fanin", description=__doc__.split("\n\n")[0])
    add_fleet_arguments(parser)
    parser.add_argument("--window", type=float, default=30.0, help="seconds of steady measurement")
    parser.add_argument("--poll", type=float, default=2.5, help="seconds between GET /api/v1/nodes polls")
    parser.add_argument("--within", type=float, default=120.0, help="give up if not all online by then")
    return parser


def main() -> None:
    """Run the benchmark and print its figures (exit 0 even when a target is missed)."""
    args = _parser().parse_args()
    figures = trio.run(_run, args)
    report(f"fan-in: {args.agents:,} agents x {args.sessions} sessions, heartbeat {args.heartbeat:g} s", figures)
    sys.exit(0)


if __name__ == "__main__":
    main()
