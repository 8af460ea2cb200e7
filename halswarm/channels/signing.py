"""The signature of generic webhook requests (``channels.webhooks.<name>.secret``).

A webhook with a secret gets two headers on every POST::

    X-Halswarm-Timestamp: 1767225600
    X-Halswarm-Signature: sha256=<hex HMAC-SHA256(secret, "1767225600" + "." + raw body)>

The timestamp (Unix seconds) is signed with the body, so a receiver that also rejects
old timestamps is safe from replays. Receivers compare with a constant-time function
(:func:`verify_signature` is the reference). Pure functions: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signature_headers", "verify_signature"]

SIGNATURE_HEADER: Final = "X-Halswarm-Signature"
TIMESTAMP_HEADER: Final = "X-Halswarm-Timestamp"
_PREFIX: Final = "sha256="


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Halswarm-Signature`` value for *body* sent at *timestamp* (Unix seconds)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return _PREFIX + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Both headers of a signed request."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, body, timestamp)}


def verify_signature(
    secret: str, body: bytes, timestamp: str, signature: str, *, now: float, tolerance: float = 300.0
) -> bool:
    """Check a request as a receiver should: the signature matches and the timestamp is recent.

    Args:
        secret: the shared secret.
        body: the raw request body.
        timestamp: the ``X-Halswarm-Timestamp`` header.
        signature: the ``X-Halswarm-Signature`` header.
        now: the receiver's clock, Unix seconds.
        tolerance: the largest accepted ``|now - timestamp|`` in seconds.

    Returns:
        True when both hold.
    """
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, int(timestamp)), signature)
