"""Ingest: agent processes streaming as fast as the link allows into a real supervisor.

``python -m bench.ingest [--json]``. What is measured, in one run:

1. **Limits of this machine for the same event shapes** (before anything else runs, so
   they get the whole machine): JSON decode rate of ``events`` frames (bare
   ``orjson.loads`` and the full validating codec, ``halswarm.proto.decode``); SQLite
   batched insert rate into the supervisor's real schema, both bare (``executemany`` of
   prepared rows) and through the store's ``ingest`` transaction (what the pipeline runs).
2. **End to end**: a ``hal-supervisor`` process and ``AGENTS`` ``hal-agent --simulate``
   processes (``--rate 0``: as fast as the link drains them). Sustained events/s
   persisted = growth of ``MAX(id)`` of the supervisor's ``events`` table (a fresh
   database: ids are row counts) over a steady window after a warm-up, read through a
   read-only connection in a worker thread.
3. **Ack latency**, from a probe agent in this process (``run_agent`` with a backend that
   emits ``PROBE_RATE`` events/s in small batches): from the moment the outbox commit of
   an event returns to the agent's event loop, to the moment the agent's reader has
   processed the cumulative ack covering it. The probe shares the supervisor (and its
   pipeline queue) with the process agents, so this is the latency under full load.

Figures: events/s, ack p50/p99, achieved/limit ratios, and the CPU % of the supervisor and
the agents over the window (100 = one core), and of the whole machine (other load
would bias every figure). ``BENCH_WORKDIR=dir`` keeps the logs and databases there.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson
import psutil
import trio

from bench.common import (
    Figure,
    ProcessSampler,
    SupervisorProcess,
    agent_config_file,
    percentile,
    report,
    supervisor_process,
)
from halswarm.agent.app import run_agent
from halswarm.agent.backend import AlwaysHealthy, CommandFailedError, EventSink, OutEvent
from halswarm.agent.simulate import sample_events
from halswarm.config import load_agent_config
from halswarm.proto import Events, WireEvent, decode, encode_event_body, encode_events_raw
from halswarm.store import sql
from halswarm.store.store import connect, migrate
from halswarm.testing import Daemon, start_daemon
from halswarm.timeutil import format_ts, system_now

if TYPE_CHECKING:
    from halswarm.agent.outbox import Outbox
    from halswarm.jsontypes import JSONObject
    from halswarm.proto import CommandMsg

TARGET_EVENTS_PER_S: Final = 100_000.0
AGENTS: Final = max(2, os.cpu_count() or 2)  # producers; the supervisor is one more process
SESSIONS_PER_AGENT: Final = 20
MAX_EVENTS_PER_AGENT: Final = 50_000_000  # never reached within the run
WARMUP_S: Final = 8.0
WINDOW_S: Final = float(os.environ.get("BENCH_WINDOW", "30"))
SAMPLE_EVERY_S: Final = 1.0
PROBE_RATE: Final = 200.0  # events/s from the latency probe (negligible against the load)
PROBE_BATCH: Final = 4
BATCH_EVENTS: Final = 1000  # the agents' default link.batch_max_events
LIMIT_EVENTS: Final = 100_000  # events per limit measurement
SQL_TXN_EVENTS: Final = 20_000  # the pipeline's max_events_per_txn


# ---- limits ------------------------------------------------------------------------------


def _sample_frames(n: int) -> tuple[list[str], list[WireEvent]]:
    """Wire frames of *n* simulator-shaped events, ``BATCH_EVENTS`` per frame, as agents send them."""
    ts = format_ts(system_now())
    rows: list[tuple[int, bytes]] = []
    for seq, ev in enumerate(sample_events(n, node_id="limits", sessions=SESSIONS_PER_AGENT), start=1):
        wire = WireEvent(seq, ts, ev.type, ev.session_id, ev.project, ev.data, ev.state)
        rows.append((seq, encode_event_body(wire)))
    frames = [encode_events_raw(rows[i : i + BATCH_EVENTS]) for i in range(0, len(rows), BATCH_EVENTS)]
    events: list[WireEvent] = []
    for frame in frames:
        msg = decode(frame)
        assert isinstance(msg, Events)
        events += msg.events
    return frames, events


def _rate(n: int, fn: object) -> float:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def measure_limits(workdir: Path) -> dict[str, float]:
    """Events/s this machine manages for each stage alone, on one core."""
    workdir.mkdir(parents=True, exist_ok=True)
    frames, events = _sample_frames(LIMIT_EVENTS)
    n = len(events)
    frame_bytes = sum(len(f) for f in frames)
    limits = {"frame_bytes_per_event": frame_bytes / n}
    limits["json_loads"] = _rate(n, lambda: [orjson.loads(f) for f in frames])
    limits["codec_decode"] = _rate(n, lambda: [decode(f) for f in frames])

    # Bare inserts: rows prepared beforehand, one transaction per SQL_TXN_EVENTS.
    rows = [
        (
            "limits",
            e.seq,
            e.ts,
            e.session_id,
            e.project,
            e.type,
            (e.data_json or orjson.dumps(e.data)).decode(),
        )
        for e in events
    ]
    conn = connect(workdir / "limit-bare.db")
    migrate(conn)

    def bare() -> None:
        for i in range(0, n, SQL_TXN_EVENTS):
            with conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO events (node_id, seq, ts, session_id, project, type, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows[i : i + SQL_TXN_EVENTS],
                )

    limits["sqlite_insert"] = _rate(n, bare)
    conn.close()

    # The store's ingest transaction (events, session states, node position, activity).
    conn = connect(workdir / "limit-store.db")
    migrate(conn)

    def store() -> None:
        for i in range(0, n, SQL_TXN_EVENTS):
            sql.ingest(conn, [sql.IngestBatch("limits", events[i : i + SQL_TXN_EVENTS])], events[0].ts)

    limits["store_ingest"] = _rate(n, store)
    conn.close()
    return limits


# ---- the latency probe --------------------------------------------------------------------


class ProbeBackend(AlwaysHealthy):
    """Emits small batches at a steady rate and records when each batch was committed."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.committed: list[tuple[int, float]] = []  # (last seq of a batch, trio time)
        self.latencies: list[float] = []
        self.measuring = False

    async def run(self, sink: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Emit forever; a second task turns acks into latencies."""
        task_status.started()
        data: JSONObject = {"part": {"type": "text", "text": "Running the tests"}}
        batch = [OutEvent("message.part.updated", "ses_probe", "probe", data) for _ in range(PROBE_BATCH)]
        period = PROBE_BATCH / PROBE_RATE
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._acks)
            start = trio.current_time()
            k = 0
            while True:
                k += 1
                await sink.emit(batch)
                # No checkpoint since the commit returned: this is the append time.
                self.committed.append((self.outbox.last_seq, trio.current_time()))
                await trio.sleep_until(start + k * period)

    async def _acks(self) -> None:
        while True:
            await self.outbox.acked.waiter().wait()
            now, acked = trio.current_time(), self.outbox.acked_seq
            done = 0
            for seq, at in self.committed:
                if seq > acked:
                    break
                done += 1
                if self.measuring:
                    self.latencies.append(now - at)
            del self.committed[:done]

    async def execute(self, command: CommandMsg) -> JSONObject:
        """The probe runs no commands."""
        raise CommandFailedError(f"{command.command_type} is not supported by the probe")


# ---- end to end ---------------------------------------------------------------------------


def _max_id(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
    finally:
        conn.close()


async def _persisted(db_path: Path) -> tuple[int, float]:
    """(rows in events, trio time of the read)."""
    rows = await trio.to_thread.run_sync(_max_id, db_path)
    return rows, trio.current_time()


async def _start_agents(sup: SupervisorProcess, workdir: Path) -> list[Daemon]:
    agents = []
    for i in range(AGENTS):
        node = f"ingest-{i}"
        config = agent_config_file(workdir / f"{node}.json", sup, node, workdir / node)
        args = [
            "--config",
            str(config),
            "--simulate",
            str(SESSIONS_PER_AGENT),
            "--rate",
            "0",
            "--max-events",
            str(MAX_EVENTS_PER_AGENT),
            "--log-level",
            "warning",
            "--log-format",
            "text",
        ]
        agents.append(await start_daemon("agent", args, workdir / f"{node}.log"))
    return agents


async def end_to_end(workdir: Path) -> dict[str, float]:
    """Run the supervisor, the agents and the probe; measure the steady window."""
    out: dict[str, float] = {}
    async with supervisor_process(workdir) as sup:
        agents = await _start_agents(sup, workdir)
        probe_config = load_agent_config(agent_config_file(workdir / "probe.json", sup, "probe", workdir / "probe"))
        probes: list[ProbeBackend] = []

        def factory(outbox: Outbox) -> ProbeBackend:
            probes.append(ProbeBackend(outbox))
            return probes[0]

        shutdown = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(run_agent, probe_config, factory, shutdown=shutdown))
                sup_cpu = ProcessSampler(sup.daemon.pid)
                agent_cpu = [ProcessSampler(a.pid) for a in agents]
                await trio.sleep(WARMUP_S)
                for a in agents:
                    if a.process.returncode is not None:
                        raise RuntimeError(f"{a.name} exited with {a.process.returncode}:\n{a.log_text()[-2000:]}")
                probes[0].measuring = True
                psutil.cpu_percent()  # starts the machine-wide measurement
                sup_cpu.sample()
                for s in agent_cpu:
                    s.sample()
                first, t0 = await _persisted(sup.db_path)
                rates = []
                last, t_last = first, t0
                while t_last - t0 < WINDOW_S:
                    await trio.sleep(SAMPLE_EVERY_S)
                    rows, at = await _persisted(sup.db_path)
                    rates.append((rows - last) / (at - t_last))
                    last, t_last = rows, at
                probes[0].measuring = False
                out["machine_cpu"] = psutil.cpu_percent() * (os.cpu_count() or 1)
                out["events_per_s"] = (last - first) / (t_last - t0)
                out["min_1s"] = min(rates)
                out["max_1s"] = max(rates)
                out["supervisor_cpu"], out["supervisor_rss"] = sup_cpu.sample()
                agent_samples = [s.sample() for s in agent_cpu]
                out["agents_cpu"] = sum(c for c, _ in agent_samples)
                out["agent_rss_max"] = max(r for _, r in agent_samples)
                latencies = probes[0].latencies
                out["ack_samples"] = len(latencies)
                out["ack_p50_ms"] = percentile(latencies, 50) * 1000
                out["ack_p99_ms"] = percentile(latencies, 99) * 1000
                out["ack_max_ms"] = max(latencies, default=0.0) * 1000
                shutdown.set()
        finally:
            with trio.move_on_after(20, shield=True):
                for a in agents:
                    await a.stop()
    return out


async def main() -> None:
    """Measure the limits, then the end-to-end run, and print both."""
    keep = os.environ.get("BENCH_WORKDIR")  # keep logs and databases there (debugging)
    with tempfile.TemporaryDirectory(prefix="halswarm-bench-ingest-") as tmp:
        workdir = Path(keep or tmp)
        limits = await trio.to_thread.run_sync(measure_limits, workdir)
        e2e = await end_to_end(workdir)
    rate = e2e["events_per_s"]
    figures = [
        Figure(
            f"ingest, {AGENTS} agent processes (sustained)",
            rate,
            "events/s",
            f">= {TARGET_EVENTS_PER_S:,.0f}",
            rate >= TARGET_EVENTS_PER_S,
        ),
        Figure("ingest, slowest 1 s of the window", e2e["min_1s"], "events/s"),
        Figure("ingest, fastest 1 s of the window", e2e["max_1s"], "events/s"),
        Figure("ack latency p50 (outbox commit -> ack)", e2e["ack_p50_ms"], "ms"),
        Figure("ack latency p99", e2e["ack_p99_ms"], "ms"),
        Figure("ack latency max", e2e["ack_max_ms"], "ms"),
        Figure("ack latency samples", e2e["ack_samples"], "batches"),
        Figure("supervisor CPU over the window", e2e["supervisor_cpu"], "%"),
        Figure("agents' CPU over the window (sum)", e2e["agents_cpu"], "%"),
        # CPU time per event persisted: the figure other load on the machine biases least.
        Figure("supervisor CPU time per event", 1e4 * e2e["supervisor_cpu"] / rate if rate else 0.0, "us"),
        Figure("agents' CPU time per event", 1e4 * e2e["agents_cpu"] / rate if rate else 0.0, "us"),
        Figure("whole machine CPU over the window (all processes)", e2e["machine_cpu"], "%"),
        Figure("supervisor RSS at the end", e2e["supervisor_rss"], "MiB"),
        Figure("wire bytes per event", limits["frame_bytes_per_event"], "B"),
        Figure("limit: JSON decode (orjson.loads)", limits["json_loads"], "events/s"),
        Figure("limit: frame decode + validation (codec)", limits["codec_decode"], "events/s"),
        Figure("limit: SQLite batched insert (events table)", limits["sqlite_insert"], "events/s"),
        Figure("limit: store ingest transaction", limits["store_ingest"], "events/s"),
        Figure("achieved / JSON decode", rate / limits["json_loads"], "x"),
        Figure("achieved / codec decode", rate / limits["codec_decode"], "x"),
        Figure("achieved / SQLite insert", rate / limits["sqlite_insert"], "x"),
        Figure("achieved / store ingest", rate / limits["store_ingest"], "x"),
    ]
    report("ingest", figures)


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
