"""Opening the agent's WebSocket: we own the TCP stream, so it is always closed.

trio-websocket's ``open_websocket_url`` leaves the socket to the garbage collector when
the server rejects the upgrade (e.g. HTTP 401); an agent retrying with a wrong token
would then leak a socket per attempt until collected. Here the stream is opened by us,
wrapped with ``wrap_client_stream``, and closed in ``finally`` whatever happens.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import WebSocketConnection

__all__ = ["Connector", "open_ws"]

Connector = Callable[[str, list[tuple[bytes, bytes]]], AbstractAsyncContextManager[WebSocketConnection]]
"""Opens a WebSocket to a URL with extra headers (swappable for in-memory tests)."""


@asynccontextmanager
async def open_ws(
    url: str,
    headers: list[tuple[bytes, bytes]],
    *,
    connect_timeout: float,
    close_timeout: float,
    max_message_size: int,
    ssl_context: ssl.SSLContext | None = None,
    receive_buffer_size: int = 256 * 1024,
) -> AsyncGenerator[WebSocketConnection, None]:
    """Connect to a ``ws://`` or ``wss://`` URL and yield the open WebSocket.

    Raises:
        OSError: the TCP connection failed.
        trio.BrokenResourceError: the TLS handshake failed (e.g. certificate verify failed;
            the :class:`ssl.SSLError` is its ``__cause__``).
        trio.TooSlowError: connecting or the handshake took longer than *connect_timeout*.
        trio_websocket.ConnectionRejected: the server refused the upgrade (e.g. 401).

    Resource handling: the socket is closed on exit, on rejection and on cancellation.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
    stream: trio.abc.Stream
    with trio.fail_after(connect_timeout):
        if secure:
            ssl_stream = await trio.open_ssl_over_tcp_stream(
                parts.hostname, port, ssl_context=ssl_context or ssl.create_default_context(), https_compatible=True
            )
            try:
                # Handshake now: inside trio-websocket a certificate failure would only
                # surface as a handshake timeout, hiding the reason from the agent's log.
                await ssl_stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(ssl_stream)
                raise
            stream = ssl_stream
        else:
            stream = await trio.open_tcp_stream(parts.hostname, port)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host_header,
                    resource,
                    extra_headers=headers,
                    max_message_size=max_message_size,
                    receive_buffer_size=receive_buffer_size,
                )
            try:
                yield ws
            finally:
                with trio.move_on_after(close_timeout, shield=True):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
