"""``halswarm.tls``: contexts enforce TLS >= 1.2 and verification; bad files are named."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest

from halswarm.tls import TlsConfigError, cert_verify_error, client_ssl_context, server_ssl_context

if TYPE_CHECKING:
    from pathlib import Path

    from tests.tls.certs import TestPki


def test_server_context_loads_the_generated_certificate(pki: TestPki) -> None:
    context = server_ssl_context(pki.cert_path, pki.key_path)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_client_context_verifies_and_checks_host_names(pki: TestPki) -> None:
    for context in (client_ssl_context(pki.ca_file), client_ssl_context(None)):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.check_hostname
        assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_missing_file_is_named(pki: TestPki, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(TlsConfigError, match=r"cannot read TLS private key .*nope\.pem"):
        server_ssl_context(pki.cert_path, missing)
    with pytest.raises(TlsConfigError, match=r"cannot read TLS CA file .*nope\.pem"):
        client_ssl_context(missing)


def test_a_file_that_is_not_pem_is_named(pki: TestPki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=r"cannot load TLS certificate .*junk\.pem"):
        server_ssl_context(str(junk), pki.key_path)
    with pytest.raises(TlsConfigError, match=r"cannot load CA file .*junk\.pem"):
        client_ssl_context(str(junk))


def test_a_key_of_another_certificate_is_refused(pki: TestPki) -> None:
    # The CA certificate with the server's key: a mismatch, reported with both names.
    with pytest.raises(TlsConfigError, match=r"ca\.pem with key .*server\.key"):
        server_ssl_context(pki.ca_file, pki.key_path)


def test_cert_verify_error_digs_through_the_cause_chain() -> None:
    inner = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    inner.verify_message = "unable to get local issuer certificate"
    outer = OSError("broken")
    outer.__cause__ = inner
    assert cert_verify_error(outer) == "unable to get local issuer certificate"
    assert cert_verify_error(OSError("connection refused")) is None
