"""``python -m bench.recovery``: SIGKILL the supervisor under the fan-in load, restart it.

The fan-in setup (``bench.fanin``: 1,000 simulated agents over 4 ``bench.agents``
processes, 10 sessions each, 1 event/s per agent, heartbeat 5 s) runs until steady; then
the supervisor is SIGKILLed and at once started again on the same ports and database.
Measured from the kill:

- **all agents back**: every agent welcomed by the new supervisor (the agents' own
  status lines, so no API polling loads the supervisor during its recovery);
- **all backlogs drained**: when the restarted supervisor is ready, every agent's last
  seq is marked; the backlog is drained once every agent has an ack at or beyond its
  mark (everything produced while the supervisor was down or starting is stored). Events
  keep flowing meanwhile, as they would in production.

Then production stops (``quiesce``), every outbox empties, and the stored events are
checked (the SQLite ``events`` table, opened read-only): for every node, seqs 1..last
are stored exactly once. Lost events (must be 0) and stored-twice events are counted,
and the supervisor's ``nodes.last_seq`` must equal each agent's last seq.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import psutil
import trio

from bench.agents import Fleet, add_fleet_arguments, open_fleet
from bench.common import TOKEN, Figure, SupervisorProcess, report, supervisor_process, wait_ready
from bench.fanin import MachineLoad, nodes_view, progress, wait_all_online
from halswarm.testing import Daemon, start_daemon

if TYPE_CHECKING:
    import httpx

__all__ = ["StoredCheck", "check_stored", "main"]

RECOVERY_TARGET_S: Final = 15.0


@attrs.frozen
class StoredCheck:
    """What the supervisor's database holds against what the agents produced."""

    nodes: int
    events: int  # the agents' events that should be stored (sum of last seqs)
    lost: int  # seqs in 1..last not stored
    duplicates: int  # (node, seq) stored more than once
    extra: int  # stored seqs beyond the agent's last seq
    position_mismatches: int  # nodes whose stored last_seq differs from the agent's


