"""WebSocket hub: authenticates agents before the upgrade and runs one handler per connection.

Each connection has a reader (frames -> protocol -> handlers), an ack sender and a
heartbeat sender, in a nursery owned by the connection's handler. A bad frame or a
broken peer closes that connection only; the hub keeps serving everyone else.

Before the upgrade (issue #8): a request with a disallowed ``Origin`` gets 403; a bad
bearer token gets 401, answered later the more often that address failed
(:class:`~halswarm.auth_throttle.FailureThrottle`), counted, logged without the token and
audited at most once per address per minute. After the hello, per-node tokens are
enforced (:mod:`halswarm.supervisor.hub_auth`; close 4401). With an ``ssl_context`` the
hub serves WSS.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Final

import orjson
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, Endpoint, WebSocketConnection, WebSocketRequest

from halswarm import __version__
from halswarm.auth_failures import AuthFailures, FailureAudit
from halswarm.auth_throttle import FailureThrottle
from halswarm.config.security import origin_allowed
from halswarm.obs.logging import ctx
from halswarm.proto import (
    ENV_CAPABILITY,
    BatchReceived,
    CloseCode,
    CommandMsg,
    CommandResult,
    EnvManifest,
    Heartbeat,
    HeartbeatReceived,
    Hello,
    HelloReceived,
    HubProtocol,
    ProtocolError,
    ResultReceived,
    Welcome,
)
from halswarm.runtime import listen_error
from halswarm.store import StoreError
from halswarm.supervisor.hub_auth import AgentTokens, TokenMatch, bearer_token, header_value
from halswarm.supervisor.pipeline import SUPERVISOR_NODE_ID, IngestJob, Pipeline
from halswarm.supervisor.registry import LinkGoneError, NodeConflictError, NodeEntry, NodeRegistry
from halswarm.sync import Signal
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Sequence

    from halswarm.config.supervisor import ServerConfig
    from halswarm.obs.metrics import Metrics
    from halswarm.store import Store
    from halswarm.supervisor.env import EnvService
    from halswarm.supervisor.tracker import SessionTracker

__all__ = ["Hub", "HubConnection"]

log = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT: Final = 10.0
_CLOSE_TIMEOUT: Final = 3.0
#: What a peer that vanished mid-handshake raises (trio-websocket or the stream below it).
_PEER_GONE: Final = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)
_RECEIVE_BUFFER: Final = 256 * 1024
_WS_PATHS: Final = frozenset({"/ws", "/"})


class HubConnection:
    """One agent connection: serialised sends, cumulative acks, close requests."""

    def __init__(
        self,
        ws: WebSocketConnection,
        proto: HubProtocol,
        node_id: str,
        on_acked: Callable[[], None],
        *,
        send_timeout: float,
    ) -> None:
        self.ws = ws
        self.on_acked = on_acked
        self.send_timeout = send_timeout
        self.proto = proto
        self.node_id = node_id
        self._send_lock = trio.StrictFIFOLock()
        # Created now, entered by the handler: close_soon() works even before the welcome.
        self._scope = trio.CancelScope()
        self._ack_target = 0
        self._ack_wakeup = trio.Event()
        self.close_code = CloseCode.NORMAL
        self.close_reason = ""
        self.peer_close_code: int | None = None
        self.protocol_error: ProtocolError | None = None
        # Commands may only follow the welcome; the registry knows the link a bit earlier.
        self.welcomed = trio.Event()

    async def send(self, frame: str) -> None:
        """Send one frame; one writer at a time (house-style rule 13).

        Raises:
            LinkGoneError: the connection is closed.
        """
        try:
            with trio.fail_after(self.send_timeout):
                async with self._send_lock:
                    await self.ws.send_message(frame)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise LinkGoneError(f"connection to {self.node_id} is closed") from exc
        except trio.TooSlowError:
            # A peer that stopped reading: give up on it rather than block its senders.
            self.close_soon(CloseCode.HEARTBEAT_TIMEOUT, f"could not send for {self.send_timeout:g}s")
            raise LinkGoneError(f"connection to {self.node_id} stopped accepting data") from None

    async def send_command(self, command: CommandMsg) -> None:
        """Send a command frame once the handshake is done (raises :class:`LinkGoneError` if closed)."""
        await self.welcomed.wait()
        await self.send(self.proto.command_frame(command))

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Stop this connection's tasks; its handler then closes with *code*."""
        self.close_code, self.close_reason = code, reason
        self._scope.cancel()

    def stored(self, seq: int) -> None:
        """Called by the pipeline after a commit: acknowledge up to *seq*."""
        if seq > self._ack_target:
            self._ack_target = seq
            self._ack_wakeup.set()

    async def ack_loop(self) -> None:
        """Send coalesced cumulative acks as commits complete."""
        while True:
            await self._ack_wakeup.wait()
            self._ack_wakeup = trio.Event()
            await self.send(self.proto.ack(self._ack_target))
            self.on_acked()

    async def guarded(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a connection task; a closed link just ends the connection's tasks."""
        try:
            await fn()
        except LinkGoneError:
            self._scope.cancel()


class Hub:
    """The agents' WebSocket endpoint. Start with ``port = await nursery.start(hub.run)``."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        registry: NodeRegistry,
        tracker: SessionTracker,
        pipeline: Pipeline,
        store: Store,
        metrics: Metrics,
        now: Clock,
        on_result: Callable[[str, CommandResult], None],
        on_node_offline: Callable[[str, str], None],
        shutdown: trio.Event,
        ssl_context: ssl.SSLContext | None = None,
        origin_allowlist: Sequence[str] = ("*",),
        throttle: FailureThrottle | None = None,
        failure_audit: FailureAudit | None = None,
        env: EnvService | None = None,
    ) -> None:
        """*ssl_context* serves WSS instead of WS; *origin_allowlist* is
        ``security.origin_allowlist``; *throttle* and *failure_audit* are injectable for tests."""
        self.config = config
        self.registry = registry
        self.tracker = tracker
        self.pipeline = pipeline
        self.store = store
        self.metrics = metrics
        self.now = now
        self.on_result = on_result
        self.on_node_offline = on_node_offline
        self.shutdown = shutdown
        self.port: int | None = None
        self.ssl_context = ssl_context
        self.origin_allowlist = list(origin_allowlist)
        # "is not None", not "or": both are empty (falsy, they have __len__) when injected.
        self.failures = AuthFailures(
            listener="ws",
            throttle=throttle if throttle is not None else FailureThrottle(),
            write_audit=store.insert_audit,
            count=metrics.auth_failures.labels("ws").inc,
            now=now,
            audit=failure_audit,
        )
        self._tokens = AgentTokens(config.auth_token, config.node_tokens)
        #: The environment manifest, sent to agents that accept it (issue #9).
        self.env = env
        self._connections: set[HubConnection] = set()
        self._acked = Signal()  # fired after every ack frame, for the shutdown drain
        self._draining = False
        self._serving = 0  # accepted WebSockets whose handler has not finished closing
        self._handler_done = Signal()

    @property
    def connections(self) -> int:
        """Open, authenticated agent connections."""
        return len(self._connections)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the shutdown event, then drain and close every connection.

        Cancellation: cancels every connection handler.
        Resource handling: listeners close when the listener scope ends; connections are
        closed with 1001 (going away) after their in-flight batches are acknowledged.
        """
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as listener:
                try:
                    server = await listener.start(
                        partial(
                            trio_websocket.serve_websocket,
                            self.handle_request,
                            self.config.host,
                            self.config.port,
                            self.ssl_context,
                            handler_nursery=handlers,
                            max_message_size=self.config.max_frame_bytes,
                            receive_buffer_size=_RECEIVE_BUFFER,
                            connect_timeout=_HANDSHAKE_TIMEOUT,
                            disconnect_timeout=_CLOSE_TIMEOUT,
                        )
                    )
                except* OSError as group:
                    raise listen_error(group, f"{self.config.host}:{self.config.port} (agent WebSocket)") from None
                self.port = server.port
                log.info(
                    "hub listening",
                    extra=ctx(host=self.config.host, port=server.port, tls=self.ssl_context is not None),
                )
                task_status.started(server.port)
                await self.shutdown.wait()
                listener.cancel_scope.cancel()
            await self._drain()
            handlers.cancel_scope.cancel()

    async def _drain(self) -> None:
        """Let in-flight batches commit and be acked, then close every connection (bounded)."""
        self._draining = True
        grace = self.config.shutdown_grace_sec
        with trio.move_on_after(grace):
            while not all(c.proto.acked_seq >= c.proto.received_seq for c in self._connections):
                await self._acked.waiter().wait()
        for conn in list(self._connections):
            conn.close_soon(CloseCode.GOING_AWAY, "supervisor shutting down")
        # Let each handler finish its close handshake before the handler nursery is
        # cancelled: cancelling mid-close would stall every close for its full timeout.
        with trio.move_on_after(grace):
            while self._serving:
                await self._handler_done.waiter().wait()

    async def handle_request(self, request: WebSocketRequest) -> None:
        """Authenticate and serve one agent (also used directly by in-memory tests).

        Error handling: an unexpected error ends this request only (logged, answered 500
        if it had not been upgraded yet); trio-websocket would otherwise pass it to the
        hub's nursery and stop the supervisor.
        """
        try:
            await self._handle_request(request)
        except Exception:
            log.exception("agent request failed unexpectedly", extra=ctx(remote=_peer(request)))
            with contextlib.suppress(Exception):  # already upgraded, or the peer is gone
                await _reject(request, 500, "internal", "internal error; see the supervisor log")

    async def _handle_request(self, request: WebSocketRequest) -> None:
        path = request.path.split("?", 1)[0]
        if path not in _WS_PATHS:
            await _reject(request, 404, "not_found", f"no WebSocket endpoint at {path}; agents connect to /ws")
            return
        origin = header_value(request.headers, b"origin")
        if origin is not None and not origin_allowed(origin.decode("latin-1"), self.origin_allowlist):
            # Browsers always send Origin; agents never do. A page on a foreign site must
            # not be able to ride a user's network position into the hub.
            log.warning(
                "WebSocket upgrade refused: origin not allowed",
                extra=ctx(remote=_peer(request), origin=origin.decode("latin-1")),
            )
            await _reject(request, 403, "forbidden", "origin not allowed (security.origin_allowlist)")
            return
        match = self._tokens.match(bearer_token(request.headers))
        if not match.accepted:
            await self.auth_failed(_address(request), "missing or invalid bearer token", actor="unknown")
            await _reject(request, 401, "unauthorized", "missing or invalid bearer token")
            return
        if self._draining:
            await _reject(request, 503, "unavailable", "supervisor is shutting down")
            return
        try:
            ws = await request.accept()
        except _PEER_GONE as exc:
            # Reset before our 101 went out: only this handler ends.
            log.info("agent connection lost during the handshake", extra=ctx(remote=_peer(request), error=repr(exc)))
            return
        self._serving += 1
        try:
            await self._serve(ws, match, _address(request))
        finally:
            self._serving -= 1
            self._handler_done.fire()

    async def auth_failed(self, address: str, reason: str, *, actor: str) -> None:
        """Count, log (never the token), audit (rate-limited) and slow down one auth failure.

        Returns after the throttle's delay for *address*; the caller then answers.
        """
        target = actor.removeprefix("node:") if actor.startswith("node:") else ""
        await self.failures.refuse(address=address, reason=reason, actor=actor, target=target)

    async def _serve(self, ws: WebSocketConnection, match: TokenMatch, address: str) -> None:
        proto = HubProtocol(window=self.config.window, max_batch_events=self.config.max_batch_events)
        code, reason = CloseCode.NORMAL, ""
        node_id = "?"
        try:
            with trio.fail_after(_HANDSHAKE_TIMEOUT):
                first = await ws.get_message()
            events = proto.receive(first)
            assert len(events) == 1
            assert isinstance(events[0], HelloReceived)
            hello = events[0].hello
            node_id = hello.node_id
            if node_id == SUPERVISOR_NODE_ID:
                raise ProtocolError(CloseCode.MALFORMED, f"node_id {SUPERVISOR_NODE_ID!r} is reserved")
            refusal = self._tokens.refusal(match, node_id)
            if refusal is not None:
                await self.auth_failed(address, refusal, actor=f"node:{node_id}")
                # Close reasons are limited to 123 bytes (a long node id must not break the close).
                code, reason = CloseCode.AUTH_REFUSED, refusal.encode()[:120].decode(errors="ignore")
            else:
                code, reason = await self._run_connection(ws, proto, hello)
        except ProtocolError as exc:
            code, reason = exc.code, exc.reason
            self.metrics.frames_rejected.labels(str(int(exc.code))).inc()
            log.warning("closing agent connection: %s", exc.reason, extra=ctx(node_id=node_id, code=int(code)))
        except trio.TooSlowError:
            code, reason = CloseCode.POLICY_VIOLATION, f"no hello within {_HANDSHAKE_TIMEOUT:g}s"
            log.warning("closing agent connection: %s", reason, extra=ctx(remote=_peer(ws)))
        except ConnectionClosed:
            return
        except StoreError as exc:
            code, reason = CloseCode.INTERNAL_ERROR, "supervisor storage unavailable; retry later"
            log.error("closing agent connection: %s", exc, extra=ctx(node_id=node_id))
        except Exception:
            # One connection's failure must never take the hub down (house-style rule 8).
            code, reason = CloseCode.INTERNAL_ERROR, "internal error in the supervisor"
            log.exception("agent connection failed", extra=ctx(node_id=node_id))
        finally:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await ws.aclose(int(code), reason)

    async def _run_connection(self, ws: WebSocketConnection, proto: HubProtocol, hello: Hello) -> tuple[CloseCode, str]:
        send_timeout = self.config.heartbeat_interval_sec * self.config.heartbeat_timeout_count
        conn = HubConnection(ws, proto, hello.node_id, self._acked.fire, send_timeout=send_timeout)
        try:
            entry, came_online = self.registry.attach(hello, conn, now=trio.current_time(), wall=format_ts(self.now()))
        except NodeConflictError as exc:
            raise ProtocolError(CloseCode.NODE_ID_CONFLICT, str(exc)) from None
        self._connections.add(conn)
        log.info(
            "agent connected",
            extra=ctx(node_id=hello.node_id, hostname=hello.hostname, version=hello.version, last_seq=hello.last_seq),
        )
        try:
            with conn._scope:
                if await self._welcome(conn, hello, entry):
                    if came_online:
                        self.pipeline.emit("node.online", {"node_id": hello.node_id, "hostname": hello.hostname})
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(conn.guarded, conn.ack_loop)
                        nursery.start_soon(conn.guarded, partial(self._heartbeat_loop, conn))
                        if self.env is not None and ENV_CAPABILITY in hello.capabilities:
                            nursery.start_soon(conn.guarded, partial(self._manifest_loop, conn, self.env))
                        await self._reader(conn)
                        nursery.cancel_scope.cancel()
        finally:
            self._connections.discard(conn)
            conn.welcomed.set()  # a waiting send_command now fails fast with LinkGoneError
            self._acked.fire()  # a shutdown drain waiting on this connection can move on
            clean = conn.peer_close_code in (CloseCode.NORMAL, CloseCode.GOING_AWAY)
            went_offline = self.registry.detach(hello.node_id, conn, clean=clean)
            log.info("agent disconnected", extra=ctx(node_id=hello.node_id, peer_code=conn.peer_close_code))
            if went_offline:
                self.on_node_offline(hello.node_id, "agent disconnected")
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                try:
                    await self.store.upsert_node(self.registry.snapshot_record(entry))
                except StoreError as exc:
                    log.error("could not record the node's disconnection: %s", exc, extra=ctx(node_id=hello.node_id))
        if conn.protocol_error is not None:
            raise conn.protocol_error
        return conn.close_code, conn.close_reason

    async def _welcome(self, conn: HubConnection, hello: Hello, entry: NodeEntry) -> bool:
        """Record the hello, then send the welcome. False if the link closed meanwhile."""
        snapshots = [(s.seq, s.session) for s in hello.sessions if s.session.node_id == hello.node_id]
        if snapshots:
            await self.store.upsert_sessions(snapshots, format_ts(self.now()))
            for seq, session in snapshots:
                self.tracker.apply(seq, session)
        await self.store.upsert_node(self.registry.snapshot_record(entry))
        welcome = Welcome(
            ack_seq=self.pipeline.last_seq(hello.node_id),
            heartbeat_interval=self.config.heartbeat_interval_sec,
            window=self.config.window,
            max_batch_events=self.config.max_batch_events,
            max_frame_bytes=self.config.max_frame_bytes,
            server_version=__version__,
        )
        try:
            await conn.send(conn.proto.welcome(welcome))
        except LinkGoneError:
            return False
        conn.welcomed.set()
        return True

    async def _reader(self, conn: HubConnection) -> None:
        """Read frames until the peer closes or breaks the protocol. Never blocks on work."""
        node_id = conn.node_id
        while True:
            try:
                frame = await conn.ws.get_message()
            except ConnectionClosed as exc:
                conn.peer_close_code = exc.reason.code if exc.reason else None
                return
            self.registry.touch(node_id, trio.current_time())
            try:
                events = conn.proto.receive(frame)
            except ProtocolError as exc:
                conn.protocol_error = exc
                return
            for event in events:
                match event:
                    case BatchReceived(events=batch):
                        # Waits only when the pipeline queue is full: backpressure, by design.
                        await self.pipeline.submit(IngestJob(node_id, batch, conn.stored))
                    case ResultReceived(result=result):
                        self.on_result(node_id, result)
                    case HeartbeatReceived(heartbeat=heartbeat):
                        self.registry.heartbeat(node_id, heartbeat, format_ts(self.now()))
                    case HelloReceived():  # pragma: no cover - the protocol rejects a second hello
                        pass

    async def _manifest_loop(self, conn: HubConnection, env: EnvService) -> None:
        """Send the environment manifest after the welcome and whenever it changes (issue #9)."""
        sent: str | None = None
        while True:
            changed = env.changed.waiter()
            message = env.message()
            current = message.manifest_hash if message is not None else None
            if current != sent:
                await conn.send(conn.proto.manifest_frame(message or EnvManifest("", None)))
                sent = current
            await changed.wait()

    async def _heartbeat_loop(self, conn: HubConnection) -> None:
        interval = self.config.heartbeat_interval_sec
        start = trio.current_time()
        k = 1
        while True:
            await trio.sleep_until(start + k * interval)
            k += 1
            await conn.send(conn.proto.heartbeat_frame(Heartbeat(ts=format_ts(self.now()))))


def _address(request: WebSocketRequest) -> str:
    """The peer's IP address (no port: each attempt has a new one), for throttling and audit."""
    try:
        remote = request.remote
    except OSError:
        return "(disconnected)"
    return str(remote.address) if isinstance(remote, Endpoint) else str(remote)


def _peer(conn: WebSocketRequest | WebSocketConnection) -> str:
    """The peer's address for logs; a peer already gone has none (getpeername fails)."""
    try:
        return str(conn.remote)
    except OSError:
        return "(disconnected)"


async def _reject(request: WebSocketRequest, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="halswarm"'))
    with trio.move_on_after(_CLOSE_TIMEOUT), contextlib.suppress(*_PEER_GONE):
        await request.reject(status, extra_headers=headers, body=body)
