"""A loopback TCP proxy with faults switched on and off at run time, for chaos tests.

Agents dial the proxy; the proxy dials the supervisor's WebSocket port. Faults:

* :meth:`ChaosProxy.blackhole`: stop forwarding in both directions without closing
  anything. Bytes already read are held (bounded), not discarded, as TCP would
  retransmit them: a blackhole that clears in time loses nothing, one that lasts longer
  than the peers' timeouts makes them give up. New connections are accepted and stall.
* :meth:`ChaosProxy.set_delay`: every chunk is delivered that many seconds after it
  was read (latency, not a throughput cap: chunks are pipelined).
* :meth:`ChaosProxy.reset_all`: abort every open connection with a TCP RST
  (``SO_LINGER`` 0) on both sides.
* :meth:`ChaosProxy.refuse_for`: for a while, every new connection is reset at once.
* :meth:`ChaosProxy.set_reset_rate`: reset a random open connection at this mean rate
  (a Poisson process from the injected ``random.Random``): the agent reconnects and
  resends what was not acknowledged, so the supervisor sees duplicates-by-reconnect.

Invariants: at most ``max_chunks`` chunks of at most ``chunk_size`` bytes are buffered
per direction of a connection (then the proxy stops reading: TCP backpressure); every
task lives in the nursery of :meth:`ChaosProxy.run`; cancelling it aborts every
connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING, Final

import attrs
import trio

if TYPE_CHECKING:
    import random

    from trio.abc import ReceiveStream, SendStream

__all__ = ["ChaosProxy", "ProxyStats"]

log = logging.getLogger(__name__)

_LINGER_RST: Final = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() sends RST


@attrs.define
class ProxyStats:
    """Counters of what the proxy did (read them for assertions and reports)."""

    accepted: int = 0
    refused: int = 0
    resets: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    #: Most bytes held by the proxy at once in one direction of one connection.
    peak_buffered: int = 0


def _abort(stream: trio.SocketStream) -> None:
    """Close *stream* at once with an RST (the kernel discards unsent data)."""
    with contextlib.suppress(OSError):  # already closed: nothing to reset
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    stream.socket.close()


class _Link:
    """One proxied connection: client side, upstream side, and the scope that runs it."""

    def __init__(self, serial: int, client: trio.SocketStream) -> None:
        self.serial = serial  # accept order: a seeded choice among links is reproducible
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.scope = trio.CancelScope()

    def reset(self) -> None:
        _abort(self.client)
        if self.upstream is not None:
            _abort(self.upstream)
        self.scope.cancel()


class ChaosProxy:
    """A TCP proxy from 127.0.0.1 (OS-chosen port) to ``127.0.0.1:target_port``.

    Start with ``port = await nursery.start(proxy.run)``; control with the fault methods
    from any task of the same trio run.
    """

    def __init__(
        self,
        target_port: int,
        *,
        rng: random.Random,
        chunk_size: int = 64 * 1024,
        max_chunks: int = 16,
        connect_timeout: float = 2.0,
    ) -> None:
        self.target_port = target_port
        self.rng = rng
        self.chunk_size = chunk_size
        self.max_chunks = max_chunks
        self.connect_timeout = connect_timeout
        self.stats = ProxyStats()
        self.port: int | None = None
        self._links: set[_Link] = set()
        self._flowing = trio.Event()
        self._flowing.set()
        self._delay = 0.0
        self._refuse_until = 0.0
        self._reset_rate = 0.0
        self._rate_changed = trio.Event()

    # ---- faults ----------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Connections open now."""
        return len(self._links)

    def blackhole(self, on: bool) -> None:
        """Stop (True) or resume (False) forwarding in both directions; nothing closes."""
        if on and self._flowing.is_set():
            self._flowing = trio.Event()
        elif not on:
            self._flowing.set()

    def set_delay(self, seconds: float) -> None:
        """Deliver each chunk *seconds* after it was read (0 = no added latency)."""
        self._delay = max(0.0, seconds)

    def reset_all(self) -> int:
        """Abort every open connection with an RST; returns how many."""
        links = list(self._links)
        for link in links:
            self._reset(link)
        return len(links)

    def refuse_for(self, seconds: float) -> None:
        """Reset every new connection at once for the next *seconds*."""
        self._refuse_until = trio.current_time() + seconds

    def set_reset_rate(self, per_second: float) -> None:
        """Reset a random open connection *per_second* times a second on average (0 = off)."""
        self._reset_rate = max(0.0, per_second)
        self._rate_changed.set()
        self._rate_changed = trio.Event()

    def clear(self) -> None:
        """Every fault off (open connections stay open)."""
        self.blackhole(False)
        self.set_delay(0.0)
        self._refuse_until = 0.0
        self.set_reset_rate(0.0)

    def _reset(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self.stats.resets += 1
            link.reset()

    # ---- running ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept and forward connections until cancelled.

        Cancellation: every connection is aborted (RST) and the listener closed.
        Resource handling: one nursery owns the accept loop, the random resetter and
        every connection's pumps.
        Error handling: a failure in one connection (upstream down, peer reset) ends
        that connection only.
        """
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        listener = listeners[0]
        try:
            self.port = int(listener.socket.getsockname()[1])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._random_resets)
                task_status.started(self.port)
                try:
                    while True:
                        client = await listener.accept()
                        nursery.start_soon(self._serve, client)
                finally:
                    for link in list(self._links):
                        self._reset(link)
        finally:
            listener.socket.close()

    async def _random_resets(self) -> None:
        while True:
            changed = self._rate_changed
            if self._reset_rate <= 0:
                await changed.wait()
                continue
            with trio.move_on_after(self.rng.expovariate(self._reset_rate)) as waited:
                await changed.wait()
            if waited.cancelled_caught and self._links:
                self._reset(self.rng.choice(sorted(self._links, key=lambda link: link.serial)))

    async def _serve(self, client: trio.SocketStream) -> None:
        if trio.current_time() < self._refuse_until:
            self.stats.refused += 1
            _abort(client)
            return
        self.stats.accepted += 1
        link = _Link(self.stats.accepted, client)
        self._links.add(link)
        try:
            with link.scope:
                try:
                    with trio.fail_after(self.connect_timeout):
                        link.upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                except (OSError, trio.TooSlowError):
                    # Upstream down: the client sees a reset, as if the port refused it.
                    self.stats.upstream_failures += 1
                    self._links.discard(link)
                    _abort(client)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, link.upstream, True, nursery.cancel_scope)
                    nursery.start_soon(self._pump, link.upstream, client, False, nursery.cancel_scope)
        finally:
            if link in self._links:
                # Ended by a peer, not by a fault: pass the close on, then let go.
                self._links.discard(link)
                with trio.move_on_after(1, shield=True):
                    await trio.aclose_forcefully(client)
                    if link.upstream is not None:
                        await trio.aclose_forcefully(link.upstream)

    async def _pump(self, src: ReceiveStream, dst: SendStream, up: bool, scope: trio.CancelScope) -> None:
        """Forward *src* to *dst* through a bounded channel of (deliver_at, chunk)."""
        send, receive = trio.open_memory_channel[tuple[float, bytes | bytearray]](self.max_chunks)
        held = 0

        async def reader() -> None:
            nonlocal held
            with send:
                try:
                    while True:
                        data = await src.receive_some(self.chunk_size)
                        if not data:
                            return  # EOF: the writer half-closes dst once the backlog is out
                        held += len(data)
                        self.stats.peak_buffered = max(self.stats.peak_buffered, held)
                        await send.send((trio.current_time() + self._delay, data))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    scope.cancel()  # src was reset: end the whole connection

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            try:
                with receive:
                    async for deliver_at, data in receive:
                        await trio.sleep_until(deliver_at)
                        await self._flowing.wait()
                        await dst.send_all(data)
                        held -= len(data)
                        if up:
                            self.stats.bytes_up += len(data)
                        else:
                            self.stats.bytes_down += len(data)
                # EOF from src: half-close dst if possible, the other direction goes on.
                if isinstance(dst, trio.SocketStream):
                    try:
                        await dst.send_eof()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        scope.cancel()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                scope.cancel()  # the other side is gone: end the whole connection
