"""``hal-supervisor`` and ``hal-agent`` as systemd runs them (``Type=notify``, ``WatchdogSec=``,
the unit's ``ExecReload=`` lines): real processes, a real notify socket, a fake webhook on loopback."""

from __future__ import annotations

import copy
import os
import shlex
import signal
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import trio
import trio.socket

from halswarm.testing import (
    Daemon,
    agent_json,
    free_port,
    start_daemon,
    supervisor_json,
    wait_until,
    write_json,
)
from tests.channels.fake_receivers import open_fake_receiver

if TYPE_CHECKING:
    import subprocess
    from collections.abc import AsyncGenerator

    from halswarm.jsontypes import JSONObject

TOKEN: Final = "systemd-token-0123456789abcdef"
WATCHDOG_USEC: Final = "2000000"  # 2 s: a ping every second
SUPERVISOR_UNIT: Final = Path(__file__).resolve().parents[2] / "systemd" / "hal-supervisor.service"


class NotifySocket:
    """The socket systemd would listen on (``NOTIFY_SOCKET``), recording every message."""

    def __init__(self, sock: trio.socket.SocketType, path: str) -> None:
        self.sock = sock
        self.path = path
        #: Every message so far, each as its ``KEY=value`` lines.
        self.messages: list[dict[str, str]] = []

    async def next(self, key: str) -> dict[str, str]:
        """Wait for the next message carrying *key* (others are recorded and skipped)."""
        while True:
            data = await self.sock.recv(4096)
            message = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append(message)
            if key in message:
                return message

    def lifecycle(self) -> list[str]:
        """READY/RELOADING/STOPPING in the order received."""
        keys = ("READY", "RELOADING", "STOPPING")
        return [k for m in self.messages for k in keys if k in m]


@asynccontextmanager
async def open_notify_socket() -> AsyncGenerator[NotifySocket, None]:
    # A short directory: AF_UNIX paths are limited to 107 bytes (pytest's tmp_path can exceed it).
    with tempfile.TemporaryDirectory(prefix="sd-") as where:
        path = os.path.join(where, "notify")
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(path)
            yield NotifySocket(sock, path)


async def systemctl_reload(config_path: Path, pid: int) -> subprocess.CompletedProcess[bytes]:
    """What ``systemctl reload hal-supervisor`` runs: the unit's ``ExecReload=`` lines in
    order, the installed paths swapped for this checkout's; the first failure fails the job."""
    lines = [
        line.removeprefix("ExecReload=")
        for line in SUPERVISOR_UNIT.read_text().splitlines()
        if line.startswith("ExecReload=")
    ]
    assert lines, "the unit has no ExecReload="
    done: subprocess.CompletedProcess[bytes] | None = None
    for line in lines:
        line = line.replace("/opt/hal-o-swarm/venv/bin/", f"{Path(sys.executable).parent}/")
        line = line.replace("/etc/hal-o-swarm/supervisor.config.json", str(config_path))
        line = line.replace("$MAINPID", str(pid))
        done = await trio.run_process(shlex.split(line), capture_stdout=True, capture_stderr=True, check=False)
        if done.returncode != 0:
            break
    assert done is not None
    return done


def systemd_env(notify: NotifySocket) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": WATCHDOG_USEC}


async def start_agent_without_supervisor(tmp_path: Path, notify: NotifySocket) -> Daemon:
    """``hal-agent --simulate 1`` under systemd's notify protocol, its supervisor down
    (nobody listens on its port)."""
    config = agent_json(token=TOKEN, ws_port=free_port(), node_id="node-1", data_dir=tmp_path / "agent")
    config_path = write_json(tmp_path / "agent.json", config)
    args = ["--config", str(config_path), "--log-format", "text", "--simulate", "1"]
    return await start_daemon("agent", args, tmp_path / "agent.log", env=systemd_env(notify))


