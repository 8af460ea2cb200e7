"""Shared pieces of the benchmarks: real processes on loopback, figures, the machine.

Every benchmark is a script (``python -m bench.<name>``) that starts what it measures as
real processes, measures, prints its figures as a table (and one JSON line per figure
with ``--json``), and exits 0. Targets are printed next to the figures; a missed target
is reported, not hidden, and does not fail the run (``make bench`` prints every figure).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import orjson
import psutil
import trio

from halswarm.testing import Daemon, free_port, start_daemon, write_json
from halswarm.testing import wait_supervisor_ready as wait_ready

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

__all__ = [
    "TOKEN",
    "Figure",
    "ProcessSampler",
    "SupervisorProcess",
    "agent_config_file",
    "machine",
    "percentile",
    "report",
    "supervisor_process",
    "wait_ready",
]

TOKEN: Final = "bench-token-0123456789abcdef"


@attrs.frozen
class Figure:
    """One measured figure and, when there is one, its target (``met`` says how it did)."""

    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None

    def row(self) -> tuple[str, str, str, str]:
        """Name, value with unit, target, verdict."""
        verdict = "" if self.met is None else ("met" if self.met else "MISSED")
        return self.name, f"{self.value:,.2f} {self.unit}".strip(), self.target, verdict


def percentile(values: Sequence[float], pct: float) -> float:
    """The *pct*-th percentile (0-100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(pct * 10) - 1))]


def machine() -> str:
    """What the figures were measured on."""
    freq = psutil.cpu_freq()
    mhz = f" @ {freq.max or freq.current:.0f} MHz" if freq else ""
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.processor() or platform.machine()}{mhz}, {os.cpu_count()} CPUs, {mem:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def report(title: str, figures: list[Figure]) -> None:
    """Print *figures* as a table (and as JSON lines when ``--json`` is on the command line)."""
    rows = [("figure", "value", "target", ""), *(f.row() for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\n== {title} ==  ({machine()})")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if "--json" in sys.argv:
        for figure in figures:
            print(orjson.dumps({"bench": title, **attrs.asdict(figure)}).decode())
    sys.stdout.flush()


class ProcessSampler:
    """CPU % and RSS of a process (and its children) between two calls of :meth:`sample`."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._cpu = self._cpu_seconds()
        self._at = trio.current_time()
        self.peak_rss_mb = 0.0

    def _cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        """Resident memory now, in MiB (the peak is kept)."""
        rss = self.process.memory_info().rss / 2**20
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        return rss

    def sample(self) -> tuple[float, float]:
        """(CPU % since the last sample — 100 = one core busy, RSS MiB now)."""
        cpu, at = self._cpu_seconds(), trio.current_time()
        busy = 100.0 * (cpu - self._cpu) / max(at - self._at, 1e-9)
        self._cpu, self._at = cpu, at
        return busy, self.rss_mb()


@attrs.frozen
class SupervisorProcess:
    """A ``hal-supervisor`` process on loopback, with what clients need to reach it."""

    daemon: Daemon
    ws_port: int
    http_port: int
    db_path: Path
    config_path: Path

    @property
    def ws_url(self) -> str:
        """Where agents connect."""
        return f"ws://127.0.0.1:{self.ws_port}"

    def api(self, timeout: float = 30.0) -> httpx.AsyncClient:
        """An HTTP API client with the bench token."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.http_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=httpx.Timeout(timeout),
        )


@asynccontextmanager
async def supervisor_process(
    workdir: Path, *, heartbeat_interval_sec: float = 30.0, **server: object
) -> AsyncGenerator[SupervisorProcess, None]:
    """Run ``hal-supervisor`` (a real process, warnings-level logs) for the block."""
    ws_port, http_port = free_port(), free_port()
    db_path = workdir / "supervisor.db"
    config = write_json(
        workdir / "supervisor.json",
        {
            "server": {
                "auth_token": TOKEN,
                "host": "127.0.0.1",
                "port": ws_port,
                "http_port": http_port,
                "heartbeat_interval_sec": heartbeat_interval_sec,
                **server,
            },
            "database": {"path": str(db_path)},
        },
    )
    args = ["--config", str(config), "--log-format", "text", "--log-level", "warning"]
    daemon = await start_daemon("supervisor", args, workdir / "supervisor.log")
    try:
        await wait_ready(http_port)
        yield SupervisorProcess(daemon, ws_port, http_port, db_path, config)
    finally:
        with trio.move_on_after(20, shield=True):
            await daemon.stop()


def agent_config_file(path: Path, supervisor: SupervisorProcess, node_id: str, data_dir: Path, **extra: object) -> Path:
    """An agent config for a bench agent (fast reconnects)."""
    return write_json(
        path,
        {
            "supervisor_url": supervisor.ws_url,
            "auth_token": TOKEN,
            "node_id": node_id,
            "data_dir": str(data_dir),
            "link": {
                "backoff_initial_sec": 0.1,
                "backoff_max_sec": 1.0,
                "stable_after_sec": 2,
                "connect_timeout_sec": 1.5,
            },
            **extra,
        },
    )
