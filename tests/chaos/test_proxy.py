"""The chaos proxy itself, against a loopback echo server (real sockets, no autojump)."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio

from tests.chaos.proxy import ChaosProxy

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

pytestmark = pytest.mark.chaos


async def _echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        return


async def _sink(stream: trio.SocketStream) -> None:
    """Accepts and never reads: everything backs up."""
    await trio.sleep_forever()


@asynccontextmanager
async def _proxied(
    handler: Callable[[trio.SocketStream], Awaitable[None]] = _echo,
    *,
    max_chunks: int = 16,
    chunk_size: int = 64 * 1024,
) -> AsyncGenerator[tuple[ChaosProxy, int], None]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        target = int(listeners[0].socket.getsockname()[1])
        proxy = ChaosProxy(target, rng=random.Random(1), max_chunks=max_chunks, chunk_size=chunk_size)
        port: int = await nursery.start(proxy.run)
        try:
            yield proxy, port
        finally:
            nursery.cancel_scope.cancel()


async def _roundtrip(stream: trio.SocketStream, payload: bytes) -> bytes:
    await stream.send_all(payload)
    received = b""
    while len(received) < len(payload):
        data = await stream.receive_some(65536)
        assert data, "connection closed early"
        received += data
    return received


async def test_forwards_both_ways_and_counts() -> None:
    with trio.fail_after(10):
        async with _proxied() as (proxy, port):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            payload = bytes(range(256)) * 4000  # ~1 MB, several chunks
            assert await _roundtrip(stream, payload) == payload
            await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert proxy.stats.accepted == 1
            assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)


async def test_delay_adds_latency_per_chunk_without_capping_throughput() -> None:
    with trio.fail_after(10):
        async with _proxied() as (proxy, port):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            start = trio.current_time()
            await _roundtrip(stream, b"ping")
            fast = trio.current_time() - start
            proxy.set_delay(0.2)
            start = trio.current_time()
            await _roundtrip(stream, b"ping")
            slow = trio.current_time() - start
            assert slow >= 0.4  # up and down
            assert slow < 0.4 + fast + 0.5
            # Ten writes in a row arrive together, not ten delays apart.
            start = trio.current_time()
            for _ in range(10):
                await stream.send_all(b"x" * 10)
            received = b""
            while len(received) < 100:
                received += await stream.receive_some(65536)
            assert trio.current_time() - start < 0.4 * 3
            await stream.aclose()


async def test_blackhole_holds_bytes_without_closing_then_delivers_them() -> None:
    with trio.fail_after(10):
        async with _proxied() as (proxy, port):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            assert await _roundtrip(stream, b"before") == b"before"
            proxy.blackhole(True)
            await stream.send_all(b"during")
            with trio.move_on_after(0.5) as silent:
                await stream.receive_some(65536)
            assert silent.cancelled_caught, "bytes went through the blackhole"
            assert proxy.active == 1  # nothing was closed
            proxy.blackhole(False)
            received = b""
            while len(received) < len(b"during"):
                received += await stream.receive_some(65536)
            assert received == b"during"
            await stream.aclose()


async def test_blackhole_buffers_are_bounded() -> None:
    chunk, chunks = 16 * 1024, 4
    with trio.fail_after(15):
        async with _proxied(_sink, max_chunks=chunks, chunk_size=chunk) as (proxy, port):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            sent = 0
            # Push until the proxy stops reading (everything backs up to our send buffer).
            while True:
                with trio.move_on_after(0.5) as blocked:
                    await stream.send_all(b"z" * chunk)
                if blocked.cancelled_caught:
                    break
                sent += chunk
                assert sent < 256 * 2**20, "the proxy never pushed back"
            assert proxy.stats.peak_buffered <= (chunks + 2) * chunk
            await trio.aclose_forcefully(stream)


async def test_reset_all_aborts_both_sides_with_rst() -> None:
    with trio.fail_after(10):
        async with _proxied() as (proxy, port):
            a = await trio.open_tcp_stream("127.0.0.1", port)
            b = await trio.open_tcp_stream("127.0.0.1", port)
            await _roundtrip(a, b"a")
            await _roundtrip(b, b"b")
            assert proxy.reset_all() == 2
            for stream in (a, b):
                with pytest.raises(trio.BrokenResourceError) as caught:
                    await stream.receive_some(10)
                assert isinstance(caught.value.__cause__, ConnectionResetError)
                await trio.aclose_forcefully(stream)
            assert proxy.stats.resets == 2
            assert proxy.active == 0
            # The proxy itself keeps working.
            c = await trio.open_tcp_stream("127.0.0.1", port)
            assert await _roundtrip(c, b"c") == b"c"
            await c.aclose()


async def test_refuse_for_resets_new_connections_until_the_period_ends() -> None:
    with trio.fail_after(10):
        async with _proxied() as (proxy, port):
            proxy.refuse_for(0.5)
            refused = await trio.open_tcp_stream("127.0.0.1", port)
            with pytest.raises(trio.BrokenResourceError):
                await _roundtrip(refused, b"x")
            await trio.aclose_forcefully(refused)
            assert proxy.stats.refused == 1
            await trio.sleep(0.6)
            ok = await trio.open_tcp_stream("127.0.0.1", port)
            assert await _roundtrip(ok, b"x") == b"x"
            await ok.aclose()


async def test_random_resets_at_a_rate() -> None:
    with trio.fail_after(10):
        async with _proxied() as (proxy, port):
            proxy.set_reset_rate(50.0)
            resets = 0
            while resets < 5:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                try:
                    while True:
                        await _roundtrip(stream, b"x")
                except (trio.BrokenResourceError, AssertionError):
                    resets += 1
                await trio.aclose_forcefully(stream)
            proxy.set_reset_rate(0)
            assert proxy.stats.resets >= 5
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            for _ in range(20):
                assert await _roundtrip(stream, b"y") == b"y"
            await stream.aclose()


async def test_cancelling_the_proxy_aborts_its_connections() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
            target = int(listeners[0].socket.getsockname()[1])
            proxy = ChaosProxy(target, rng=random.Random(2))
            async with trio.open_nursery() as proxy_nursery:
                port: int = await proxy_nursery.start(proxy.run)
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await _roundtrip(stream, b"x")
                proxy_nursery.cancel_scope.cancel()
            with pytest.raises(trio.BrokenResourceError):
                await _roundtrip(stream, b"x")
            with pytest.raises(OSError, match="all attempts to connect"):
                await trio.open_tcp_stream("127.0.0.1", port)
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
