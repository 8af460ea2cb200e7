"""Protocol errors and the WebSocket close codes they map to."""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "ProtocolError"]


class CloseCode(enum.IntEnum):
    """Close codes halswarm uses. 4000-4999 are application codes (RFC 6455 §7.4.2)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # supervisor shutting down: reconnect later
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # sent by trio-websocket itself for frames over the limit
    INTERNAL_ERROR = 1011  # the supervisor failed (e.g. storage unavailable): retry later
    REPLACED = 4000  # the same agent instance connected again
    HEARTBEAT_TIMEOUT = 4001
    AUTH_REFUSED = 4401  # the token is not valid for the hello's node_id (server.node_tokens)
    MALFORMED = 4400  # not JSON, wrong shape, or out of order
    NODE_ID_CONFLICT = 4409  # another instance holds this node_id
    WINDOW_EXCEEDED = 4429  # more unacked batches than the window allows
    UNSUPPORTED_VERSION = 4426


class ProtocolError(Exception):
    """The peer broke the protocol; close the connection with ``code`` and ``reason``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{reason} (close code {int(code)})")
        self.code = code
        # WebSocket close reasons are limited to 123 bytes.
        self.reason = reason.encode()[:120].decode(errors="ignore")
