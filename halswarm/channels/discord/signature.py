"""Ed25519 verification of Discord HTTP interactions (provider-apis.md §3.1).

Discord signs every request to the interactions endpoint: ``X-Signature-Ed25519`` is
the hex signature of ``X-Signature-Timestamp`` (Unix seconds, as text) followed by the
**raw** request body, made with the application's key; the application's **public** key
(hex, from the Developer Portal) verifies it. A request that fails must be answered with
401 — Discord deliberately sends bad signatures and removes the endpoint URL of an app
that accepts them.

Replay hardening: a correctly signed request whose timestamp is more than
:data:`DEFAULT_TOLERANCE_S` (5 minutes, the window the reference calls optional extra
hardening) away from our wall clock is refused too. ``tolerance_s=None`` turns that off
for hosts whose clock cannot be trusted.

Timing: nothing secret is compared here. The signature check is a public-key operation
done by OpenSSL (constant-time for the key material); we never compare signatures or
MACs with ``==``. Reasons in :class:`Verdict` never contain the key, the signature or
the body, so they are safe to log.
"""

from __future__ import annotations

import re
from typing import Final

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from halswarm.channels.discord.errors import DiscordConfigError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InteractionVerifier",
    "Verdict",
]

SIGNATURE_HEADER: Final = "X-Signature-Ed25519"
TIMESTAMP_HEADER: Final = "X-Signature-Timestamp"

#: How far (seconds, either way) a signed timestamp may be from our clock.
DEFAULT_TOLERANCE_S: Final = 300.0

# bytes.fromhex() accepts spaces; signatures and keys must be exactly hex.
_KEY_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_SIGNATURE_RE: Final = re.compile(r"[0-9a-fA-F]{128}")
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,12}")


@attrs.frozen
class Verdict:
    """The outcome of checking one request; ``reason`` is safe to log."""

    ok: bool
    reason: str


_OK: Final = Verdict(True, "ok")


@attrs.frozen
class InteractionVerifier:
    """Checks interaction signatures with one application's public key.

    Build it once at start with :meth:`from_hex`, so a bad configured key is a config
    error rather than a 401 on every request.
    """

    key: Ed25519PublicKey = attrs.field(repr=False)
    tolerance_s: float | None = DEFAULT_TOLERANCE_S

    @classmethod
    def from_hex(cls, public_key_hex: str, *, tolerance_s: float | None = DEFAULT_TOLERANCE_S) -> InteractionVerifier:
        """A verifier for the application public key *public_key_hex* (64 hex digits).

        Raises:
            DiscordConfigError: the key is not 64 hex digits or not a valid Ed25519 point, or
                *tolerance_s* is not positive.
        """
        if not _KEY_RE.fullmatch(public_key_hex):
            raise DiscordConfigError(
                "the Discord public key must be 64 hex digits (Developer Portal, General Information)"
            )
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        except ValueError:
            raise DiscordConfigError("the Discord public key is not a valid Ed25519 public key") from None
        if tolerance_s is not None and tolerance_s <= 0:
            raise DiscordConfigError("the signature timestamp tolerance must be positive (or None to turn it off)")
        return cls(key, tolerance_s)

    def verify(self, signature_hex: str | None, timestamp: str | None, body: bytes, *, now: float) -> Verdict:
        """Check one request.

        Args:
            signature_hex: the ``X-Signature-Ed25519`` header (None when absent).
            timestamp: the ``X-Signature-Timestamp`` header (None when absent).
            body: the raw request body, exactly as received, before any JSON parsing.
            now: the wall clock in Unix seconds (injected; ``time.time()`` in production).

        Returns:
            ``Verdict(True, "ok")``, or ``ok=False`` with the reason to log before
            answering 401.
        """
        if not signature_hex:
            return Verdict(False, f"missing {SIGNATURE_HEADER} header")
        if not timestamp:
            return Verdict(False, f"missing {TIMESTAMP_HEADER} header")
        if not _SIGNATURE_RE.fullmatch(signature_hex):
            return Verdict(False, "malformed signature: expected 128 hex digits")
        if not _TIMESTAMP_RE.fullmatch(timestamp):
            return Verdict(False, "malformed timestamp: expected Unix seconds")
        try:
            self.key.verify(bytes.fromhex(signature_hex), timestamp.encode("ascii") + body)
        except InvalidSignature:
            return Verdict(False, "signature does not match (wrong key, or the body or timestamp was altered)")
        if self.tolerance_s is not None:
            skew = now - int(timestamp)
            if abs(skew) > self.tolerance_s:
                direction = "old" if skew > 0 else "in the future"
                return Verdict(
                    False, f"stale timestamp: {abs(skew):.0f}s {direction} (tolerance {self.tolerance_s:.0f}s)"
                )
        return _OK
