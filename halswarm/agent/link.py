"""The agent's connection to the supervisor: connect loop plus one nursery per connection.

Per connection: the reader (frames -> protocol -> handlers; never does slow work), the
sender (outbox pages into the send window), heartbeats, and a watchdog that drops a
silent connection. Between connections: jittered exponential backoff, reset only after a
connection stayed up ``stable_after_sec`` (a supervisor that accepts and then drops us
cannot cause a tight loop). A rejected token (401, or 4401 for a per-node token) or a
node-id conflict backs off to the maximum delay and says why, loudly; a certificate the
agent cannot verify is logged as such (with the fix) and retried like any failure.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection

from halswarm import __version__
from halswarm.agent.backoff import Backoff, Retries
from halswarm.agent.connector import Connector, open_ws
from halswarm.obs.logging import ctx
from halswarm.proto import (
    ENV_CAPABILITY,
    AckReceived,
    AgentProtocol,
    CloseCode,
    CommandReceived,
    CommandResult,
    Heartbeat,
    HeartbeatReceived,
    Hello,
    ManifestReceived,
    ProtocolError,
    WelcomeReceived,
)
from halswarm.runtime import exception_leaves
from halswarm.schedule import Ticks
from halswarm.sync import Signal, wait_any
from halswarm.timeutil import Clock, format_ts
from halswarm.tls import CERT_VERIFY_HINT, cert_verify_error, client_ssl_context

if TYPE_CHECKING:
    import random
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from halswarm.agent.backend import EventSink
    from halswarm.agent.envchecker import EnvChecker
    from halswarm.agent.executor import Executor
    from halswarm.agent.outbox import Outbox
    from halswarm.config.agent import AgentConfig
    from halswarm.models import Project, Resources

__all__ = ["AgentLink", "Connector", "LinkStatus", "websocket_connector"]

log = logging.getLogger(__name__)

_SILENT_INTERVALS: Final = 3  # heartbeat intervals without any frame before we give up
_FRAME_OVERHEAD: Final = 1024
_RESUME_CODES: Final = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.REPLACED})
_MAX_INBOUND_FRAME: Final = 16 * 1024 * 1024


def websocket_connector(config: AgentConfig) -> Connector:
    """The real connector: TCP (TLS for ``wss://``) with the config's timeouts.

    For ``wss://`` the certificate is verified against ``tls_ca_file`` (or the system's
    CAs) and the URL's host name.

    Raises:
        TlsConfigError: ``tls_ca_file`` cannot be read or is not PEM (at once, not per attempt).
    """
    secure = urlsplit(config.supervisor_url).scheme == "wss"
    ssl_context = client_ssl_context(config.tls_ca_file) if secure else None

    def connect(url: str, headers: list[tuple[bytes, bytes]]) -> AbstractAsyncContextManager[WebSocketConnection]:
        return open_ws(
            url,
            headers,
            connect_timeout=config.link.connect_timeout_sec,
            close_timeout=config.link.close_timeout_sec,
            max_message_size=_MAX_INBOUND_FRAME,
            ssl_context=ssl_context,
        )

    return connect


@attrs.define
class LinkStatus:
    """What the link is doing, for logs, heartbeats and tests."""

    connected: bool = False
    connections: int = 0
    last_error: str | None = None
    ack_seq: int = 0


class _Connection:
    """One open WebSocket with a single writer."""

    def __init__(self, ws: WebSocketConnection, proto: AgentProtocol, send_timeout: float) -> None:
        self.ws = ws
        self.proto = proto
        self.lock = trio.StrictFIFOLock()
        self.last_rx = trio.current_time()
        self.send_timeout = send_timeout

    async def send(self, frame: str) -> None:
        """Send one frame. Raises trio.TooSlowError if the supervisor stopped reading."""
        with trio.fail_after(self.send_timeout):
            async with self.lock:
                await self.ws.send_message(frame)


class AgentLink:
    """Keeps the agent connected and its outbox flowing. Start with ``nursery.start(link.run)``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        outbox: Outbox,
        sink: EventSink,
        executor: Executor,
        shutdown: trio.Event,
        now: Clock,
        rng: random.Random,
        resources: Callable[[], Resources],
        health: Callable[[], dict[str, str]],
        facts: Callable[[], dict[str, str]] | None = None,
        health_changed: Signal | None = None,
        projects: list[Project] | None = None,
        connector: Connector | None = None,
        capabilities: list[str] | None = None,
        env: EnvChecker | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.sink = sink
        self.executor = executor
        self.shutdown = shutdown
        self.now = now
        self.rng = rng
        self.resources = resources
        self.health = health
        self.facts = facts
        self.health_changed = health_changed
        self.projects = projects if projects is not None else list(config.projects)
        self.connector = connector or websocket_connector(config)
        self.capabilities = list(capabilities or [])
        self.env = env
        if env is not None and ENV_CAPABILITY not in self.capabilities:
            self.capabilities.append(ENV_CAPABILITY)
        self.node_id = config.resolved_node_id()
        self.status = LinkStatus()
        self.stopped = trio.Event()
        self.backoff = Backoff(config.link.backoff_initial_sec, config.link.backoff_max_sec)
        self._current: _Connection | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect, until the shutdown event.

        Cancellation: safe at any await; unacked events stay in the outbox.
        Error handling: connection failures are logged and retried with backoff.
        """
        task_status.started()
        try:
            await self._connect_loop()
        finally:
            self.stopped.set()

    async def _connect_loop(self) -> None:
        retries = Retries(self.backoff, self.config.link.stable_after_sec)
        while not self.shutdown.is_set():
            began = trio.current_time()
            severe = False
            try:
                severe = await self._connect_once()
            except* (
                HandshakeError,
                OSError,
                ConnectionClosed,
                trio.BrokenResourceError,
                trio.TooSlowError,
                ProtocolError,
            ) as group:
                severe = self._report_failure(group)
            finally:
                self.status.connected = False
                self._current = None
            if self.shutdown.is_set():
                return
            retries.ended(trio.current_time() - began)
            delay = retries.next_delay(self.rng)
            if severe:
                delay = self.config.link.backoff_max_sec
            log.info("reconnecting in %.1fs", delay, extra=ctx(attempt=retries.attempt))
            with trio.move_on_after(delay):
                await self.shutdown.wait()

    def _report_failure(self, group: BaseExceptionGroup[BaseException]) -> bool:
        leaves = exception_leaves(group)
        first = leaves[0] if leaves else group
        if isinstance(first, ConnectionRejected) and first.status_code in (401, 403):
            self.status.last_error = f"supervisor rejected our token (HTTP {first.status_code}): check auth_token"
            log.error(self.status.last_error)
            return True
        if isinstance(first, ConnectionRejected):
            self.status.last_error = f"supervisor refused the connection (HTTP {first.status_code})"
        elif isinstance(first, trio.TooSlowError):
            self.status.last_error = "supervisor did not answer in time"
        elif isinstance(first, ProtocolError):
            self.status.last_error = f"supervisor broke the protocol: {first.reason}"
        elif isinstance(first, ConnectionClosed):
            code = first.reason.code if first.reason else None
            reason = first.reason.reason if first.reason else ""
            self.status.last_error = f"supervisor closed the connection (code {code}: {reason})"
            if code == CloseCode.AUTH_REFUSED:  # sent instead of a welcome: a per-node token problem
                self.status.last_error = (
                    f"supervisor refused our token for node {self.node_id} (code {code}: {reason}): check auth_token"
                )
            if code in (CloseCode.NODE_ID_CONFLICT, CloseCode.AUTH_REFUSED):
                log.error(self.status.last_error)
                return True
        elif (cert_problem := cert_verify_error(first)) is not None:
            self.status.last_error = (
                f"TLS: certificate verify failed for {self.config.ws_url()} ({cert_problem}): {CERT_VERIFY_HINT}"
            )
            log.error(self.status.last_error)
            return False
        else:
            self.status.last_error = f"cannot reach supervisor at {self.config.supervisor_url}: {first}"
        log.warning(self.status.last_error)
        return False

    async def _connect_once(self) -> bool:
        """One connection, from dial to close. Returns True if the close was severe."""
        headers = [(b"Authorization", f"Bearer {self.config.auth_token}".encode())]
        hello = Hello(
            node_id=self.node_id,
            instance_key=self.outbox.instance_key,
            hostname=socket.gethostname(),
            version=__version__,
            projects=list(self.projects),
            capabilities=list(self.capabilities),
            last_seq=self.outbox.last_seq,
            sessions=self.sink.snapshots(),
            health=self.health(),
            facts=self.facts() if self.facts is not None else {},
        )
        proto = AgentProtocol(hello)
        # The connector applies connect_timeout_sec to the dial and handshake.
        async with self.connector(self.config.ws_url(), headers) as ws:
            return await self._serve(_Connection(ws, proto, self.config.link.connect_timeout_sec), proto)

    async def _serve(self, conn: _Connection, proto: AgentProtocol) -> bool:
        await conn.send(proto.hello_frame())
        with trio.fail_after(self.config.link.connect_timeout_sec):
            first = await conn.ws.get_message()
        events = proto.receive(first)
        assert len(events) == 1
        assert isinstance(events[0], WelcomeReceived)
        welcome = events[0].welcome
        # A fresh outbox (data dir wiped or new) numbers from 1, but the supervisor may hold
        # seqs of this node_id's previous instance: anything up to ack_seq is not ours.
        # The same holds when our outbox went back in time (restored, or a power loss):
        # compare with the hello's last_seq, since events kept arriving while we dialled.
        # (Rows that were stored before a rollback may then be stored twice: a duplicate
        # beats a loss.)
        unsynced = not self.outbox.synced and welcome.ack_seq > 0
        if events[0].lost_state or unsynced:
            delta = await self.outbox.renumber_after(welcome.ack_seq, force=True)
            self.sink.shift(delta)
            log.warning(
                "supervisor holds events we no longer know (data dir reset?); continuing after its position",
                extra=ctx(ack_seq=welcome.ack_seq, moved_by=delta),
            )
        if not self.outbox.synced:
            await self.outbox.mark_synced()  # before anything is sent on this connection
        self.outbox.note_acked(welcome.ack_seq)
        # From now on a send may wait as long as the supervisor would wait for us: while
        # its store is congested it stops reading, and that is backpressure, not death.
        conn.send_timeout = welcome.heartbeat_interval * _SILENT_INTERVALS
        self._current = conn
        self.status.connected = True
        self.status.connections += 1
        self.status.last_error = None
        self.status.ack_seq = welcome.ack_seq
        log.info(
            "connected to supervisor",
            extra=ctx(url=self.config.supervisor_url, ack_seq=welcome.ack_seq, pending=self.outbox.pending),
        )
        close_code: int | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender, conn, proto)
            nursery.start_soon(self._heartbeats, conn, proto, welcome.heartbeat_interval)
            nursery.start_soon(self._watchdog, conn, welcome.heartbeat_interval, nursery.cancel_scope)
            nursery.start_soon(self._close_on_shutdown, conn)
            close_code = await self._reader(conn, proto)
            nursery.cancel_scope.cancel()
        if close_code is not None and close_code not in _RESUME_CODES:
            self.status.last_error = f"supervisor closed the connection (code {close_code})"
            log.warning(self.status.last_error)
        return False

    async def _reader(self, conn: _Connection, proto: AgentProtocol) -> int | None:
        """Read frames until the connection ends; returns the peer's close code."""
        while True:
            try:
                frame = await conn.ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code if exc.reason else None
            conn.last_rx = trio.current_time()
            try:
                events = proto.receive(frame)
            except ProtocolError as exc:
                log.error("supervisor broke the protocol: %s", exc.reason)
                with trio.move_on_after(self.config.link.close_timeout_sec):
                    await conn.ws.aclose(int(exc.code), exc.reason)
                return int(exc.code)
            for event in events:
                match event:
                    case AckReceived(seq=seq):
                        self.outbox.note_acked(seq)
                        self.status.ack_seq = seq
                    case CommandReceived(command=command):
                        self.executor.submit(command, self.send_result)
                    case HeartbeatReceived():
                        pass
                    case ManifestReceived(manifest=manifest):
                        if self.env is not None:
                            self.env.set_manifest(manifest)
                    case WelcomeReceived():  # pragma: no cover - the protocol rejects a second welcome
                        pass

    async def _sender(self, conn: _Connection, proto: AgentProtocol) -> None:
        """Fill the send window from the outbox; wake on new events or acks."""
        try:
            await self._send_loop(conn, proto)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the reader sees the close and ends the connection

    async def _send_loop(self, conn: _Connection, proto: AgentProtocol) -> None:
        assert proto.welcome is not None
        limit = min(self.config.link.batch_max_events, proto.welcome.max_batch_events)
        max_bytes = min(self.config.link.batch_max_bytes, proto.welcome.max_frame_bytes - _FRAME_OVERHEAD)
        pruned = 0
        while True:
            appended = self.outbox.appended.waiter()
            acked = self.outbox.acked.waiter()
            if self.outbox.acked_seq > pruned:
                pruned = self.outbox.acked_seq
                await self.outbox.prune()
            while proto.can_send():
                rows = await self.outbox.read_after(proto.sent_seq, limit=limit, max_bytes=max_bytes)
                if not rows:
                    break
                await conn.send(proto.events_frame(rows))
            await wait_any(appended, acked)

    async def _heartbeats(self, conn: _Connection, proto: AgentProtocol, interval: float) -> None:
        """Send heartbeats on a fixed schedule (with resources, health and facts), and one
        at once whenever the backend's health changes (a degraded node shows at once)."""
        ticks = Ticks(interval)
        try:
            while True:
                changed = self.health_changed.waiter() if self.health_changed is not None else trio.Event()
                heartbeat = Heartbeat(
                    ts=format_ts(self.now()),
                    resources=self.resources(),
                    health=self.health(),
                    facts=self.facts() if self.facts is not None else None,
                    outbox_backlog=self.outbox.pending,
                )
                await conn.send(proto.heartbeat_frame(heartbeat))
                # The next slot of the fixed schedule: an extra heartbeat never delays
                # the regular ones (the supervisor counts silent intervals).
                with trio.move_on_at(ticks.next_after_now()):
                    await changed.wait()
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _watchdog(self, conn: _Connection, interval: float, scope: trio.CancelScope) -> None:
        """Drop the connection when the supervisor is silent for too long.

        Its own task, taking no lock: a sender stuck on a full TCP buffer must not keep
        it from noticing a dead supervisor.
        """
        limit = interval * _SILENT_INTERVALS
        while True:
            silent_for = trio.current_time() - conn.last_rx
            if silent_for > limit:
                self.status.last_error = f"no frame from the supervisor for {limit:g}s"
                log.warning(self.status.last_error)
                scope.cancel()
                return
            await trio.sleep_until(conn.last_rx + limit + 0.001)

    async def _close_on_shutdown(self, conn: _Connection) -> None:
        await self.shutdown.wait()
        # A clean close tells the supervisor to mark us offline now, not after a timeout.
        with trio.move_on_after(self.config.link.close_timeout_sec):
            await conn.ws.aclose(int(CloseCode.NORMAL), "agent shutting down")

    async def send_result(self, result: CommandResult) -> None:
        """Send a command result on the current connection, if any.

        If there is none (or it breaks), the result stays remembered and is sent again
        when the supervisor resends the command after reconnecting.
        """
        conn = self._current
        if conn is None:
            return
        try:
            await conn.send(conn.proto.result_frame(result))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            log.info(
                "result not delivered (connection closed); it will be resent", extra=ctx(command_id=result.command_id)
            )
