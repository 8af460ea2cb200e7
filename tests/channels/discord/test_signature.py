"""Ed25519 verification of interaction requests: over ``timestamp + raw body``, 401 material otherwise."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.channels.discord.errors import DiscordConfigError
from halswarm.channels.discord.signature import DEFAULT_TOLERANCE_S, InteractionVerifier

# A fixed key, so failures reproduce.
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_HEX = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
BODY = b'{"type":1,"id":"1","application_id":"456","token":"t","version":1}'
TS = "1787400000"
NOW = 1787400000.0


def sign(timestamp: str, body: bytes, key: Ed25519PrivateKey = PRIVATE) -> str:
    return key.sign(timestamp.encode() + body).hex()


@pytest.fixture
def verifier() -> InteractionVerifier:
    return InteractionVerifier.from_hex(PUBLIC_HEX)


def test_a_valid_signature_is_accepted(verifier: InteractionVerifier) -> None:
    verdict = verifier.verify(sign(TS, BODY), TS, BODY, now=NOW)
    assert verdict.ok
    assert verdict.reason == "ok"


def test_upper_case_hex_is_accepted(verifier: InteractionVerifier) -> None:
    assert verifier.verify(sign(TS, BODY).upper(), TS, BODY, now=NOW).ok
    assert InteractionVerifier.from_hex(PUBLIC_HEX.upper()).verify(sign(TS, BODY), TS, BODY, now=NOW).ok


def test_a_tampered_body_is_refused(verifier: InteractionVerifier) -> None:
    tampered = BODY.replace(b'"type":1', b'"type":2')
    verdict = verifier.verify(sign(TS, BODY), TS, tampered, now=NOW)
    assert not verdict.ok
    assert "does not match" in verdict.reason


def test_a_body_with_one_more_byte_is_refused(verifier: InteractionVerifier) -> None:
    assert not verifier.verify(sign(TS, BODY), TS, BODY + b" ", now=NOW).ok


def test_a_changed_timestamp_is_refused(verifier: InteractionVerifier) -> None:
    other = str(int(TS) + 1)
    assert not verifier.verify(sign(TS, BODY), other, BODY, now=NOW).ok


def test_a_signature_from_another_key_is_refused(verifier: InteractionVerifier) -> None:
    stranger = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    verdict = verifier.verify(sign(TS, BODY, stranger), TS, BODY, now=NOW)
    assert not verdict.ok
    assert "wrong key" in verdict.reason


@pytest.mark.parametrize("skew", [DEFAULT_TOLERANCE_S + 1, -(DEFAULT_TOLERANCE_S + 1), 86400.0])
def test_a_stale_or_future_timestamp_is_refused(verifier: InteractionVerifier, skew: float) -> None:
    verdict = verifier.verify(sign(TS, BODY), TS, BODY, now=NOW + skew)
    assert not verdict.ok
    assert verdict.reason.startswith("stale timestamp")
    assert ("old" in verdict.reason) == (skew > 0)


def test_a_timestamp_at_the_edge_of_the_window_is_accepted(verifier: InteractionVerifier) -> None:
    assert verifier.verify(sign(TS, BODY), TS, BODY, now=NOW + DEFAULT_TOLERANCE_S).ok
    assert verifier.verify(sign(TS, BODY), TS, BODY, now=NOW - DEFAULT_TOLERANCE_S).ok


def test_the_window_can_be_turned_off() -> None:
    lax = InteractionVerifier.from_hex(PUBLIC_HEX, tolerance_s=None)
    assert lax.verify(sign(TS, BODY), TS, BODY, now=NOW + 10 * 86400).ok


@pytest.mark.parametrize(
    ("signature", "timestamp", "reason"),
    [
        (None, TS, "missing X-Signature-Ed25519"),
        ("", TS, "missing X-Signature-Ed25519"),
        ("ab", None, "missing X-Signature-Timestamp"),
        ("zz" * 64, TS, "malformed signature"),
        ("ab" * 63, TS, "malformed signature"),
        ("ab" * 65, TS, "malformed signature"),
        (" ab" * 64, TS, "malformed signature"),  # bytes.fromhex would accept the spaces
        ("ab" * 64, "12.5", "malformed timestamp"),
        ("ab" * 64, "-1", "malformed timestamp"),
        ("ab" * 64, "2026-08-22T12:00:00Z", "malformed timestamp"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(
    verifier: InteractionVerifier, signature: str | None, timestamp: str | None, reason: str
) -> None:
    verdict = verifier.verify(signature, timestamp, BODY, now=NOW)
    assert not verdict.ok
    assert verdict.reason.startswith(reason)


@pytest.mark.parametrize("key", ["", "abc", "zz" * 32, "ab" * 31, "ab" * 33, " " + "ab" * 32])
def test_a_malformed_public_key_is_a_config_error(key: str) -> None:
    with pytest.raises(DiscordConfigError, match="64 hex digits"):
        InteractionVerifier.from_hex(key)


def test_a_non_positive_tolerance_is_a_config_error() -> None:
    with pytest.raises(DiscordConfigError, match="tolerance"):
        InteractionVerifier.from_hex(PUBLIC_HEX, tolerance_s=0)


def test_reasons_and_repr_never_contain_the_key_or_signature(verifier: InteractionVerifier) -> None:
    signature = sign(TS, BODY)
    reasons = [
        verifier.verify(signature, TS, BODY + b"x", now=NOW).reason,
        verifier.verify(signature, TS, BODY, now=NOW + 9999).reason,
        verifier.verify(signature[:-2], TS, BODY, now=NOW).reason,
    ]
    for text in [*reasons, repr(verifier)]:
        assert PUBLIC_HEX not in text.lower()
        assert signature[:16] not in text.lower()


@settings(max_examples=60, deadline=None, database=None)
@given(body=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=299))
def test_any_body_verifies_and_any_flipped_bit_does_not(body: bytes, flip: int) -> None:
    verifier = InteractionVerifier.from_hex(PUBLIC_HEX)
    signature = sign(TS, body)
    assert verifier.verify(signature, TS, body, now=NOW).ok
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
        assert not verifier.verify(signature, TS, changed, now=NOW).ok
