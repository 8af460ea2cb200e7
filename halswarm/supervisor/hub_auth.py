"""Agent authentication rules for the hub, kept free of I/O (issue #8).

Two steps, because the node id arrives only in the Hello frame, after the upgrade:

1. **Upgrade** (:meth:`AgentTokens.match`): the bearer token must equal the shared
   ``server.auth_token`` or any ``server.node_tokens`` value. Every candidate is compared
   with :func:`hmac.compare_digest`, without stopping at the first match, so the time
   taken does not say which token (if any) was close.
2. **Hello** (:meth:`AgentTokens.refusal`): a node listed in ``server.node_tokens`` must
   have presented exactly its own token (the shared token is refused for it); a node
   token presented with any other node id is refused.

What a refusal costs the sender (count, log, audit, delay) is
:class:`halswarm.auth_failures.AuthFailures`, shared with the HTTP API.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["AgentTokens", "TokenMatch", "bearer_token", "header_value"]


@attrs.frozen
class TokenMatch:
    """Which configured tokens the presented bearer token equals (never the token itself)."""

    shared: bool = False
    #: Node ids whose ``server.node_tokens`` entry equals the token.
    nodes: frozenset[str] = frozenset()

    @property
    def accepted(self) -> bool:
        """Whether the token may upgrade at all."""
        return self.shared or bool(self.nodes)


class AgentTokens:
    """The shared agent token plus per-node tokens. Secrets stay out of ``repr``."""

    def __init__(self, shared: str, node_tokens: Mapping[str, str]) -> None:
        # SHA-256 digests, all of one length: comparing them says nothing about a
        # token's length (compare_digest on raw tokens would).
        self._shared = _digest(shared.encode()) if shared else b""
        self._nodes = {node_id: _digest(token.encode()) for node_id, token in node_tokens.items()}

    def __repr__(self) -> str:
        return f"AgentTokens(nodes={sorted(self._nodes)!r})"

    def match(self, token: bytes | None) -> TokenMatch:
        """Compare *token* with every configured token in constant time per candidate."""
        if token is None:
            return TokenMatch()
        presented = _digest(token)
        shared = hmac.compare_digest(presented, self._shared) if self._shared else False
        # No early exit: every node token is compared whatever matched before.
        nodes = frozenset([n for n, value in self._nodes.items() if hmac.compare_digest(presented, value)])
        return TokenMatch(shared=shared, nodes=nodes)

    def refusal(self, match: TokenMatch, node_id: str) -> str | None:
        """Why the token accepted at the upgrade may not be used by *node_id*; None if it may.

        The reason is safe to send to the agent and to log: it names no token and no
        other node.
        """
        if node_id in self._nodes:
            if node_id in match.nodes:
                return None
            if match.shared:
                return f"node {node_id} has its own token (server.node_tokens); the shared token is refused"
            return f"this token is not node {node_id}'s own token (server.node_tokens)"
        if match.shared:
            return None
        return f"this token belongs to another node (server.node_tokens), not to {node_id}"


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header *name* (lower-case), or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    value = header_value(headers, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None
