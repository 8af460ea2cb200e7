"""Webhook signatures: the documented construction, and verification as a receiver does it."""

from __future__ import annotations

import hashlib
import hmac

from halswarm.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature_headers, verify_signature

SECRET = "s3cret-value"
BODY = b'{"type":"session.error"}'


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1767225600." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, 1767225600) == f"sha256={expected}"
    assert signature_headers(SECRET, BODY, 1767225600) == {
        TIMESTAMP_HEADER: "1767225600",
        SIGNATURE_HEADER: f"sha256={expected}",
    }


def test_verify() -> None:
    signature = sign(SECRET, BODY, 1000)
    assert verify_signature(SECRET, BODY, "1000", signature, now=1000.0)
    assert verify_signature(SECRET, BODY, "1000", signature, now=1300.0)
    assert not verify_signature(SECRET, BODY, "1000", signature, now=1300.5)  # too old
    assert not verify_signature(SECRET, BODY, "1000", signature, now=699.0)  # from the future
    assert not verify_signature(SECRET, BODY + b" ", "1000", signature, now=1000.0)
    assert not verify_signature("other", BODY, "1000", signature, now=1000.0)
    assert not verify_signature(SECRET, BODY, "1001", signature, now=1000.0)
    # Arabic-Indic digits are str.isdigit() but not a timestamp.
    for bad in ("", "-1000", "1e3", "\u0661\u0660\u0660\u0660", "9" * 30):
        assert not verify_signature(SECRET, BODY, bad, signature, now=1000.0)
