"""``hal-supervisor`` with a switch for store faults: a real process, for chaos tests.

Run as ``python -c "from tests.chaos.faulty_supervisor import main; main()" --fault-file F
<hal-supervisor options>``. It is the real entry point (same CLI, logging, signals, exit
codes); the only difference is a task that watches *F* (JSON, rewritten atomically by
the test) and applies to the store's writer connection, under the store's own write gate:

* ``{"disk_full": true}``: ``PRAGMA max_page_count`` caps the database at its current
  size (:func:`tests.sqlite_faults.disk_full`): every write needing a new page fails with
  ``database or disk is full``, as on a full disk.
* ``{"commit_delay_ms": N}``: every ``COMMIT`` of the writer waits N ms first (an SQLite
  trace callback sleeping in the store's worker thread), as a slow fsync would.

A missing or unreadable file means no fault. Every change is logged (``chaos: store
fault ...``), so the supervisor's log shows when the fault began and ended.

Why not a real small filesystem: mounting one needs privileges the test machine may not
have, and ``max_page_count`` is a per-connection setting, so it has to be applied inside
the supervisor process.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson
import trio

import halswarm.supervisor.main as supervisor_main
from halswarm.supervisor.app import SupervisorHandle, run_supervisor
from tests.sqlite_faults import disk_full

if TYPE_CHECKING:
    import sqlite3

    from halswarm.config.supervisor import SupervisorConfig
    from halswarm.sdnotify import Notifier
    from halswarm.store import Store
    from halswarm.supervisor.reload import ReloadRequest

__all__ = ["main"]

log = logging.getLogger("halswarm.chaos")

_POLL_INTERVAL: Final = 0.05
_FAULT_FILE_OPTION: Final = "--fault-file"


def _read_faults(path: Path) -> dict[str, object]:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _slow_commits(conn: sqlite3.Connection, delay_ms: float) -> None:
    if delay_ms <= 0:
        conn.set_trace_callback(None)
        return

    def trace(statement: str) -> None:
        # Runs in the store's worker thread, inside the write gate: the event loop never waits.
        if statement.lstrip()[:6].upper() in ("COMMIT", "RELEAS"):
            time.sleep(delay_ms / 1000)

    conn.set_trace_callback(trace)


async def _apply_faults(store: Store, path: Path) -> None:
    """Poll *path* and switch the store faults it names on and off."""
    writer, gate = store._writer, store._write_gate
    applied: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as full:
        while True:
            wanted = await trio.to_thread.run_sync(_read_faults, path)
            is_full = bool(wanted.get("disk_full", False))
            if is_full != bool(applied.get("disk_full")):
                if is_full:
                    await full.enter_async_context(disk_full(writer, gate))
                else:
                    await full.aclose()
                log.warning("chaos: store fault: disk full %s", "on" if is_full else "off")
            delay = wanted.get("commit_delay_ms", 0)
            delay_ms = float(delay) if isinstance(delay, int | float) else 0.0
            if delay_ms != applied.get("commit_delay_ms", 0.0):
                async with gate.hold(urgent=True):
                    await trio.to_thread.run_sync(_slow_commits, writer, delay_ms)
                log.warning("chaos: store fault: commit delay %g ms", delay_ms)
            applied = {"disk_full": is_full, "commit_delay_ms": delay_ms}
            await trio.sleep(_POLL_INTERVAL)


async def _run_with_faults(
    config: SupervisorConfig,
    *,
    shutdown: trio.Event,
    fault_file: Path,
    notifier: Notifier | None = None,
    config_path: Path | None = None,
    reload_requests: trio.MemoryReceiveChannel[ReloadRequest] | None = None,
) -> None:
    """``run_supervisor`` (with what hal-supervisor's CLI passes) plus the fault watcher (which ends when the
    supervisor stops)."""
    async with trio.open_nursery() as nursery:

        async def supervisor(*, task_status: trio.TaskStatus[SupervisorHandle]) -> None:
            await run_supervisor(
                config,
                shutdown=shutdown,
                notifier=notifier,
                config_path=config_path,
                reload_requests=reload_requests,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()

        handle: SupervisorHandle = await nursery.start(supervisor)
        nursery.start_soon(_apply_faults, handle.store, fault_file)


def main() -> None:
    """Strip ``--fault-file F`` from the arguments, then run hal-supervisor's CLI."""
    args = sys.argv[1:]
    at = args.index(_FAULT_FILE_OPTION)
    fault_file = Path(args[at + 1])
    del args[at : at + 2]
    sys.argv[1:] = args
    supervisor_main.run_supervisor = partial(_run_with_faults, fault_file=fault_file)  # type: ignore[attr-defined]
    supervisor_main.main()
