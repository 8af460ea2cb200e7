"""Keeps an ``opencode serve`` available: spawns and restarts it, or attaches to one.

Spawn mode (the default) runs ``opencode serve`` as a child bound to loopback, with
its own state directories under the agent's data dir and a random password, waits for
readiness with short per-try deadlines (early requests can hang forever), restarts it
with backoff when it dies, and stops it on shutdown. Attach mode probes a server that
is already running and keeps probing until it answers.

opencode reads its environment once, at start: the runner remembers the environment it
spawned the running server with (:meth:`OpencodeRunner.server_environment`), so the
environment checks can tell a manifest value it does not have yet, and
:meth:`OpencodeRunner.restart` replaces the server (through the same loop that restarts
a dead one) so a fresh one reads the current environment.

Whoever uses the server waits for :meth:`OpencodeRunner.wait_ready` and reports a
server that stopped answering with :meth:`OpencodeRunner.report_lost`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Final

import psutil
import trio

from halswarm.agent.backoff import Backoff, Retries
from halswarm.agent.opencode.client import (
    OpencodeAuthError,
    OpencodeClient,
    OpencodeError,
)
from halswarm.envcheck.environment import OpencodeEnvironment, ServerEnvironment
from halswarm.obs.logging import ctx
from halswarm.runtime import terminate
from halswarm.sync import Signal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from halswarm.config.agent import AgentConfig

__all__ = ["OpencodeRunner"]

log = logging.getLogger(__name__)

_PROBE_PAUSE: Final = 0.2
_ATTACH_WINDOW: Final = 3.0  # probes per attach attempt (two or three 1.5 s tries)
_STOP_GRACE: Final = 5.0
_STABLE_AFTER: Final = 60.0  # a server up this long resets the restart backoff
_RESTART_MARGIN: Final = 5.0  # beyond stopping and start-up, for a requested restart
_LOG_MAX_BYTES: Final = 10 * 1024 * 1024
_TAIL_LINES: Final = 20
SUPPORTED_VERSION_PREFIX: Final = "1."


class OpencodeRunner:
    """Start with ``await nursery.start(runner.run)``; returns at once (the server may
    still be starting: see :meth:`wait_ready`)."""

    def __init__(
        self,
        config: AgentConfig,
        data_dir: Path,
        *,
        rng: random.Random | None = None,
        extra_env: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        oc = config.opencode
        self.config = config
        #: The environment manifest's variables (issue #9), read at every spawn. Only
        #: in this process's environment: never written to disk.
        self.extra_env = extra_env
        #: The server's environment but for the manifest's layer and its credentials
        #: (:mod:`halswarm.envcheck.environment`).
        self.environment = OpencodeEnvironment.for_agent(config, data_dir=data_dir)
        self.mode = oc.mode
        self.port = config.opencode_port
        # A spawned server gets a fresh random password unless one is configured.
        self.password = oc.password or (secrets.token_urlsafe(24) if oc.mode == "spawn" else None)
        self.url = oc.base_url(config.opencode_port)
        self.state_dir = data_dir / "opencode"
        self.log_path = self.state_dir / "serve.log"
        #: The spawned server's pid: a server orphaned by a SIGKILLed agent is found
        #: through it and stopped before a new one starts on the same port.
        self.pid_path = self.state_dir / "serve.pid"
        self.client = OpencodeClient(
            self.url,
            password=self.password,
            username=oc.username,
            timeout=oc.request_timeout_sec,
            event_read_timeout=oc.event_read_timeout_sec,
        )
        self.rng = rng or random.Random()
        self.backoff = Backoff(oc.restart_backoff_initial_sec, oc.restart_backoff_max_sec)
        self.version = ""
        self.pid: int | None = None
        self.restarts = 0
        self.attempts = 0  # failed attempts to get a usable server, ever
        self.spawns = 0  # server processes started, ever
        self.status = "starting"
        self.changed = Signal()
        self._ready = False
        self._lost = Signal()
        # The environment the running server was spawned with (None: no server process).
        self._spawned_env: dict[str, str] | None = None
        # Why a restart was asked for (:meth:`restart`), until the spawn loop acts on it.
        self._restart_reason: str | None = None

    # ---- what users of the server see --------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while the server answers."""
        return self._ready

    async def wait_ready(self) -> None:
        """Return once the server answers health checks."""
        while not self._ready:
            await self.changed.waiter().wait()

    def report_lost(self, reason: str) -> None:
        """A user saw the server stop answering: probe it again (attach mode) or let the
        process monitor decide (spawn mode restarts only a server that exited or hangs)."""
        if self._ready:
            log.warning("opencode stopped answering", extra=ctx(url=self.url, reason=reason))
            self._set(False, f"unreachable: {reason}")
            self._lost.fire()

    def health(self) -> str:
        """ "ok", or what is wrong, for the node's heartbeat."""
        return "ok" if self._ready else self.status

    def server_environment(self) -> ServerEnvironment | None:
        """What is known of the running server's environment (its credentials left out).

        Spawn mode: the environment the running process was started with; None while no
        server process runs (the next one gets the current environment). Attach mode:
        unknown (someone else started the server), said as such.
        """
        if self.mode != "spawn":
            return ServerEnvironment.attached()
        spawned = self._spawned_env
        return ServerEnvironment.spawned(spawned) if spawned is not None else None

    async def restart(self, reason: str) -> str | None:
        """Replace the spawned server with a fresh one, which reads the current environment.

        Goes through the loop that restarts a server that died (stop: SIGTERM to its
        process group, grace, SIGKILL; start: readiness probes; backoff if the new one
        fails), without the backoff pause: a requested restart is not a failure. The
        node's health says ``restarting: <reason>`` meanwhile. Sessions survive
        (opencode keeps them on disk); a turn running now would be cut off, so callers
        make sure none is.

        Returns:
            None once the new server answers; otherwise why it was not restarted or does
            not answer (within the start-up allowance plus the stop grace).

        Cancellation: safe; the restart, once asked for, goes on in the runner.
        """
        if self.mode != "spawn":
            return "opencode runs in attach mode: the agent does not start or stop it"
        if not self._ready or self.pid is None:
            return f"opencode is not running now ({self.status})"
        before = self.spawns
        self._restart_reason = reason
        self._set(False, f"restarting: {reason}")
        self._lost.fire()
        allowance = self.config.opencode.ready_timeout_sec + 2 * _STOP_GRACE + _RESTART_MARGIN
        with trio.move_on_after(allowance):
            while not (self._ready and self.spawns > before):
                await self.changed.waiter().wait()
            return None
        return f"opencode serve did not answer within {allowance:g} s of the restart ({self.status})"

    def _set(self, ready: bool, status: str) -> None:
        if (ready, status) != (self._ready, self.status):
            self._ready, self.status = ready, status
            self.changed.fire()

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a server available until cancelled; the spawned one is stopped then."""
        task_status.started()
        try:
            if self.mode == "spawn":
                await self._spawn_loop()
            else:
                await self._attach_loop()
        finally:
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    async def _probe_until_ready(self, window: float, process: trio.Process | None = None) -> str | None:
        """Poll ``/global/health`` for up to *window* seconds; None when ready, else why not."""
        last = "no answer yet"
        deadline = trio.current_time() + window
        while trio.current_time() < deadline:
            if process is not None and process.returncode is not None:
                return f"exited with code {process.returncode} while starting"
            try:
                health = await self.client.health()
            except OpencodeAuthError as exc:
                return f"authentication failed: {exc}"
            except OpencodeError as exc:
                last = str(exc)
            else:
                if health.healthy:
                    self._accept_version(health.version)
                    return None
                last = "health check answered healthy=false"
            await trio.sleep(_PROBE_PAUSE)
        return last if process is None else f"not ready after {window:g} s ({last})"

    def _accept_version(self, version: str) -> None:
        if version != self.version:
            self.version = version
            if not version.startswith(SUPPORTED_VERSION_PREFIX):
                log.warning("unsupported opencode version; expect trouble", extra=ctx(version=version))

    async def _attach_loop(self) -> None:
        attempt = 0
        while True:
            lost = self._lost.waiter()
            # One short round of probes per attempt: an unreachable server shows at once.
            problem = await self._probe_until_ready(_ATTACH_WINDOW)
            if problem is None:
                attempt = 0
                log.info("attached to opencode", extra=ctx(url=self.url, version=self.version))
                self._set(True, "ok")
                await lost.wait()
                continue
            delay = self.backoff.delay(attempt, self.rng)
            attempt += 1
            self.attempts += 1
            self._set(False, f"{problem}; retrying in {delay:.0f} s")
            log.error("cannot use opencode", extra=ctx(url=self.url, problem=problem, retry_in=round(delay, 1)))
            await trio.sleep(delay)

    async def _spawn_loop(self) -> None:
        retries = Retries(self.backoff, _STABLE_AFTER)
        while True:
            started = trio.current_time()
            problem = await self._run_once()
            retries.ended(trio.current_time() - started)
            requested, self._restart_reason = self._restart_reason, None
            if requested is not None:
                # Asked for (a changed environment), not a failure: start again at once.
                self.restarts += 1
                log.info("opencode serve stopped to restart", extra=ctx(reason=requested))
                continue
            delay = retries.next_delay(self.rng)
            self.restarts += 1
            self.attempts += 1
            self._set(False, f"{problem}; restarting in {delay:.0f} s")
            log.error(
                "opencode serve stopped; restarting",
                extra=ctx(problem=problem, retry_in=round(delay, 1), log=str(self.log_path), tail=self._log_tail()),
            )
            await trio.sleep(delay)

    def _command(self) -> list[str]:
        return [
            self.config.opencode.binary,
            "serve",
            "--hostname",
            self.config.opencode.host,
            "--port",
            str(self.port),
            "--print-logs",
        ]

    def _environment(self) -> dict[str, str]:
        # One builder for this and the environment checks (issue #9): what the checks
        # test is what the server gets. The credentials are the runner's own.
        server = {"OPENCODE_SERVER_PASSWORD": self.password} if self.password else {}
        if self.config.opencode.username != "opencode":
            server["OPENCODE_SERVER_USERNAME"] = self.config.opencode.username
        manifest_env = self.extra_env() if self.extra_env is not None else None
        return self.environment.build(manifest_env, server=server)

    def _working_directory(self) -> Path:
        for project in self.config.projects:
            path = Path(project.directory).expanduser()
            if path.is_dir():
                return path
        return self.state_dir

    def _open_log(self) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_MAX_BYTES:
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        return os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                lines = deque(f.read().decode(errors="replace").splitlines(), maxlen=_TAIL_LINES)
        except OSError:
            return ""
        return "\n".join(lines)

    async def _run_once(self) -> str:
        """Run one server process until it exits or hangs; returns why it stopped."""
        self._set(False, "starting" if self.restarts == 0 else self.status)
        self._restart_reason = None  # a request is about a server that runs: not this one
        orphan = await trio.to_thread.run_sync(reap_orphan, self.pid_path, self.port)
        if orphan is not None:
            log.warning("stopped an opencode serve left over by a previous agent", extra=ctx(pid=orphan))
        if _port_taken(self.config.opencode.host, self.port):
            # Probing would reach whoever holds it (another agent's server, anything).
            return f"port {self.port} on {self.config.opencode.host} is in use by another program: set opencode_port"
        try:
            log_fd = self._open_log()
        except OSError as exc:
            return f"cannot write {self.log_path}: {exc}"
        environment = self._environment()
        try:
            process = await trio.lowlevel.open_process(
                self._command(),
                cwd=self._working_directory(),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,  # a process group of its own, stopped as a whole
            )
        except OSError as exc:
            return f"cannot start {self.config.opencode.binary!r}: {exc.strerror or exc}"
        finally:
            os.close(log_fd)
        self.pid = process.pid
        self._spawned_env = environment  # what this process reads for its whole life
        self.spawns += 1
        self._write_pid(process.pid)
        log.info("opencode serve started", extra=ctx(pid=process.pid, port=self.port, log=str(self.log_path)))
        try:
            problem = await self._probe_until_ready(self.config.opencode.ready_timeout_sec, process)
            if problem is not None:
                return problem
            log.info("opencode ready", extra=ctx(pid=process.pid, url=self.url, version=self.version))
            self._set(True, "ok")
            while True:
                lost = self._lost.waiter()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_when_exited, process, nursery.cancel_scope)
                    await lost.wait()
                    nursery.cancel_scope.cancel()
                if (requested := self._requested()) is not None:
                    return f"restart asked for: {requested}"
                if process.returncode is not None:
                    return f"opencode serve (pid {process.pid}) exited with code {process.returncode}"
                # Alive but not answering: give it the start-up allowance, then replace it.
                problem = await self._probe_until_ready(self.config.opencode.ready_timeout_sec, process)
                if problem is not None:
                    return f"opencode serve (pid {process.pid}) stopped answering: {problem}"
                self._set(True, "ok")
        finally:
            self._ready = False
            self.pid = None
            self._spawned_env = None
            with trio.move_on_after(2 * _STOP_GRACE + 2, shield=True):
                # Tool processes run in process groups of their own: find them first.
                tools = await trio.to_thread.run_sync(_descendants, process.pid)
                await terminate(process, _STOP_GRACE, group=True)
                await trio.to_thread.run_sync(_kill_all, tools)
            self.pid_path.unlink(missing_ok=True)

    def _requested(self) -> str | None:
        # A method, not the attribute: it changes while _run_once awaits.
        return self._restart_reason

    def _write_pid(self, pid: int) -> None:
        try:
            self.pid_path.write_text(f"{pid} {self.port}\n")
        except OSError as exc:
            log.warning("cannot record the opencode pid", extra=ctx(path=str(self.pid_path), error=str(exc)))


def reap_orphan(pid_path: Path, port: int, grace: float = _STOP_GRACE) -> int | None:
    """Stop the server a previous run recorded in *pid_path*, if it still runs (blocking).

    Only a process that still looks like that server (``opencode ... serve ... --port
    PORT``) is touched: after a reboot the pid may belong to anything. Returns the pid
    stopped, or None.
    """
    try:
        pid = int(pid_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        process = psutil.Process(pid)
        cmdline = process.cmdline()
        group = os.getpgid(pid)
    except (psutil.Error, ProcessLookupError):
        pid_path.unlink(missing_ok=True)
        return None
    if "serve" not in cmdline or str(port) not in cmdline or not any("opencode" in part for part in cmdline[:2]):
        pid_path.unlink(missing_ok=True)
        return None
    own_group = group == pid
    tools = _descendants(pid)
    if own_group:
        _kill_group(pid, signal.SIGTERM)
    else:
        process.terminate()
    try:
        process.wait(grace)
    except psutil.TimeoutExpired:
        if own_group:
            _kill_group(pid, signal.SIGKILL)
        else:
            process.kill()
        with contextlib.suppress(psutil.TimeoutExpired):
            process.wait(2.0)
    if own_group:
        _kill_group(pid, signal.SIGKILL)
    _kill_all(tools)
    pid_path.unlink(missing_ok=True)
    return pid


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL what is left of *processes* (psutil checks each is still the same process)."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


async def _cancel_when_exited(process: trio.Process, scope: trio.CancelScope) -> None:
    await process.wait()
    scope.cancel()


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
