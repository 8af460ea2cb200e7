"""TLS contexts for the supervisor's listeners and for agents and halctl (issue #8).

One place builds every :class:`ssl.SSLContext` so both listeners (hub WSS and HTTPS API)
and both clients (agent ``wss://``, halctl ``https://``) agree on the floor: TLS 1.2 or
newer, certificates verified, host names checked. Unreadable or invalid PEM files raise
:class:`TlsConfigError` naming the file, instead of ``ssl``'s bare ``[SSL] PEM lib``.
"""

from __future__ import annotations

import ssl
from typing import Final

__all__ = ["CERT_VERIFY_HINT", "TlsConfigError", "cert_verify_error", "client_ssl_context", "server_ssl_context"]

_MIN_VERSION: Final = ssl.TLSVersion.TLSv1_2
#: What agents and halctl add to a certificate failure: the usual fix.
CERT_VERIFY_HINT: Final = "set tls_ca_file (agent) or --ca-file / HALSWARM_CA_FILE (halctl) to the CA that signed it"


class TlsConfigError(OSError):
    """A certificate, key or CA file cannot be read or is not valid PEM.

    An :class:`OSError`, so entry points that report unusable files already report it.
    """


def server_ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server context (TLS >= 1.2) serving the certificate chain in *cert_path*.

    Args:
        cert_path: PEM certificate (chain, leaf first).
        key_path: PEM private key matching the certificate (unencrypted).

    Returns:
        The context, also offering ``http/1.1`` via ALPN (hypercorn and WebSockets speak it).

    Raises:
        TlsConfigError: a file is missing or unreadable, not PEM, or the key does not
            match the certificate. The message names the file(s).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _MIN_VERSION
    _readable(cert_path, "certificate")
    _readable(key_path, "private key")
    try:
        context.load_cert_chain(certfile=cert_path, keyfile=key_path)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"cannot load TLS certificate {cert_path} with key {key_path}: {_ssl_reason(exc)} "
            "(both must be PEM and the key must belong to the certificate)"
        ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context (TLS >= 1.2) verifying the server's certificate and host name.

    Args:
        ca_file: PEM file of the CA(s) to trust; ``None`` trusts the system's CAs.

    Raises:
        TlsConfigError: *ca_file* is missing, unreadable or holds no valid certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = _MIN_VERSION
    # create_default_context already sets both; stated so no later edit weakens them.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if ca_file is not None:
        _readable(ca_file, "CA file")
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"cannot load CA file {ca_file}: {_ssl_reason(exc)} (expected PEM)") from None
    return context


def cert_verify_error(exc: BaseException) -> str | None:
    """If *exc* (or its cause chain) is a failed certificate verification, what failed.

    trio wraps the :class:`ssl.SSLCertVerificationError` in a ``BrokenResourceError``;
    this digs it out so the agent can say "certificate verify failed" instead of "broken".
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or str(current)
        if isinstance(current, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(current):
            return str(current)
        current = current.__cause__ or current.__context__
    return None


def _readable(path: str, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from None


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)
