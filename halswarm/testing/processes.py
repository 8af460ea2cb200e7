"""Real processes for end-to-end and chaos tests: the installed entry points, on loopback."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Final

import httpx
import orjson
import trio

from halswarm.runtime import terminate
from halswarm.testing.harness import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject

__all__ = [
    "Daemon",
    "agent_json",
    "free_port",
    "start_daemon",
    "stored_seqs",
    "supervisor_json",
    "wait_supervisor_ready",
    "write_json",
]

_STOP_GRACE: Final = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_json(path: Path, value: object) -> Path:
    """Write *value* as JSON to *path* (creating parent directories)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    return path


def supervisor_json(*, token: str, ws_port: int, http_port: int, db: Path) -> JSONObject:
    """A ``hal-supervisor`` config on loopback with a short shutdown grace (add sections to it)."""
    return {
        "server": {
            "auth_token": token,
            "host": "127.0.0.1",
            "port": ws_port,
            "http_port": http_port,
            "shutdown_grace_sec": 2,
        },
        "database": {"path": str(db)},
    }


def agent_json(*, token: str, ws_port: int, node_id: str, data_dir: Path) -> JSONObject:
    """A ``hal-agent`` config for the supervisor on loopback port *ws_port* (add keys to it)."""
    return {
        "supervisor_url": f"ws://127.0.0.1:{ws_port}",
        "auth_token": token,
        "node_id": node_id,
        "data_dir": str(data_dir),
    }


class Daemon:
    """A running ``hal-supervisor`` or ``hal-agent`` subprocess with its log file."""

    def __init__(self, process: trio.Process, log_path: Path, name: str) -> None:
        self.process = process
        self.log_path = log_path
        self.name = name

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def log_text(self) -> str:
        """Everything the process logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye (a crash)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, grace: float = _STOP_GRACE) -> int:
        """SIGTERM, wait (bounded), then SIGKILL. Returns the exit code."""
        await terminate(self.process, grace)
        code = self.process.returncode
        return code if code is not None else -9


async def start_daemon(program: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Daemon:
    """Start ``python -m halswarm.<program>`` style entry points as subprocesses.

    *program* is ``supervisor`` or ``agent``; output goes to *log_path*.
    """
    module = {"supervisor": "halswarm.supervisor.main", "agent": "halswarm.agent.main"}[program]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", f"import {module} as m; m.main()", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
    return Daemon(process, log_path, f"{program}:{process.pid}")


def stored_seqs(db: Path) -> dict[str, tuple[int, int, int, int]]:
    """Per agent node in a supervisor database: (rows, distinct seqs, min seq, max seq).

    Read-only and blocking (call it in a worker thread): the exactly-once check of the
    crash, chaos and recovery runs (rows == distinct == max - min + 1 means no loss and
    no duplicate).
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT node_id, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events "
            "WHERE node_id != 'supervisor' GROUP BY node_id"
        ).fetchall()
    finally:
        conn.close()
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


async def wait_supervisor_ready(http_port: int, within: float = 30.0) -> None:
    """Until the supervisor on 127.0.0.1:*http_port* answers ``/readyz`` with 200."""

    async def probe() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(f"http://127.0.0.1:{http_port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(probe, within=within, interval=0.1, what="supervisor ready")
