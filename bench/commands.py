"""Command round trips under load: ``python -m bench.commands [--json]``.

A real ``hal-supervisor`` and a few ``hal-agent --simulate`` processes streaming
10,000 events/s in total; then 1,000 ``prompt_session`` commands through
``POST /api/v1/commands?wait=...`` from 8 concurrent clients, each timed from the
request to the response carrying the agent's answer (``succeeded``). The event rate
actually stored during the measurement is counted in the supervisor's database, and
the CPU of every process is sampled: on a 2-core machine the round trip is bound by
CPU (see docs/PERFORMANCE.md, "Commands"). For context the same is measured with one
command at a time and with 16 in flight.

Target (issue #4): command p99 <= 50 ms while 10,000 events/s flow.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
import tempfile
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import trio

from bench.common import TOKEN, Figure, ProcessSampler, agent_config_file, percentile, report, supervisor_process
from halswarm.testing import start_daemon, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from bench.common import SupervisorProcess
    from halswarm.testing import Daemon

AGENTS: Final = 4
RATE_PER_AGENT: Final = 2500.0  # events/s; 4 x 2,500 = 10,000 events/s in total
SESSIONS_PER_AGENT: Final = 25
COMMANDS: Final = 1000
CLIENTS: Final = 8  # commands in flight at once
CONTEXT_RUNS: Final = ((1, 200), (16, 1000))  # (in flight, commands): figures for context
WAIT_SEC: Final = 10.0  # the ``wait`` query parameter: how long the API holds the answer back
WARMUP_SEC: Final = 3.0
TARGET_P99_MS: Final = 50.0
TARGET_RATE: Final = 10_000.0


def stored_position(db_path: Path) -> int:
    """The highest event id stored (ids are rowids: they grow by one per stored event)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT MAX(id) FROM events").fetchone()
    finally:
        conn.close()
    return int(row[0] or 0)


@asynccontextmanager
async def agent_processes(
    workdir: Path, supervisor: SupervisorProcess, *, count: int, sessions: int, rate: float
) -> AsyncGenerator[list[Daemon], None]:
    """``count`` simulating agents for the block, stopped (bounded) afterwards."""
    daemons: list[Daemon] = []
    try:
        for i in range(count):
            node = f"bench-node-{i}"
            config = agent_config_file(workdir / f"{node}.json", supervisor, node, workdir / node)
            args = ["--config", str(config), "--simulate", str(sessions), "--rate", str(rate)]
            args += ["--log-level", "warning", "--log-format", "text"]
            daemons.append(await start_daemon("agent", args, workdir / f"{node}.log"))
        yield daemons
    finally:
        with trio.move_on_after(20, shield=True):
            async with trio.open_nursery() as nursery:
                for daemon in daemons:
                    nursery.start_soon(daemon.stop)


async def live_sessions(api: httpx.AsyncClient) -> list[str]:
    """Ids of the sessions that can take a prompt."""
    response = await api.get("/api/v1/sessions")
    response.raise_for_status()
    sessions = response.json()["sessions"]
    return [s["id"] for s in sessions if s["status"] in ("idle", "busy", "retry", "waiting", "error")]


async def run_commands(
    api: httpx.AsyncClient, session_ids: list[str], *, commands: int, clients: int
) -> tuple[list[float], list[str]]:
    """Send *commands* prompts from *clients* concurrent clients; (round trips in ms, failures)."""
    numbers = itertools.count()
    latencies: list[float] = []
    failures: list[str] = []

    async def client() -> None:
        while (n := next(numbers)) < commands:
            body = {
                "type": "prompt_session",
                "target": session_ids[n % len(session_ids)],
                "args": {"prompt": f"bench prompt {n}"},
            }
            started = trio.current_time()
            response = await api.post("/api/v1/commands", params={"wait": WAIT_SEC}, json=body)
            elapsed = (trio.current_time() - started) * 1000
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                failures.append(f"{response.status_code}: {response.text[:200]}")

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    return latencies, failures


async def main() -> int:
    """Run the benchmark and print its figures."""
    load = os.getloadavg()[0]
    context: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        workdir = Path(tmp)
        async with AsyncExitStack() as stack:
            supervisor = await stack.enter_async_context(supervisor_process(workdir))
            agents = await stack.enter_async_context(
                agent_processes(workdir, supervisor, count=AGENTS, sessions=SESSIONS_PER_AGENT, rate=RATE_PER_AGENT)
            )
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{supervisor.http_port}",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=httpx.Timeout(30.0),
                    limits=limits,
                )
            )
            expected = AGENTS * SESSIONS_PER_AGENT

            async def all_sessions_live() -> bool:
                return len(await live_sessions(api)) >= expected

            await wait_until(all_sessions_live, within=60, interval=0.2, what=f"{expected} live sessions")
            await trio.sleep(WARMUP_SEC)  # let the event stream reach its steady rate
            session_ids = await live_sessions(api)

            samplers = [ProcessSampler(supervisor.daemon.pid), *(ProcessSampler(a.pid) for a in agents)]
            client_cpu = ProcessSampler(os.getpid())
            first = await trio.to_thread.run_sync(stored_position, supervisor.db_path)
            started = trio.current_time()
            latencies, failures = await run_commands(api, session_ids, commands=COMMANDS, clients=CLIENTS)
            elapsed = trio.current_time() - started
            last = await trio.to_thread.run_sync(stored_position, supervisor.db_path)
            cpu = [sampler.sample()[0] for sampler in samplers]
            bench_cpu = client_cpu.sample()[0]

            for clients, commands in CONTEXT_RUNS:
                extra, extra_failures = await run_commands(api, session_ids, commands=commands, clients=clients)
                failures += extra_failures
                context += [
                    Figure(f"{clients} in flight: round trip p50", percentile(extra, 50), "ms"),
                    Figure(f"{clients} in flight: round trip p99", percentile(extra, 99), "ms"),
                ]
    rate = (last - first) / elapsed
    for failure in failures[:5]:
        print(f"failed command: {failure}", file=sys.stderr)
    p99 = percentile(latencies, 99)
    report(
        f"commands: {COMMANDS} prompts, {CLIENTS} in flight, {AGENTS} agents x {RATE_PER_AGENT:,.0f} events/s",
        [
            Figure("machine load before the run (1 min)", load, ""),
            Figure("events stored during the run", rate, "events/s", f">= {TARGET_RATE:,.0f}", rate >= TARGET_RATE),
            Figure("commands succeeded", len(latencies), "", f"{COMMANDS}", len(latencies) == COMMANDS),
            Figure("command round trip p50", percentile(latencies, 50), "ms"),
            Figure("command round trip p99", p99, "ms", f"<= {TARGET_P99_MS:.0f} ms", p99 <= TARGET_P99_MS),
            Figure("command round trip max", max(latencies, default=0.0), "ms"),
            Figure("commands/s", len(latencies) / elapsed, "/s"),
            Figure("supervisor CPU (100 = one core)", cpu[0], "%"),
            Figure(f"{AGENTS} agents' CPU together", sum(cpu[1:]), "%"),
            Figure("bench client CPU", bench_cpu, "%"),
            *context,
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
