"""Found by the long network chaos run: an agent whose TCP connection is reset during the
WebSocket handshake used to take the whole supervisor down.

``request.accept()`` raised ``ConnectionClosed`` (1006) for a peer already gone, and it
escaped the per-connection handler, the hub's handler nursery and ``run_supervisor``
(house-style rule 8: one connection's failure must never take the hub down).
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING

import pytest
import trio

from halswarm.testing import TEST_TOKEN, open_supervisor, supervisor_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.chaos

_ATTEMPTS = 200


async def _upgrade_then_reset(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TEST_TOKEN}\r\n\r\n"
    )
    await stream.send_all(request.encode())
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()  # RST before the server's 101 goes out


async def test_a_reset_during_the_handshake_does_not_crash_the_supervisor(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_supervisor(supervisor_config(tmp_path / "supervisor.db")) as sup:
            for _ in range(_ATTEMPTS):
                await _upgrade_then_reset(sup.ws_port)
            await trio.sleep(0.5)
            # Still serving: a regular agent can connect.
            stream = await trio.open_tcp_stream("127.0.0.1", sup.ws_port)
            await stream.aclose()
