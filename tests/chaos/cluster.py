"""A chaos cluster: a real ``hal-supervisor`` and ``hal-agent --simulate`` processes on
loopback, the agents dialling through a :class:`~tests.chaos.proxy.ChaosProxy`, with
memory sampling and the end-of-run checks every chaos scenario makes.

Short mode (default) keeps each scenario to a few seconds of faults; ``HALSWARM_CHAOS=long``
runs more agents, more events and minutes of faults. Every run prints its seed;
``HALSWARM_CHAOS_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import psutil
import trio

from halswarm.testing import Daemon, free_port, start_daemon, stored_seqs, wait_until, write_json
from tests.chaos.proxy import ChaosProxy

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

__all__ = [
    "AGENT_RSS_LIMIT_MB",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TIMEOUT",
    "SUPERVISOR_RSS_LIMIT_MB",
    "ChaosCluster",
    "Scale",
    "node_id",
    "open_chaos_cluster",
    "scale",
    "seeded_rng",
]

TOKEN: Final = "chaos-token-0123456789abcdef"
HEARTBEAT_INTERVAL: Final = 0.5
HEARTBEAT_COUNT: Final = 3
HEARTBEAT_TIMEOUT: Final = HEARTBEAT_INTERVAL * HEARTBEAT_COUNT  # also the agents' watchdog
#: Stated memory bounds (peak RSS of any one process over a scenario). Idle, a
#: supervisor takes ~60 MiB and an agent ~45 MiB; backlogs and reconnect storms must not
#: make either grow without bound.
SUPERVISOR_RSS_LIMIT_MB: Final = 250.0
AGENT_RSS_LIMIT_MB: Final = 150.0
_SAMPLE_INTERVAL: Final = 0.2
_REPO: Final = Path(__file__).resolve().parents[2]
_METRIC_LINE: Final = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


@attrs.frozen
class Scale:
    """How big a scenario is."""

    long: bool
    agents: int
    events: int  # per agent (--max-events)
    rate: float  # events/s per agent
    fault_seconds: float  # how long faults are injected


def scale() -> Scale:
    """Short (default) or long (``HALSWARM_CHAOS=long``)."""
    if os.environ.get("HALSWARM_CHAOS", "short") == "long":
        return Scale(long=True, agents=8, events=30_000, rate=250.0, fault_seconds=100.0)
    return Scale(long=False, agents=3, events=1_500, rate=300.0, fault_seconds=4.0)


def seeded_rng(name: str) -> random.Random:
    """A Random for scenario *name*, its seed printed (replay with HALSWARM_CHAOS_SEED)."""
    raw = os.environ.get("HALSWARM_CHAOS_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"chaos {name}: seed {seed} (replay with HALSWARM_CHAOS_SEED={seed})")
    return random.Random(seed)


def node_id(i: int) -> str:
    """The node id of agent *i*."""
    return f"node-{i:02d}"


def _outbox_state(data_dir: Path) -> tuple[int, int]:
    """(last seq the agent assigned, rows still unacknowledged) of a stopped agent."""
    conn = sqlite3.connect(f"file:{data_dir / 'outbox.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        pending = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()
    return (int(row[0]) if row else 0), pending


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as ``{"name{labels}": value}``."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if match := _METRIC_LINE.match(line):
            values[match.group(1)] = float(match.group(2))
    return values


@attrs.define
class _Proc:
    role: str  # "supervisor" or "agent-<i>"
    daemon: Daemon
    killed: bool = False  # SIGKILL injected: its exit code is ours, not a crash
    stopped: bool = False  # SIGSTOPped now


class ChaosCluster:
    """The processes of one scenario. Use :func:`open_chaos_cluster`."""

    def __init__(self, workdir: Path, scale: Scale, rng: random.Random, *, store_faults: bool) -> None:
        self.workdir = workdir
        self.scale = scale
        self.rng = rng
        self.store_faults = store_faults
        self.ws_port, self.http_port = free_port(), free_port()
        self.db = workdir / "supervisor.db"
        self.logs = workdir / "logs"
        self.fault_file = workdir / "store-faults.json"
        self.proxy: ChaosProxy = ChaosProxy(self.ws_port, rng=random.Random(rng.random()))
        self.supervisor: _Proc | None = None
        self.agents: list[_Proc | None] = [None] * scale.agents
        self.history: list[_Proc] = []  # every process ever started
        self.peak_rss_mb: dict[str, float] = {}
        self._sup_config = write_json(
            workdir / "supervisor.json",
            {
                "server": {
                    "auth_token": TOKEN,
                    "host": "127.0.0.1",
                    "port": self.ws_port,
                    "http_port": self.http_port,
                    "heartbeat_interval_sec": HEARTBEAT_INTERVAL,
                    "heartbeat_timeout_count": HEARTBEAT_COUNT,
                    "shutdown_grace_sec": 3,
                },
                "database": {"path": str(self.db)},
            },
        )

    # ---- processes -------------------------------------------------------------------

    async def start_supervisor(self, *, wait: bool = True) -> None:
        """Start the supervisor and (with *wait*) wait until ``/readyz`` says 200."""
        args = ["--config", str(self._sup_config), "--log-format", "text"]
        log_path = self.logs / "supervisor.log"
        if self.store_faults:
            daemon = await _start_faulty_supervisor([*args, "--fault-file", str(self.fault_file)], log_path)
        else:
            daemon = await start_daemon("supervisor", args, log_path)
        self.supervisor = _Proc("supervisor", daemon)
        self.history.append(self.supervisor)
        if wait:
            await self.wait_ready(within=30)

    async def start_agent(self, i: int) -> None:
        """Start agent *i* (its config points at the proxy)."""
        assert self.proxy.port is not None
        config = write_json(
            self.workdir / f"agent-{i}.json",
            {
                "supervisor_url": f"ws://127.0.0.1:{self.proxy.port}",
                "auth_token": TOKEN,
                "node_id": node_id(i),
                "data_dir": str(self.workdir / f"agent-{i}"),
                "link": {
                    "backoff_initial_sec": 0.1,
                    "backoff_max_sec": 1.0,
                    "stable_after_sec": 2,
                    "connect_timeout_sec": 1.5,
                    "close_timeout_sec": 1.0,
                },
            },
        )
        args = [
            "--config",
            str(config),
            "--log-format",
            "text",
            "--simulate",
            "3",
            "--rate",
            str(self.scale.rate),
            "--max-events",
            str(self.scale.events),
        ]
        daemon = await start_daemon("agent", args, self.logs / f"agent-{i}.log")
        self.agents[i] = _Proc(f"agent-{i}", daemon)
        self.history.append(self.agents[i])  # type: ignore[arg-type]

    def _proc(self, which: str) -> _Proc:
        proc = self.supervisor if which == "supervisor" else self.agents[int(which.removeprefix("agent-"))]
        assert proc is not None, which
        return proc

    async def kill(self, which: str) -> None:
        """SIGKILL ``"supervisor"`` or ``"agent-<i>"`` (an injected crash) and reap it."""
        proc = self._proc(which)
        print(f"chaos: SIGKILL {which} (pid {proc.daemon.pid})")
        proc.killed = True
        proc.daemon.kill()
        with trio.fail_after(10):
            await proc.daemon.process.wait()
        proc.stopped = False

    def stop(self, which: str) -> None:
        """SIGSTOP: the process freezes with its sockets open."""
        proc = self._proc(which)
        print(f"chaos: SIGSTOP {which} (pid {proc.daemon.pid})")
        proc.daemon.process.send_signal(signal.SIGSTOP)
        proc.stopped = True

    def cont(self, which: str) -> None:
        """SIGCONT after :meth:`stop`."""
        proc = self._proc(which)
        print(f"chaos: SIGCONT {which} (pid {proc.daemon.pid})")
        proc.daemon.process.send_signal(signal.SIGCONT)
        proc.stopped = False

    def set_store_faults(self, *, disk_full: bool = False, commit_delay_ms: float = 0.0) -> None:
        """Switch the supervisor's store faults (needs ``store_faults=True``)."""
        assert self.store_faults
        print(f"chaos: store faults disk_full={disk_full} commit_delay_ms={commit_delay_ms:g}")
        tmp = self.fault_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"disk_full": disk_full, "commit_delay_ms": commit_delay_ms}))
        tmp.replace(self.fault_file)  # atomic: the supervisor never reads half a file

    async def sample_memory(self) -> None:
        """Record each role's peak RSS until cancelled."""
        while True:
            for proc in [self.supervisor, *self.agents]:
                if proc is None or proc.daemon.process.returncode is not None:
                    continue
                try:
                    rss = psutil.Process(proc.daemon.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peak_rss_mb[proc.role] = max(self.peak_rss_mb.get(proc.role, 0.0), rss)
            await trio.sleep(_SAMPLE_INTERVAL)

    # ---- observing -------------------------------------------------------------------

    def http(self, timeout: float = 3.0) -> httpx.AsyncClient:
        """A client for the supervisor's HTTP API (token set, explicit timeout)."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.http_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=httpx.Timeout(timeout),
        )

    async def readyz(self) -> tuple[int, dict[str, str]]:
        """(status code, components) of ``/readyz``; (0, {}) when it does not answer."""
        try:
            async with self.http() as client:
                response = await client.get("/readyz")
        except httpx.HTTPError:
            return 0, {}
        components = response.json().get("components", {})
        return response.status_code, {str(k): str(v) for k, v in components.items()}

    async def wait_ready(self, within: float) -> None:
        """Until ``/readyz`` answers 200."""

        async def ready() -> bool:
            return (await self.readyz())[0] == 200

        await wait_until(ready, within=within, interval=0.1, what="supervisor /readyz 200")

    async def metrics(self) -> dict[str, float]:
        """The supervisor's ``/metrics``, parsed."""
        async with self.http() as client:
            response = await client.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    async def node_statuses(self) -> dict[str, str]:
        """node id -> status, from ``/api/v1/nodes``."""
        async with self.http() as client:
            response = await client.get("/api/v1/nodes")
        response.raise_for_status()
        return {str(n["id"]): str(n["status"]) for n in response.json()["nodes"]}

    def log(self, role: str) -> str:
        """The whole log of ``"supervisor"`` or ``"agent-<i>"`` (every incarnation)."""
        path = self.logs / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def wait_online(self, within: float) -> None:
        """Until every agent's node is online."""
        want = {node_id(i) for i in range(self.scale.agents)}

        async def all_online() -> bool:
            try:
                statuses = await self.node_statuses()
            except httpx.HTTPError:
                return False
            return all(statuses.get(n) == "online" for n in want)

        await wait_until(all_online, within=within, interval=0.2, what="every node online")

    async def counts(self) -> dict[str, tuple[int, int, int, int]]:
        """Per node: (rows, distinct seqs, min seq, max seq) in the supervisor's store."""
        return await trio.to_thread.run_sync(stored_seqs, self.db)

    # ---- the checks every scenario makes ---------------------------------------------

    async def assert_recovers(self, within: float) -> None:
        """Faults cleared: the supervisor is ready, every node online, every event stored
        exactly once (seqs 1..M per node, no duplicates, none missing)."""
        await self.wait_ready(within=within)
        await self.wait_online(within=within)
        want = {node_id(i) for i in range(self.scale.agents)}
        m = self.scale.events

        async def all_stored() -> bool:
            counts = await self.counts()
            return all(counts.get(n, (0, 0, 0, 0))[3] >= m for n in want)

        try:
            await wait_until(all_stored, within=within, interval=0.3, what=f"{m} events of every node stored")
        finally:
            with trio.move_on_after(5, shield=True):
                print(f"chaos: stored {await self.counts()}")
        counts = await self.counts()
        for n in sorted(want):
            rows, distinct, low, high = counts[n]
            # 1..high each exactly once. high is M, or a little more when an agent was
            # restarted after reaching M (see assert_all_delivered).
            assert (rows, distinct, low) == (high, high, 1), f"{n}: (rows, distinct, min, max) = {counts[n]}"
        # Connections dropped by a fault close on the supervisor's side too (no leak).
        seen: dict[str, float] = {}

        async def one_connection_each() -> bool:
            seen.update(await self.metrics())
            return (
                seen["hal_o_swarm_nodes_online"] == self.scale.agents
                and seen["hal_o_swarm_connections_active"] == self.scale.agents
            )

        try:
            await wait_until(one_connection_each, within=15, interval=0.3, what="one connection per agent")
        finally:
            print(
                f"chaos: nodes online {seen.get('hal_o_swarm_nodes_online')}, "
                f"connections {seen.get('hal_o_swarm_connections_active')}, proxy links {self.proxy.active}"
            )

    async def shut_down(self) -> dict[str, int]:
        """SIGCONT anything stopped, SIGTERM everything; returns each live role's exit code."""
        codes: dict[str, int] = {}
        with trio.move_on_after(40, shield=True):
            live = [p for p in [*self.agents, self.supervisor] if p is not None and not p.killed]
            for proc in live:
                if proc.stopped:
                    self.cont(proc.role)
            for proc in live:
                codes[proc.role] = await proc.daemon.stop(grace=10)
        return codes

    def assert_no_crash(self, codes: dict[str, int]) -> None:
        """Only injected kills ended a process early; everything else stopped with 0; no
        log holds a traceback or a seq gap."""
        for proc in self.history:
            if proc.killed:
                continue
            code = codes.get(proc.role)
            tail = proc.daemon.log_text()[-3000:]
            assert code == 0, f"{proc.role} (pid {proc.daemon.pid}) exited with {code}:\n{tail}"
        for path in sorted(self.logs.iterdir()):
            text = path.read_text(errors="replace")
            assert "Traceback" not in text, f"{path.name}:\n{text[text.index('Traceback') - 500 :][:4000]}"
            assert "gap in event seqs" not in text, path.name

    async def assert_all_delivered(self) -> None:
        """After :meth:`shut_down`: every agent's outbox is empty (all acknowledged) and
        the store holds exactly seqs 1..last_seq of it, the agent's own count of what it
        produced, once each."""
        counts = await self.counts()
        for i in range(self.scale.agents):
            last, pending = await trio.to_thread.run_sync(_outbox_state, self.workdir / f"agent-{i}")
            assert pending == 0, f"agent-{i}: {pending} events never acknowledged"
            assert counts[node_id(i)] == (last, last, 1, last), f"agent-{i} produced 1..{last}: {counts[node_id(i)]}"

    def assert_memory_bounded(self) -> None:
        """Peak RSS of each process stayed under the stated limits."""
        peaks = {k: round(v) for k, v in sorted(self.peak_rss_mb.items())}
        print(f"chaos: peak RSS MiB {peaks}")
        assert self.peak_rss_mb.get("supervisor", 0) > 0, "memory was never sampled"
        for role, peak in self.peak_rss_mb.items():
            limit = SUPERVISOR_RSS_LIMIT_MB if role == "supervisor" else AGENT_RSS_LIMIT_MB
            assert peak < limit, f"{role} peaked at {peak:.0f} MiB (limit {limit:.0f})"


async def _start_faulty_supervisor(args: list[str], log_path: Path) -> Daemon:
    """Like ``start_daemon("supervisor", ...)``, through :mod:`tests.chaos.faulty_supervisor`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    code = "from tests.chaos.faulty_supervisor import main; main()"
    with log_path.open("ab") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", code, *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(_REPO),
            env={**os.environ, "PYTHONPATH": str(_REPO)},
        )
    return Daemon(process, log_path, f"supervisor:{process.pid}")


@asynccontextmanager
async def open_chaos_cluster(
    workdir: Path, scale: Scale, rng: random.Random, *, store_faults: bool = False
) -> AsyncGenerator[ChaosCluster, None]:
    """Proxy, supervisor, agents and the memory sampler, for the block.

    Resource handling: on exit every process gets SIGCONT and SIGTERM (bounded), and the
    proxy and sampler are cancelled; use :meth:`ChaosCluster.shut_down` inside the block
    to check exit codes.
    """
    cluster = ChaosCluster(workdir, scale, rng, store_faults=store_faults)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.proxy.run)
        try:
            # Agents start while the supervisor boots (they retry): startup overlaps.
            await cluster.start_supervisor(wait=False)
            for i in range(scale.agents):
                await cluster.start_agent(i)
            await cluster.wait_ready(within=30)
            nursery.start_soon(cluster.sample_memory)
            yield cluster
        finally:
            with trio.move_on_after(45, shield=True):
                await cluster.shut_down()
            nursery.cancel_scope.cancel()
