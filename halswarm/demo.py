"""``make demo``: a local supervisor and one agent with simulated sessions.

Writes configs under ``--dir`` (default ``./.halswarm``) on first run — a random token,
loopback listeners, the embedded SQLite database — and a ``halctl.json`` so ``halctl``
works from this directory with no flags. Then runs the real ``hal-supervisor`` and
``hal-agent`` programs as child processes until Ctrl-C.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import httpx
import orjson
import trio

from halswarm.runtime import terminate, watch_signals

__all__ = ["main"]

WS_PORT: Final = 8420
HTTP_PORT: Final = 8421
_READY_TIMEOUT: Final = 30.0
_STOP_GRACE: Final = 10.0


def _write_once(path: Path, value: object) -> bool:
    """Write JSON unless the file exists (never overwrite an operator's edits)."""
    if path.exists():
        return False
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    return True


def prepare(directory: Path, sessions: int) -> tuple[Path, Path, str]:
    """Create the demo's configs (once); returns the two config paths and the token."""
    directory.mkdir(parents=True, exist_ok=True)
    sup_path = directory / "supervisor.json"
    token = secrets.token_urlsafe(24)
    if sup_path.exists():
        token = str(orjson.loads(sup_path.read_bytes())["server"]["auth_token"])
    _write_once(
        sup_path,
        {
            "server": {"auth_token": token, "host": "127.0.0.1", "port": WS_PORT, "http_port": HTTP_PORT},
            "database": {"path": str((directory / "supervisor.db").resolve())},
        },
    )
    projects = [
        {"name": name, "directory": str((directory / "projects" / name).resolve())}
        for name in ("web-frontend", "payments-api", "data-pipeline")[: max(1, min(3, sessions))]
    ]
    agent_path = directory / "agent.json"
    _write_once(
        agent_path,
        {
            "supervisor_url": f"ws://127.0.0.1:{WS_PORT}",
            "auth_token": token,
            "node_id": "demo-node",
            "data_dir": str((directory / "agent").resolve()),
            "projects": projects,
        },
    )
    _write_once(directory / "halctl.json", {"url": f"http://127.0.0.1:{HTTP_PORT}", "token": token})
    return sup_path, agent_path, token


def _program(name: str) -> str:
    """The console script installed next to this interpreter (the demo's .venv)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


async def _wait_ready(token: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=2.0) as client:
        with trio.fail_after(_READY_TIMEOUT):
            while True:
                try:
                    nodes = await client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
                    if nodes.status_code == 200 and any(n["status"] == "online" for n in nodes.json()["nodes"]):
                        return
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.25)


def _banner(directory: Path, sessions: int) -> str:
    d = directory
    return f"""
halswarm demo is running (Ctrl-C to stop)
  supervisor  agents on ws://127.0.0.1:{WS_PORT}, HTTP API on http://127.0.0.1:{HTTP_PORT}
  agent       demo-node with {sessions} simulated sessions
  state       {d}/  (logs: {d}/supervisor.log, {d}/agent.log)

Try, in another shell in this directory:
  .venv/bin/halctl nodes list
  .venv/bin/halctl sessions list
  .venv/bin/halctl sessions logs <session-id> --limit 20
  .venv/bin/halctl sessions inject payments-api "Add tests for the refund path"
  .venv/bin/halctl sessions restart <session-id>
  curl localhost:{HTTP_PORT}/healthz
  curl localhost:{HTTP_PORT}/readyz
  curl -s localhost:{HTTP_PORT}/metrics | grep hal_o_swarm_nodes_online
  curl -H "Authorization: Bearer $(python3 -c 'import json; print(json.load(open("{d}/halctl.json"))["token"])')" \\
       localhost:{HTTP_PORT}/api/v1/sessions
"""


async def run_demo(directory: Path, sessions: int, rate: float) -> int:
    """Run supervisor and agent until Ctrl-C; returns the exit code."""
    sup_config, agent_config, token = prepare(directory, sessions)
    shutdown = trio.Event()
    with (directory / "supervisor.log").open("ab") as sup_log, (directory / "agent.log").open("ab") as agent_log:
        supervisor = await trio.lowlevel.open_process(
            [_program("hal-supervisor"), "--config", str(sup_config), "--log-format", "text"],
            stdout=sup_log,
            stderr=subprocess.STDOUT,
        )
        agent = await trio.lowlevel.open_process(
            [
                _program("hal-agent"),
                "--config",
                str(agent_config),
                "--simulate",
                str(sessions),
                "--rate",
                str(rate),
                "--log-format",
                "text",
            ],
            stdout=agent_log,
            stderr=subprocess.STDOUT,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, shutdown, nursery.cancel_scope)
                try:
                    await _wait_ready(token)
                except trio.TooSlowError:
                    print(
                        f"demo did not come up within {_READY_TIMEOUT:g}s; see {directory}/supervisor.log "
                        f"and {directory}/agent.log (are ports {WS_PORT}/{HTTP_PORT} free?)",
                        file=sys.stderr,
                    )
                    return 1
                print(_banner(directory, sessions), flush=True)

                async def watch(process: trio.Process, name: str) -> None:
                    await process.wait()
                    if not shutdown.is_set():
                        print(f"{name} exited with code {process.returncode}; stopping the demo", file=sys.stderr)
                        shutdown.set()

                nursery.start_soon(watch, supervisor, "hal-supervisor")
                nursery.start_soon(watch, agent, "hal-agent")
                await shutdown.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.move_on_after(2 * _STOP_GRACE + 5, shield=True):
                await terminate(agent, _STOP_GRACE)
                await terminate(supervisor, _STOP_GRACE)
    print("demo stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m halswarm.demo [--dir DIR] [--sessions N] [--rate R]``."""
    parser = argparse.ArgumentParser(prog="halswarm-demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".halswarm"), help="state directory (default ./.halswarm)")
    parser.add_argument("--sessions", type=int, default=6, help="simulated sessions (default 6)")
    parser.add_argument("--rate", type=float, default=3.0, help="simulated events per second (default 3)")
    args = parser.parse_args(argv)
    sys.exit(trio.run(run_demo, args.dir, args.sessions, args.rate))


if __name__ == "__main__":
    main()