async def test_supervisor_ready_watchdog_reload_and_stop(tmp_path: Path) -> None:
    ws_port, http_port = free_port(), free_port()
    base: JSONObject = {
        **supervisor_json(token=TOKEN, ws_port=ws_port, http_port=http_port, db=tmp_path / "supervisor.db"),
        "policies": {"tick_seconds": 1},
    }
    config_path = write_json(tmp_path / "supervisor.json", base)
    agent_path = write_json(
        tmp_path / "agent.json", agent_json(token=TOKEN, ws_port=ws_port, node_id="node-1", data_dir=tmp_path / "agent")
    )
    logs = tmp_path / "logs"
    api = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    with trio.fail_after(90):
        async with open_notify_socket() as notify, open_fake_receiver() as receiver, api:
            supervisor = await start_daemon(
                "supervisor",
                ["--config", str(config_path), "--log-format", "text"],
                logs / "sup.log",
                env=systemd_env(notify),
            )
            agent: Daemon | None = None
            try:
                ready = await notify.next("READY")
                # READY=1 comes once the HTTP API answers: no retry needed.
                assert (await api.get("/readyz")).status_code == 200
                assert ready["STATUS"] == "0 of 0 nodes online; 0 active sessions"
                await notify.next("WATCHDOG")
                await notify.next("WATCHDOG")

                agent = await start_daemon(
                    "agent",
                    ["--config", str(agent_path), "--log-format", "text", "--simulate", "2", "--rate", "10"],
                    logs / "agent.log",
                )

                async def sessions_stored() -> bool:
                    return bool((await api.get("/api/v1/sessions")).json()["sessions"])

                await wait_until(sessions_stored, within=20, what="the agent's sessions stored")
                assert receiver.requests == []  # events flow, but no route names the receiver yet

                # A new route to a new webhook, and a policy switched on, by SIGHUP.
                changed = copy.deepcopy(base)
                changed["channels"] = {"webhooks": {"rx": {"url": receiver.url("/hooks/rx")}}}
                changed["routes"] = [{"match": "session.*", "target": "webhook#rx"}]
                changed["policies"] = {"tick_seconds": 1, "stuck_busy": {"enabled": True}}
                write_json(config_path, changed)
                reload = await systemctl_reload(config_path, supervisor.process.pid)
                assert reload.returncode == 0, reload.stderr
                await notify.next("RELOADING")
                reloaded = await notify.next("READY")
                assert "last reload: applied" in reloaded["STATUS"]
                await wait_until(lambda: len(receiver.to("/hooks/rx")) >= 3, what="events routed to the new webhook")
                stuck = (await api.get("/api/v1/policies/stuck_busy")).json()["policy"]
                assert stuck["enabled"] is True
                [row] = (await api.get("/api/v1/audit", params={"action": "config.reload"})).json()["audit"]
                assert (row["actor"], row["source"], row["outcome"]) == ("signal:SIGHUP", "signal", "applied")
                assert row["detail"]["applied"] == [
                    "channels.webhooks['rx']",
                    "policies.stuck_busy.enabled",
                    "routes",
                ]

                # An invalid file: `systemctl reload` fails, naming the problem, and never
                # signals the supervisor...
                broken = copy.deepcopy(changed)
                broken["routes"] = [{"match": "session.* &&", "target": "webhook#rx"}]
                write_json(config_path, broken)
                reload = await systemctl_reload(config_path, supervisor.process.pid)
                assert reload.returncode == 2
                assert b"routes[0].match:" in reload.stderr
                # ...and a SIGHUP sent by hand is refused by the supervisor itself, with the
                # problem named; the running config keeps working either way.
                supervisor.process.send_signal(signal.SIGHUP)
                await notify.next("RELOADING")
                refused = await notify.next("READY")
                assert "last reload: rejected" in refused["STATUS"]
                assert "config reload: routes[0].match:" in supervisor.log_text()
                delivered = len(receiver.requests)
                await wait_until(lambda: len(receiver.requests) > delivered + 2, what="routing goes on")
                assert (await api.get("/api/v1/policies/stuck_busy")).json()["policy"]["enabled"] is True
                assert supervisor.process.returncode is None

                await agent.stop()
                agent = None
                await notify.next("WATCHDOG")  # still vouched for
                supervisor.process.send_signal(signal.SIGTERM)
                await notify.next("STOPPING")
                code = await supervisor.process.wait()
            finally:
                with trio.move_on_after(30, shield=True):  # no-ops when they exited already
                    if agent is not None:
                        await agent.stop()
                    await supervisor.stop()
    assert code == 0, supervisor.log_text()
    assert notify.lifecycle() == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]
    assert "Traceback" not in supervisor.log_text()


async def test_agent_ready_without_a_supervisor_survives_sighup_and_stops(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_notify_socket() as notify:
            agent = await start_agent_without_supervisor(tmp_path, notify)
            try:
                ready = await notify.next("READY")
                assert ready["STATUS"].startswith("not connected to the supervisor")
                await notify.next("WATCHDOG")
                agent.process.send_signal(signal.SIGHUP)
                await wait_until(lambda: "nothing to reload at runtime" in agent.log_text(), what="SIGHUP logged")
                await notify.next("WATCHDOG")  # still alive and well after the SIGHUP
                assert agent.process.returncode is None
                agent.process.send_signal(signal.SIGTERM)
                await notify.next("STOPPING")
                code = await agent.process.wait()
            finally:
                with trio.move_on_after(30, shield=True):  # a no-op when it exited already
                    await agent.stop()
    assert code == 0, agent.log_text()
    assert notify.lifecycle() == ["READY", "STOPPING"]
    assert "Traceback" not in agent.log_text()


async def test_a_watchdog_abort_leaves_every_threads_stack_in_the_log(tmp_path: Path) -> None:
    # systemd's WatchdogSignal= is SIGABRT by default: the log must show where the process hung.
    with trio.fail_after(60):
        async with open_notify_socket() as notify:
            agent = await start_agent_without_supervisor(tmp_path, notify)
            try:
                await notify.next("READY")
                agent.process.send_signal(signal.SIGABRT)
                code = await agent.process.wait()
            finally:
                with trio.move_on_after(30, shield=True):
                    await agent.stop()
    assert code == -signal.SIGABRT
    log = agent.log_text()
    assert "Fatal Python error: Aborted" in log
    assert 'File "' in log  # stacks: file, line, function
