"""``python -m bench.agents``: many simulated agents in one trio process (fan-in load).

Usage::

    python -m bench.agents --supervisor ws://127.0.0.1:8420 --token T \\
        --first 0 --count 250 --sessions 10 --rate 1 --data-root /tmp/agents [--control]

Each agent is a real :func:`~halswarm.agent.app.run_agent` with its own node id
(``bench-0000``...), data dir (outbox SQLite) and simulated backend; only the process is
shared, so 1,000 agents fit in a few processes. Agents start staggered (``--start-rate``
per second, each one after the previous is running), so the supervisor sees a ramp, not
a thundering herd. Every outbox runs SQLite in trio's worker threads behind its own
``CapacityLimiter(1)``: the thread count is bounded by the agents with SQLite work *in
flight* at once (trio reuses idle threads), and the status lines report it.

Output, on stdout, one JSON object a line: ``{"type": "started", ...}`` once every agent
runs, then ``{"type": "status", ...}`` every ``--status-every`` seconds. With
``--control``, words on stdin steer the run (used by ``bench.fanin``/``bench.recovery``):

- ``mark``: remember every agent's last seq; status lines then count the agents whose
  acknowledged seq is still below their mark (``behind_mark``);
- ``quiesce``: stop producing events (commands still work);
- ``seqs``: print ``{"type": "seqs", "seqs": {node_id: last_seq}}``.

Heartbeat stamps: every agent reports ``bench_sent_at`` (wall clock when the heartbeat was
built) in its facts, so ``GET /api/v1/nodes`` shows, per node, when the supervisor
processed the latest heartbeat (``last_heartbeat``) next to when it was sent.

This module is also the driver's side of that protocol: :func:`open_fleet` spawns the
processes and :class:`Fleet` reads their status and sends the control words.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import attrs
import orjson
import psutil
import trio

from halswarm.agent import simulate
from halswarm.agent.app import AgentHandle, run_agent
from halswarm.agent.simulate import default_projects, simulated_factory
from halswarm.config.agent import AgentConfig, LinkConfig
from halswarm.convert import converter
from halswarm.obs.logging import configure_logging
from halswarm.runtime import exception_leaves, terminate, watch_signals
from halswarm.sync import Signal
from halswarm.timeutil import format_ts, system_now

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from halswarm.agent.backend import EventSink, SessionBackend
    from halswarm.agent.outbox import Outbox
    from halswarm.jsontypes import JSONObject
    from halswarm.proto.messages import CommandMsg

__all__ = ["SENT_AT_FACT", "AgentsStatus", "Fleet", "main", "node_id_for", "open_fleet"]

log = logging.getLogger("bench.agents")

SENT_AT_FACT: Final = "bench_sent_at"
_LAG_PROBE: Final = 0.05  # seconds between event-loop lag probes
_STOP_GRACE: Final = 20.0  # a process of 250 agents closes 250 connections on SIGTERM
_REPO: Final = Path(__file__).resolve().parents[1]


def node_id_for(index: int) -> str:
    """The node id of the *index*-th bench agent."""
    return f"bench-{index:04d}"


# ---- the agents process ---------------------------------------------------------------


class _BenchBackend:
    """The simulated backend plus two bench hooks: heartbeat send stamps and quiesce."""

    def __init__(self, inner: SessionBackend, quiesce: trio.Event) -> None:
        self.inner = inner
        self.quiesce = quiesce

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the simulation until quiesced, then idle (commands still work).

        Cancellation: the simulation saves its state on the way out (bounded).
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.inner.run, sink)
            task_status.started()
            await self.quiesce.wait()
            nursery.cancel_scope.cancel()
        await trio.sleep_forever()

    async def execute(self, command: CommandMsg) -> JSONObject:
        """The simulator's commands."""
        return await self.inner.execute(command)

    def health(self) -> dict[str, str]:
        """The simulator's health."""
        return self.inner.health()

    def facts(self) -> dict[str, str]:
        """The simulator's facts plus the wall clock now: called when a heartbeat is built."""
        return {**self.inner.facts(), SENT_AT_FACT: format_ts(system_now())}

    @property
    def health_changed(self) -> Signal:
        """The simulator's health signal."""
        return self.inner.health_changed