def check_stored(db_path: Path, last_seqs: dict[str, int]) -> StoredCheck:
    """Compare the events table (opened read-only) with every node's last seq. Blocking."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT node_id, seq FROM events WHERE node_id LIKE 'bench-%'").fetchall()
        positions = dict(conn.execute("SELECT id, last_seq FROM nodes").fetchall())
    finally:
        conn.close()
    seen: dict[str, set[int]] = {node: set() for node in last_seqs}
    duplicates = extra = 0
    for node, seq in rows:
        seqs = seen.setdefault(node, set())
        if seq in seqs:
            duplicates += 1
        seqs.add(seq)
        if seq > last_seqs.get(node, 0):
            extra += 1
    lost = sum(sum(1 for s in range(1, last + 1) if s not in seen[node]) for node, last in last_seqs.items())
    mismatches = sum(1 for node, last in last_seqs.items() if positions.get(node) != last)
    return StoredCheck(len(last_seqs), sum(last_seqs.values()), lost, duplicates, extra, mismatches)


@attrs.define
class _Timeline:
    """Moments of the recovery, in trio time."""

    killed: float = 0.0
    ready: float = 0.0
    back: float = 0.0
    drained: float = 0.0


async def _restart(sup: SupervisorProcess, workdir: Path, restarted: list[Daemon]) -> None:
    """The same command line as ``supervisor_process``: same config, ports and database."""
    args = ["--config", str(sup.config_path), "--log-format", "text", "--log-level", "warning"]
    restarted.append(await start_daemon("supervisor", args, workdir / "supervisor.log"))
    await wait_ready(sup.http_port, within=60.0)


async def _run(args: argparse.Namespace) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        workdir = Path(args.workdir or tmp)
        restarted: list[Daemon] = []
        try:
            async with (
                supervisor_process(workdir, heartbeat_interval_sec=args.heartbeat) as sup,
                sup.api() as api,
                open_fleet(
                    sup.ws_url,
                    TOKEN,
                    agents=args.agents,
                    processes=args.processes,
                    data_root=workdir / "agents",
                    sessions=args.sessions,
                    rate=args.rate,
                    start_rate=args.start_rate,
                    status_every=0.1,
                ) as fleet,
            ):
                await wait_all_online(fleet, api, within=args.within)
                print(f"recovery: {args.agents} agents online; steady for {args.settle:g} s", flush=True)
                await trio.sleep(args.settle)
                figures = await _kill_and_recover(args, sup, workdir, fleet, api, restarted)
                return figures + await _verify(args, sup, fleet)
        finally:
            # After the agents stopped (they close cleanly while it still runs).
            for daemon in restarted:
                with trio.move_on_after(20, shield=True):
                    await daemon.stop()


async def _kill_and_recover(
    args: argparse.Namespace,
    sup: SupervisorProcess,
    workdir: Path,
    fleet: Fleet,
    api: httpx.AsyncClient,
    restarted: list[Daemon],
) -> list[Figure]:
    t = _Timeline()
    backlog = fleet.total_of(lambda s: s.pending)
    connections = fleet.total_of(lambda s: s.connections)
    seq_before = fleet.total_of(lambda s: s.last_seq)
    machine = MachineLoad()
    t.killed = trio.current_time()
    sup.daemon.kill()
    await sup.daemon.process.wait()
    print("recovery: supervisor killed (SIGKILL); restarting it", flush=True)
    await _restart(sup, workdir, restarted)
    t.ready = trio.current_time()
    await fleet.mark()
    marked = trio.current_time()

    def back() -> bool:
        # Reconnected: more connections than before the kill for every agent, and all welcomed.
        return fleet.total_of(lambda s: s.connected) >= fleet.total and (
            fleet.total_of(lambda s: s.connections) >= connections + fleet.total
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(progress, fleet, every=1.0))
        await fleet.wait_for(back, args.within)
        t.back = trio.current_time()
        await fleet.wait_for(lambda: fleet.total_of(lambda s: s.behind_mark) == 0, args.within)
        t.drained = trio.current_time()
        nursery.cancel_scope.cancel()
    rate = (fleet.total_of(lambda s: s.last_seq) - seq_before) / (t.drained - t.killed)
    busy = machine.sample()
    online = (await nodes_view(api)).online
    total = t.drained - t.killed
    figures = [
        Figure("agents", args.agents, ""),
        Figure("sessions", args.agents * args.sessions, ""),
        Figure("events produced during recovery", rate, "events/s"),
        Figure("unacked events at the kill", backlog, ""),
        Figure("kill -> restarted supervisor ready", t.ready - t.killed, "s"),
        Figure("kill -> every agent back online", t.back - t.killed, "s"),
        Figure("kill -> every backlog drained", total, "s", f"<= {RECOVERY_TARGET_S:g} s", total <= RECOVERY_TARGET_S),
        Figure("  (of which marking the backlogs)", marked - t.ready, "s"),
        Figure("nodes online in the API after recovery", online, "", f"{args.agents:,}", online == args.agents),
        Figure("machine CPU busy during recovery", busy, "%", f"of {100 * (psutil.cpu_count() or 1)} %"),
    ]
    return figures


async def _verify(args: argparse.Namespace, sup: SupervisorProcess, fleet: Fleet) -> list[Figure]:
    """Stop production, let every outbox empty, then count what is stored."""
    await fleet.send("quiesce")
    await fleet.wait_for(lambda: fleet.total_of(lambda s: s.pending) == 0, args.within)
    await trio.sleep(0.5)  # a final state save may append after the first empty status
    await fleet.wait_for(lambda: fleet.total_of(lambda s: s.pending) == 0, args.within)
    last_seqs = await fleet.seqs()
    check = await trio.to_thread.run_sync(check_stored, sup.db_path, last_seqs)
    return [
        Figure("events checked", check.events, ""),
        Figure("events lost", check.lost, "", "0", check.lost == 0),
        Figure("events stored twice", check.duplicates, "", "0", check.duplicates == 0),
        Figure("stored beyond the agent's last seq", check.extra, "", "0", check.extra == 0),
        Figure("nodes with last_seq != agent's", check.position_mismatches, "", "0", check.position_mismatches == 0),
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.split("\n\n")[0])
    add_fleet_arguments(parser)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of steady flow before the kill")
    parser.add_argument("--within", type=float, default=120.0, help="give up on a phase after this long")
    return parser


def main() -> None:
    """Run the benchmark and print its figures (exit 0 even when a target is missed)."""
    args = _parser().parse_args()
    figures = trio.run(_run, args)
    report(f"recovery: SIGKILL of the supervisor under {args.agents:,} agents", figures)
    sys.exit(0)


if __name__ == "__main__":
    main()