@attrs.frozen
class AgentsStatus:
    """One status line of an agents process."""

    agents: int
    started: int
    failed: int
    connected: int
    connections: int  # successful connects so far, summed (reconnects show here)
    last_seq: int  # summed over the agents
    pending: int  # unacknowledged events, summed
    pending_max: int
    behind_mark: int | None  # agents whose acked seq is below their mark (None: no mark)
    threads: int
    threads_peak: int
    loop_lag_ms: float  # worst event-loop lag since the previous status line


@attrs.define
class _Agents:
    """The agents of this process and what the status lines report about them."""

    args: argparse.Namespace
    shutdown: trio.Event = attrs.field(factory=trio.Event)
    quiesce: trio.Event = attrs.field(factory=trio.Event)
    handles: list[AgentHandle] = attrs.field(factory=list)
    marks: list[int] | None = None
    failed: int = 0
    threads_peak: int = 0
    lag: float = 0.0

    def config(self, index: int) -> AgentConfig:
        node_id = node_id_for(index)
        return AgentConfig(
            supervisor_url=self.args.supervisor,
            auth_token=self.args.token,
            node_id=node_id,
            data_dir=str(Path(self.args.data_root).resolve() / node_id),
            link=LinkConfig(
                connect_timeout_sec=self.args.connect_timeout,
                backoff_initial_sec=self.args.backoff_initial,
                backoff_max_sec=self.args.backoff_max,
                stable_after_sec=self.args.connect_timeout + 5.0,
            ),
        )

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals, self.shutdown, nursery.cancel_scope)
            nursery.start_soon(self._lag_probe)
            nursery.start_soon(self._status_loop)
            if self.args.control:
                nursery.start_soon(self._control)
            began = trio.current_time()
            async with trio.open_nursery() as agents:
                for k in range(self.args.count):
                    await trio.sleep_until(began + k / self.args.start_rate)
                    if self.shutdown.is_set():
                        break
                    await agents.start(self._agent, self.args.first + k)
                seconds = trio.current_time() - began
                _emit(
                    {
                        "type": "started",
                        "agents": len(self.handles),
                        "failed": self.failed,
                        "seconds": round(seconds, 3),
                        "message": f"all {len(self.handles)} agents started in {seconds:.1f} s",
                    }
                )
            nursery.cancel_scope.cancel()

    async def _agent(self, index: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One agent; its failure is logged and counted, never the whole process's."""
        config = self.config(index)
        node_id = config.resolved_node_id()
        projects = default_projects(node_id, self.args.sessions)
        factory = simulated_factory(
            node_id=node_id, projects=projects, sessions=self.args.sessions, rate=self.args.rate, seed=index
        )

        def backend(outbox: Outbox) -> _BenchBackend:
            return _BenchBackend(factory(outbox), self.quiesce)

        started = False
        try:
            async with trio.open_nursery() as nursery:
                handle: AgentHandle = await nursery.start(
                    partial(
                        run_agent,
                        config,
                        backend,
                        shutdown=self.shutdown,
                        projects=projects,
                        rng=random.Random(index),
                    )
                )
                self.handles.append(handle)
                started = True
                task_status.started()
        except* Exception as group:
            self.failed += 1
            log.error("agent %s failed: %s", node_id, "; ".join(map(str, exception_leaves(group))))
            if not started:
                task_status.started()

    def status(self) -> AgentsStatus:
        threads = threading.active_count()
        self.threads_peak = max(self.threads_peak, threads)
        pending = [h.outbox.pending for h in self.handles]
        behind = None
        if self.marks is not None:
            behind = sum(1 for h, m in zip(self.handles, self.marks, strict=False) if h.outbox.acked_seq < m)
        return AgentsStatus(
            agents=self.args.count,
            started=len(self.handles),
            failed=self.failed,
            connected=sum(1 for h in self.handles if h.link.status.connected),
            connections=sum(h.link.status.connections for h in self.handles),
            last_seq=sum(h.outbox.last_seq for h in self.handles),
            pending=sum(pending),
            pending_max=max(pending, default=0),
            behind_mark=behind,
            threads=threads,
            threads_peak=self.threads_peak,
            loop_lag_ms=round(self.lag * 1000, 1),
        )

    async def _status_loop(self) -> None:
        start = trio.current_time()
        k = 0
        while True:
            k += 1
            await trio.sleep_until(start + k * self.args.status_every)
            _emit({"type": "status", **converter.unstructure(self.status())})
            self.lag = 0.0

    async def _lag_probe(self) -> None:
        """How late the event loop runs a task that asked to wake: the process's load."""
        while True:
            asked = trio.current_time() + _LAG_PROBE
            await trio.sleep_until(asked)
            self.lag = max(self.lag, trio.current_time() - asked)

    async def _control(self) -> None:
        """Control words on stdin, one a line (see the module docstring)."""
        buffer = b""
        async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
            while chunk := await stdin.receive_some(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._command(line.decode().strip())

    def _command(self, word: str) -> None:
        if word == "mark":
            self.marks = [h.outbox.last_seq for h in self.handles]
        elif word == "quiesce":
            self.quiesce.set()
        elif word == "seqs":
            _emit({"type": "seqs", "seqs": {h.node_id: h.outbox.last_seq for h in self.handles}})
        elif word:
            log.warning("unknown control word %r", word)


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark that runs a fleet of these processes (fan-in, recovery)."""
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4, help="bench.agents processes")
    parser.add_argument("--sessions", type=int, default=10, help="sessions per agent")
    parser.add_argument("--rate", type=float, default=0.2, help="events/s per agent")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="server.heartbeat_interval_sec")
    parser.add_argument("--start-rate", type=float, default=100.0, help="agents started per second per process")
    parser.add_argument("--workdir", help="keep the databases and logs here (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per figure")


def _emit(line: dict[str, object]) -> None:
    # A few short lines a second into a pipe the driver always reads: never blocks long.
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.agents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--supervisor", required=True, help="the supervisor's WebSocket URL (ws://host:port)")
    parser.add_argument("--token", required=True, help="the supervisor's auth token")
    parser.add_argument("--first", type=int, default=0, help="index of the first agent (node id bench-<index>)")
    parser.add_argument("--count", type=int, default=250, help="agents in this process")
    parser.add_argument("--sessions", type=int, default=10, help="simulated sessions per agent")
    parser.add_argument("--rate", type=float, default=1.0, help="events/s per agent (0 = as fast as acked)")
    parser.add_argument("--data-root", required=True, help="each agent's data dir is <data-root>/<node id>")
    parser.add_argument("--start-rate", type=float, default=100.0, help="agents started per second")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="link.connect_timeout_sec")
    parser.add_argument("--backoff-initial", type=float, default=0.2, help="link.backoff_initial_sec")
    parser.add_argument("--backoff-max", type=float, default=2.0, help="link.backoff_max_sec")
    parser.add_argument("--status-every", type=float, default=1.0, help="seconds between status lines")
    parser.add_argument("--control", action="store_true", help="read control words on stdin")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the agents until SIGTERM/SIGINT (each agent then closes its link cleanly)."""
    args = _parser().parse_args(argv)
    if args.rate > 0:
        # The simulator wakes every 50 ms whatever its rate: 20,000 wake-ups a second for
        # 1,000 agents, most of this process's CPU at a low rate. Wake once per event
        # instead (the rate is unchanged). A bench-only knob of the simulator's pacing.
        vars(simulate)["_TICK"] = max(simulate._TICK, 1.0 / args.rate)
    configure_logging(args.log_level, "text", secrets=[args.token])
    trio.run(_Agents(args).run)


# ---- the driver's side ------------------------------------------------------------------


@attrs.define
class _Process:
    """One agents process seen from the driver: its latest status and replies."""

    process: trio.Process
    count: int
    updated: Signal  # the fleet's: fired on every status line of any process
    started: trio.Event = attrs.field(factory=trio.Event)
    status: AgentsStatus | None = None
    seqs: dict[str, int] | None = None
    replied: trio.Event = attrs.field(factory=trio.Event)

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while chunk := await self.process.stdout.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._take(line)

    def _take(self, line: bytes) -> None:
        message = orjson.loads(line)
        kind = message.pop("type", None)
        if kind == "started":
            self.started.set()
        elif kind == "status":
            self.status = converter.structure(message, AgentsStatus)
            self.updated.fire()
        elif kind == "seqs":
            self.seqs = {str(k): int(v) for k, v in message["seqs"].items()}
            self.replied.set()

    async def send(self, word: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(word.encode() + b"\n")


@attrs.frozen
class Fleet:
    """The agents processes of a benchmark run."""

    processes: list[_Process]
    total: int
    updated: Signal

    @property
    def pids(self) -> list[int]:
        """Process ids, for CPU and memory sampling."""
        return [p.process.pid for p in self.processes]

    def complete(self) -> bool:
        """True once every process has sent a status line."""
        return all(p.status is not None for p in self.processes)

    async def wait_started(self, within: float) -> None:
        """Until every process has started all its agents."""
        with trio.fail_after(within):
            for p in self.processes:
                await p.started.wait()

    def statuses(self) -> list[AgentsStatus]:
        """The latest status line of every process that has sent one."""
        return [p.status for p in self.processes if p.status is not None]

    def total_of(self, field: Callable[[AgentsStatus], int | None]) -> int:
        """A status field summed over the processes (a missing status counts 0)."""
        return sum(field(s) or 0 for s in self.statuses())

    async def send(self, word: str) -> None:
        """A control word to every process."""
        for p in self.processes:
            await p.send(word)

    async def mark(self, within: float = 10.0) -> None:
        """Remember every agent's last seq; ``behind_mark`` counts the agents not acked so far.

        Waits for a status line taken after the mark, so no stale line is read as caught up.
        """
        for p in self.processes:
            p.status = None
        await self.send("mark")
        await self.wait_for(
            lambda: all(p.status is not None and p.status.behind_mark is not None for p in self.processes), within
        )

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        """Until *predicate* (checked after every status line) holds.

        Raises:
            trio.TooSlowError: it still does not after *within* seconds.
        """
        with trio.fail_after(within):
            while True:
                waiter = self.updated.waiter()
                if predicate():
                    return
                await waiter.wait()

    async def seqs(self, within: float = 10.0) -> dict[str, int]:
        """Every agent's last seq."""
        merged: dict[str, int] = {}
        with trio.fail_after(within):
            for p in self.processes:
                p.replied = trio.Event()
                await p.send("seqs")
                await p.replied.wait()
                assert p.seqs is not None
                merged.update(p.seqs)
        return merged


def _open_logs(data_root: Path, processes: int) -> list[BinaryIO]:
    data_root.mkdir(parents=True, exist_ok=True)
    return [(data_root / f"agents-{k}.log").open("ab") for k in range(processes)]


@asynccontextmanager
async def open_fleet(
    supervisor_url: str,
    token: str,
    *,
    agents: int,
    processes: int,
    data_root: Path,
    sessions: int = 10,
    rate: float = 1.0,
    start_rate: float = 100.0,
    status_every: float = 1.0,
    nice: int = 10,
    extra: list[str] | None = None,
) -> AsyncGenerator[Fleet, None]:
    """Run *agents* agents over *processes* ``bench.agents`` processes for the block.

    The processes run at *nice* (lower priority than the supervisor under test).

    Resource handling: on exit every process gets SIGTERM (its agents close their links
    cleanly), then SIGKILL after a bounded grace. Logs go to ``<data_root>/agents-K.log``.
    """
    logs = await trio.to_thread.run_sync(_open_logs, data_root, processes)
    updated = Signal()
    async with trio.open_nursery() as nursery:
        procs: list[_Process] = []
        try:
            base, rest = divmod(agents, processes)
            first = 0
            for k in range(processes):
                count = base + (1 if k < rest else 0)
                args = [
                    *("--supervisor", supervisor_url, "--token", token, "--first", str(first)),
                    *("--count", str(count), "--sessions", str(sessions), "--rate", str(rate)),
                    *("--data-root", str(data_root), "--start-rate", str(start_rate), "--control"),
                    *("--status-every", str(status_every)),
                    *(extra or []),
                ]
                with logs[k] as log_file:  # the child has its own copy of the descriptor
                    process = await trio.lowlevel.open_process(
                        [sys.executable, "-m", "bench.agents", *args],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log_file,
                        cwd=_REPO,
                    )
                # The load generators yield the CPU to the supervisor they load: in
                # production it has its own machine, and agents run elsewhere.
                psutil.Process(process.pid).nice(nice)
                proc = _Process(process, count, updated)
                procs.append(proc)
                nursery.start_soon(proc.read)
                first += count
            yield Fleet(procs, agents, updated)
        finally:
            with trio.move_on_after(2 * _STOP_GRACE + 5, shield=True):
                async with trio.open_nursery() as stopping:
                    for proc in procs:
                        stopping.start_soon(terminate, proc.process, _STOP_GRACE)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    main()
